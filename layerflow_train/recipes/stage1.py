"""Stage 1: full fine-tune of the base CogVideoX transformer + layer embedder on layered videos (lr 1e-4)."""

from __future__ import annotations

from pathlib import Path

from layerflow_train.config import TrainConfig
from layerflow_train.models.layerflow import LayerFlowModel
from layerflow_train.recipes.common import Recipe, run, save_layer_embedder


class Stage1(Recipe):
    stage = 1

    def prepare(self, model: LayerFlowModel, cfg: TrainConfig) -> None:
        model.transformer.requires_grad_(True)
        model.layer_embedder.requires_grad_(True)

    def export(self, model: LayerFlowModel, out_dir: Path) -> list[Path]:
        model.transformer.save_pretrained(out_dir / "transformer")
        return [out_dir / "transformer", save_layer_embedder(model, out_dir / "layer_embedder.safetensors")]


def main(cfg: TrainConfig) -> list[float]:
    return run(cfg, Stage1())
