"""Shared recipe pieces. A recipe only says what trains, which motion scale a batch gets, what the data
must look like and what to export; the :class:`~layerflow_train.trainer.Trainer` does the rest."""

from __future__ import annotations

from pathlib import Path

import torch

from layerflow_train.config import TrainConfig
from layerflow_train.models.layerflow import LayerFlowModel


class Recipe:
    stage: int = 0
    uses_lora: bool = False

    def check(self, cfg: TrainConfig) -> None:
        if cfg.stage != self.stage:
            raise ValueError(f"config is for stage {cfg.stage}, recipe is stage {self.stage}")

    def prepare(self, model: LayerFlowModel, cfg: TrainConfig, load_weights: bool = True) -> None:
        """Set what trains (and load adapter weights unless ``load_weights`` is False: meta-device use)."""
        raise NotImplementedError

    def motion_scales(self, from_data: torch.Tensor) -> torch.Tensor | None:
        """Per-sample motion-adapter scale for a batch; None = no motion adapter in this stage."""
        return None

    def export(self, model: LayerFlowModel, out_dir: Path) -> list[Path]:
        raise NotImplementedError


def save_layer_embedder(model: LayerFlowModel, path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.layer_embedder.state_dict().items()}, str(path))
    return path


def freeze_base(model: LayerFlowModel) -> None:
    model.requires_grad_(False)


def load_adapter(model: LayerFlowModel, name: str, path: str) -> None:
    resolved = Path(path)
    if not resolved.is_file():
        raise FileNotFoundError(f"{name} adapter weights not found: {resolved}")
    model.lora.load(name, resolved)


def run(cfg: TrainConfig, recipe: Recipe) -> list[float]:
    """Single-process training (CPU or one GPU); see ``layerflow_train.ray_train`` for many workers."""
    from layerflow_train.trainer import Trainer

    return Trainer(cfg, recipe).fit()


def train_layer_embedder(model: LayerFlowModel, cfg: TrainConfig) -> None:
    """The authors train the layer embedder in the LoRA stages too (``stage*_v3_part_6_txt``)."""
    model.layer_embedder.requires_grad_(cfg.trainable.layer_embedder)


def export_adapter(model: LayerFlowModel, name: str, out_dir: Path) -> list[Path]:
    """``<name>_lora.safetensors`` + the (possibly further trained) ``layer_embedder.safetensors``."""
    return [model.lora.save(name, out_dir / f"{name}_lora.safetensors"),
            save_layer_embedder(model, out_dir / "layer_embedder.safetensors")]
