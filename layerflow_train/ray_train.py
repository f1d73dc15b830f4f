"""Multi-GPU / multi-node training with Ray Train's TorchTrainer.

Every worker runs the same :class:`~layerflow_train.trainer.Trainer` with its world rank: the sampler
gives each rank disjoint samples, DDP averages gradients, rank 0 writes checkpoints to
``checkpoint.output_dir`` (must be shared storage on multi-node clusters, since every rank resumes
from it) and hands them to Ray via ``ray.train.report``. A 1-worker CPU run works for smoke tests.
"""

from __future__ import annotations

import os
from pathlib import Path

from layerflow_train.config import TrainConfig, resolve_model_path


def train_loop_per_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from layerflow_train.recipes import RECIPES
    from layerflow_train.trainer import Trainer

    cfg = TrainConfig.model_validate(config["cfg"])
    ctx = ray.train.get_context()

    def report(metrics: dict, ckpt: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(ckpt)) if ckpt is not None else None
        ray.train.report(metrics, checkpoint=checkpoint)

    Trainer(cfg, RECIPES[cfg.stage](), rank=ctx.get_world_rank(), world_size=ctx.get_world_size(),
            device=ray.train.torch.get_device(), report=report).fit()


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with every relative path resolved here, on the driver: Ray Train workers run in their own
    working directory (and may not see $LAYERFLOW_MODEL_ROOT), so relative paths would not resolve there."""

    def a(path: str | None) -> str | None:
        return os.path.abspath(os.path.expanduser(path)) if path else path

    m, d, lo, c, r = cfg.model, cfg.data, cfg.lora, cfg.checkpoint, cfg.ray
    storage = r.storage_path if r.storage_path and "://" in r.storage_path else a(r.storage_path)
    return cfg.model_copy(update={
        "model": m.model_copy(update={"model_dir": str(resolve_model_path(m.model_dir).absolute()),
                                      "transformer_dir": a(m.transformer_dir),
                                      "layer_embedder_path": a(m.layer_embedder_path)}),
        "data": d.model_copy(update={"shards": [a(s) for s in d.shards], "cache_dir": a(d.cache_dir)}),
        "lora": lo.model_copy(update={"motion_weights": a(lo.motion_weights),
                                      "content_weights": a(lo.content_weights)}),
        "checkpoint": c.model_copy(update={"output_dir": a(c.output_dir)}),
        "ray": r.model_copy(update={"storage_path": storage}),
    })


def fit_with_ray(cfg: TrainConfig):
    """Run ``cfg`` on ``cfg.ray.num_workers`` workers; returns Ray's ``Result``."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = absolute_paths(cfg)
    r = cfg.ray
    storage = r.storage_path or str((Path(cfg.checkpoint.output_dir) / "ray").resolve())
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json")},
        scaling_config=ScalingConfig(num_workers=r.num_workers, use_gpu=r.use_gpu,
                                     resources_per_worker={"CPU": r.cpus_per_worker}),
        run_config=RunConfig(name=f"layerflow-stage{cfg.stage}", storage_path=storage),
    )
    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    return trainer.fit()
