"""Stage 1: fine-tune the configured transformer blocks + layer embedder on layered videos (lr 1e-4).

Default ``trainable`` = the authors' ``part_6_txt``: blocks ``i % 6 == 5`` (5 of 30, every weight of the
block incl. its adaLN modulation and QK norms) and the layer embedder; everything else stays frozen.
"""

from __future__ import annotations

from pathlib import Path

from layerflow_train.config import TrainConfig
from layerflow_train.models.layerflow import LayerFlowModel
from layerflow_train.recipes.common import Recipe, freeze_base, run, save_layer_embedder


class Stage1(Recipe):
    stage = 1

    def prepare(self, model: LayerFlowModel, cfg: TrainConfig, load_weights: bool = True) -> None:
        freeze_base(model)
        blocks = model.transformer.transformer_blocks
        for i in cfg.trainable.indices(len(blocks)):
            blocks[i].requires_grad_(True)
        model.layer_embedder.requires_grad_(cfg.trainable.layer_embedder)

    def export(self, model: LayerFlowModel, out_dir: Path) -> list[Path]:
        model.transformer.save_pretrained(out_dir / "transformer")
        return [out_dir / "transformer", save_layer_embedder(model, out_dir / "layer_embedder.safetensors")]


def main(cfg: TrainConfig) -> list[float]:
    return run(cfg, Stage1())
