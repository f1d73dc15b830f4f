"""Stage 3: Content LoRA (lr 5e-3) on joint data with the stage-2 Motion LoRA frozen.

Static image videos run with motion scale 1 (the motion adapter explains their stillness), copy-paste
videos with motion scale 0 (real motion, artificial content); the content adapter learns layered
appearance from both. At inference only the content adapter is loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from layerflow_train.config import TrainConfig
from layerflow_train.models.layerflow import LayerFlowModel
from layerflow_train.recipes.common import Recipe, export_adapter, freeze_base, train_layer_embedder, load_adapter, run


class Stage3(Recipe):
    stage = 3
    uses_lora = True

    def prepare(self, model: LayerFlowModel, cfg: TrainConfig, load_weights: bool = True) -> None:
        freeze_base(model)
        if load_weights:
            load_adapter(model, "motion", cfg.lora.motion_weights)
        else:  # meta-device memory estimate: same structure, nothing read
            model.lora.add("motion")
        model.lora.adapters["motion"].requires_grad_(False)
        if cfg.lora.content_weights and load_weights:
            load_adapter(model, "content", cfg.lora.content_weights)
        else:
            model.lora.add("content")
        model.lora.adapters["content"].requires_grad_(True)
        train_layer_embedder(model, cfg)

    def motion_scales(self, from_data: torch.Tensor) -> torch.Tensor:
        return from_data

    def export(self, model: LayerFlowModel, out_dir: Path) -> list[Path]:
        return export_adapter(model, "content", out_dir)


def main(cfg: TrainConfig) -> list[float]:
    return run(cfg, Stage3())
