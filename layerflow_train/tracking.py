"""Experiment tracking on rank 0: TensorBoard event files in ``<output_dir>/tensorboard`` (default) and
optionally Weights & Biases (``tracking.wandb``; needs ``pip install wandb`` and a login)."""

from __future__ import annotations

from pathlib import Path

from layerflow_train.config import TrainConfig


class Tracker:
    def __init__(self, cfg: TrainConfig, out_dir: Path):
        self.tb = self.wandb = None
        if cfg.tracking.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"))
        if cfg.tracking.wandb:
            try:
                import wandb
            except ImportError as exc:
                raise ImportError("tracking.wandb needs `pip install wandb`") from exc
            self.wandb = wandb.init(project=cfg.tracking.wandb_project, dir=str(out_dir),
                                    config=cfg.model_dump(mode="json"), resume="allow")

    def log(self, metrics: dict, step: int) -> None:
        scalars = {k: float(v) for k, v in metrics.items() if k != "step" and isinstance(v, int | float)}
        if self.tb is not None:
            for name, value in scalars.items():
                self.tb.add_scalar(f"train/{name}", value, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
