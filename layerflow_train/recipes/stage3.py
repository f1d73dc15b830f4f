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
from layerflow_train.recipes.common import Recipe, freeze_base, load_adapter, run


class Stage3(Recipe):
    stage = 3
    uses_lora = True

    def prepare(self, model: LayerFlowModel, cfg: TrainConfig) -> None:
        freeze_base(model)
        load_adapter(model, "motion", cfg.lora.motion_weights)
        model.lora.adapters["motion"].requires_grad_(False)
        if cfg.lora.content_weights:
            load_adapter(model, "content", cfg.lora.content_weights)
        else:
            model.lora.add("content")
        model.lora.adapters["content"].requires_grad_(True)

    def motion_scales(self, from_data: torch.Tensor) -> torch.Tensor:
        return from_data

    def export(self, model: LayerFlowModel, out_dir: Path) -> list[Path]:
        return [model.lora.save("content", out_dir / "content_lora.safetensors")]


def main(cfg: TrainConfig) -> list[float]:
    return run(cfg, Stage3())
