"""Stage 2: Motion LoRA (lr 1e-3) on static, frame-duplicated videos with motion scale 1.

The base (stage-1 export) is frozen; the adapter learns "no motion", which stage 3 switches on per
sample for image data and drops at inference.
"""

from __future__ import annotations

from pathlib import Path

import torch

from layerflow_train.config import TrainConfig
from layerflow_train.models.layerflow import LayerFlowModel
from layerflow_train.recipes.common import Recipe, export_adapter, freeze_base, train_layer_embedder, run


class Stage2(Recipe):
    stage = 2
    uses_lora = True

    def check(self, cfg: TrainConfig) -> None:
        super().check(cfg)
        if cfg.data.static != "all":
            raise ValueError("stage 2 trains on static videos: set data.static: all")

    def prepare(self, model: LayerFlowModel, cfg: TrainConfig, load_weights: bool = True) -> None:
        freeze_base(model)
        model.lora.add("motion")
        model.lora.adapters["motion"].requires_grad_(True)
        train_layer_embedder(model, cfg)

    def motion_scales(self, from_data: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(from_data)

    def export(self, model: LayerFlowModel, out_dir: Path) -> list[Path]:
        return export_adapter(model, "motion", out_dir)


def main(cfg: TrainConfig) -> list[float]:
    return run(cfg, Stage2())
