"""Multi-GPU / multi-node training with Ray Train's TorchTrainer.

Every worker runs the same :class:`~layerflow_train.trainer.Trainer` with its world rank: the sampler
gives each rank disjoint samples, DDP (or FSDP2) averages gradients. Rank 0 writes each checkpoint
(trainable weights + optimizer state) into a local temporary directory and hands it to
``ray.train.report``, which uploads it to the run's storage (``ray.storage_path``: shared storage such
as s3:// or NFS on multi-node clusters) and keeps only the newest ``checkpoint.keep_last``
(``CheckpointConfig(num_to_keep=...)``); the local copy is deleted once uploaded. A restarted run with
the same ``ray.name`` and storage resumes on every rank from that one checkpoint
(``ray.train.get_checkpoint()``), never from a rank's local disk, and the trainer refuses to start if
ranks disagree on the step.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from dataset_builder.cluster import init_ray
from layerflow_train.config import TrainConfig, resolve_model_path


def train_loop_per_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from layerflow_train.recipes import RECIPES
    from layerflow_train.trainer import Trainer

    cfg = TrainConfig.model_validate(config["cfg"])
    ctx = ray.train.get_context()
    local = Path(tempfile.mkdtemp(prefix="layerflow-ckpt-"))

    def report(metrics: dict, ckpt: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(ckpt)) if ckpt is not None else None
        ray.train.report(metrics, checkpoint=checkpoint)  # uploads before returning
        if ckpt is not None:
            shutil.rmtree(ckpt, ignore_errors=True)

    def make(resume_from: Path | None) -> Trainer:
        trainer = Trainer(cfg, RECIPES[cfg.stage](), rank=ctx.get_world_rank(), world_size=ctx.get_world_size(),
                          device=ray.train.torch.get_device(), report=report, resume_from=resume_from,
                          resume_local=False)
        trainer.checkpoint_root = local
        return trainer

    checkpoint = ray.train.get_checkpoint() if cfg.checkpoint.resume else None
    try:
        if checkpoint is not None:
            with checkpoint.as_directory() as path:
                trainer = make(Path(path))
        else:
            trainer = make(None)
        trainer.fit()
    finally:
        shutil.rmtree(local, ignore_errors=True)


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
        "data": d.model_copy(update={"shards": [a(s) for s in d.shards], "precomputed_dir": a(d.precomputed_dir)}),
        "lora": lo.model_copy(update={"motion_weights": a(lo.motion_weights),
                                      "content_weights": a(lo.content_weights)}),
        "checkpoint": c.model_copy(update={"output_dir": a(c.output_dir)}),
        "ray": r.model_copy(update={"storage_path": storage}),
    })


def fit_with_ray(cfg: TrainConfig):
    """Run ``cfg`` on ``cfg.ray.num_workers`` workers; returns Ray's ``Result``."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = absolute_paths(cfg)
    r = cfg.ray
    storage = r.storage_path or str((Path(cfg.checkpoint.output_dir) / "ray").resolve())
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json")},
        scaling_config=ScalingConfig(num_workers=r.num_workers, use_gpu=r.use_gpu,
                                     resources_per_worker={"CPU": r.cpus_per_worker}),
        run_config=RunConfig(name=r.name or f"layerflow-stage{cfg.stage}", storage_path=storage,
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.keep_last)),
    )
    init_ray(None)  # RAY_ADDRESS (ray job submit) or a private local Ray, never a stray head on the host
    return trainer.fit()
