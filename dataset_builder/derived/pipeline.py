"""Driver of the two derived datasets: plan units on the driver, run them through the shared stage
runtime (layering stage -> encode stage -> writer stage on the workers, :mod:`dataset_builder.stages.runtime`).

Units already committed in ``output.dir`` are anti-joined away before Ray starts, so a resumed run does
no work for them. Units rejected on the driver (unreadable source shard, no background) are written by
a driver-side :class:`ShardWriter`, the same writer the workers use.
"""

from __future__ import annotations

import logging
import uuid

import numpy as np
from collections.abc import Iterator
from typing import Any

from dataset_builder.cluster import init_ray
from dataset_builder.config import RayConfig, Resources
from dataset_builder.derived import copypaste as cp
from dataset_builder.derived import image_layers as il
from dataset_builder.derived.common import EncodeLayersStage, UnitState
from dataset_builder.derived.config import CopyPasteConfig, ImageLayersConfig
from dataset_builder.io import layout
from dataset_builder.io.shard_writer import OutputDir, ShardWriter
from dataset_builder.stages.runtime import StageSpec, run_local, run_ray, start_crash_ledger, writer_spec
from schemas import CommitRecord, RejectRecord

log = logging.getLogger(__name__)


def _init_ray(cfg: RayConfig) -> bool:
    """Connect/start Ray unless already up (a private local Ray unless ray.address / RAY_ADDRESS say
    otherwise, see :mod:`dataset_builder.cluster`). Returns True if this call started it (caller shuts down)."""
    return init_ray(cfg.address, cfg.num_cpus)


def unit_specs(stage_cls: type, stage_kwargs: dict[str, Any], stage_res: Resources,
               encode_kwargs: dict[str, Any], encode_res: Resources) -> list[StageSpec]:
    """The derived DAG: the layering stage, then :class:`EncodeLayersStage`."""
    return [StageSpec(stage_cls, stage_kwargs, stage_res), StageSpec(EncodeLayersStage, encode_kwargs, encode_res)]


def _meta_batches(metas: list[str]) -> Iterator[dict[str, np.ndarray]]:
    for meta in metas:
        column = np.empty(1, dtype=object)
        column[0] = meta
        yield {"meta": column}


def _reject_only(writer: ShardWriter, unit_id: str, source_uri: str, stage: str, reason: str, detail: str) -> None:
    writer.add_clip(unit_id, [], [RejectRecord(source_uri=source_uri, clip_id=unit_id, stage=stage,
                                               reason=reason, detail=detail[:2000])])


def _run(metas: list[str], stage_cls: type, cfg: CopyPasteConfig | ImageLayersConfig, stage_res: Resources,
         use_ray: bool = True, **encode_options: Any) -> list[CommitRecord]:
    """Build ``metas`` through the shared runtime; workers write the shards, the commit records come back."""
    if not metas:
        return []
    stage_kwargs = {"config": cfg.model_dump(mode="json")}
    encode_kwargs = {"stage": stage_cls.stage, "crf": cfg.output.crf, "fg_fill": cfg.output.fg_fill, **encode_options}
    specs = unit_specs(stage_cls, stage_kwargs, stage_res, encode_kwargs, cfg.encode)
    writer = writer_spec(cfg.output.dir, UnitState, cfg.output.samples_per_shard, cfg.output.max_shard_bytes)
    if not use_ray:
        return list(run_local(_meta_batches(metas), specs, writer))
    started = _init_ray(cfg.ray)
    try:
        import ray.data

        ray.data.DataContext.get_current().execution_options.preserve_order = cfg.ray.preserve_order
        ledger = f"layerflow-crash-ledger-{uuid.uuid4().hex[:12]}"
        ledger_actor = start_crash_ledger(ledger)  # noqa: F841 - held so it lives as long as the run
        return list(run_ray(ray.data.from_items([{"meta": meta} for meta in metas]), specs, writer, ledger))
    finally:
        if started:
            import ray

            ray.shutdown()


def _summary(writer: ShardWriter, commits: list[CommitRecord]) -> dict[str, Any]:
    summary = writer.close()
    summary["samples_written_now"] += sum(c.num_samples for c in commits)
    summary["rejects_written_now"] += sum(c.num_rejects for c in commits)
    return summary


def run_copypaste(cfg: CopyPasteConfig, use_ray: bool = True) -> dict[str, Any]:
    config_hash = cfg.processing_hash()
    out = cfg.output
    with OutputDir(out.dir), ShardWriter(out.dir, out.samples_per_shard, out.max_shard_bytes,
                                         out.retry_rejects) as writer:
        plan = cp.plan_copypaste(cfg)
        for r in plan.rejects:
            _reject_only(writer, r.unit_id, r.source_uri, cp.STAGE, r.reason, r.detail)
        pairs = plan.pairs
        todo = layout.resume_plan(out.dir, include_rejected=not out.retry_rejects).pending_units(
            [p.unit_id for p in pairs])
        pending = [p for p, needed in zip(pairs, todo) if needed]
        metas = [UnitState(unit_id=p.unit_id, source_uri=p.fg.source_uri, task=p.model_dump()).model_dump_json()
                 for p in pending]
        writer.flush()
        summary = _summary(writer, _run(metas, cp.CopyPasteStage, cfg, cfg.composite, use_ray))
    summary.update(fg_sources=plan.fg_sources, bg_sources=plan.bg_sources, pairs=len(pairs),
                   pending_units=len(pending), out_dir=str(out.dir), config_hash=config_hash)
    return summary


def run_image_layers(cfg: ImageLayersConfig, use_ray: bool = True) -> dict[str, Any]:
    config_hash = cfg.processing_hash()
    out = cfg.output
    with OutputDir(out.dir), ShardWriter(out.dir, out.samples_per_shard, out.max_shard_bytes,
                                         out.retry_rejects) as writer:
        tasks = il.discover_tasks(cfg.input)
        ids = [il.unit_id_for(task, config_hash) for task in tasks]
        todo = layout.resume_plan(out.dir, include_rejected=not out.retry_rejects).pending_units(ids)
        metas = [UnitState(unit_id=unit_id, source_uri=task.path, task=task.model_dump()).model_dump_json()
                 for task, unit_id, needed in zip(tasks, ids, todo) if needed]
        commits = _run(metas, il.ImageLayersStage, cfg, cfg.inpaint.resources, use_ray,
                       exact_static=cfg.static_encoding == "exact")
        summary = _summary(writer, commits)
    summary.update(inputs=len(tasks), pending_units=len(metas), out_dir=str(out.dir), config_hash=config_hash)
    return summary
