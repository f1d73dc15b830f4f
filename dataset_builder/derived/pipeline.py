"""Driver of the two derived datasets: plan units on the driver, run them through a Ray Data DAG
(layering stage -> encode stage, actor pools with fractional CPUs), write shards with ShardWriter.

Units already committed in ``output.dir`` are filtered out before Ray starts, so a resumed run does
no work for them; the writer would skip them anyway.
"""

from __future__ import annotations

import logging

import numpy as np
from collections.abc import Iterator
from typing import Any

from dataset_builder.config import RayConfig, Resources
from dataset_builder.derived import copypaste as cp
from dataset_builder.derived import image_layers as il
from dataset_builder.derived.common import EncodeLayersStage, UnitState, samples_from_row
from dataset_builder.derived.config import CopyPasteConfig, ImageLayersConfig
from dataset_builder.io.shard_writer import OutputDir, ShardWriter
from schemas import RejectRecord

log = logging.getLogger(__name__)


def _init_ray(cfg: RayConfig) -> bool:
    """Connect/start Ray unless already up. Returns True if this call started it (caller shuts down)."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(address=cfg.address, num_cpus=cfg.num_cpus, include_dashboard=False, ignore_reinit_error=True)
    return True


def build_dag(metas: list[str], stage_cls: type, stage_kwargs: dict[str, Any], stage_res: Resources,
              encode_kwargs: dict[str, Any], encode_res: Resources, ray_cfg: RayConfig):
    """from_items(unit metas) -> stage_cls actors -> EncodeLayersStage actors. Returns the Dataset."""
    import ray

    ray.data.DataContext.get_current().execution_options.preserve_order = ray_cfg.preserve_order
    ds = ray.data.from_items([{"meta": meta} for meta in metas])
    ds = ds.map_batches(stage_cls, fn_constructor_kwargs=stage_kwargs, batch_size=stage_res.batch_size,
                        batch_format="numpy", num_cpus=stage_res.num_cpus, num_gpus=stage_res.num_gpus or None,
                        compute=ray.data.ActorPoolStrategy(size=stage_res.concurrency))
    return ds.map_batches(EncodeLayersStage, fn_constructor_kwargs=encode_kwargs, batch_size=encode_res.batch_size,
                          batch_format="numpy", num_cpus=encode_res.num_cpus,
                          compute=ray.data.ActorPoolStrategy(size=encode_res.concurrency))


def _execute(ds) -> Iterator[tuple[str, bytes]]:
    for row in ds.iter_rows():
        yield str(row["meta"]), bytes(row["payload"])


def _iter_local(metas: list[str], stage_cls: type, stage_kwargs: dict[str, Any],
                encode_kwargs: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    """The DAG's two stages called in this process, one unit at a time (no Ray)."""
    stage, encode = stage_cls(**stage_kwargs), EncodeLayersStage(**encode_kwargs)
    for meta in metas:
        column = np.empty(1, dtype=object)
        column[0] = meta
        out = encode(stage({"meta": column}))
        yield str(out["meta"][0]), bytes(out["payload"][0])


def _write_units(writer: ShardWriter, rows: Iterator[tuple[str, bytes]]) -> None:
    for meta, payload in rows:
        state, samples = samples_from_row(meta, payload)
        writer.add_clip(state.unit_id, samples, state.rejects)


def _reject_only(writer: ShardWriter, unit_id: str, source_uri: str, stage: str, reason: str, detail: str) -> None:
    writer.add_clip(unit_id, [], [RejectRecord(source_uri=source_uri, clip_id=unit_id, stage=stage,
                                               reason=reason, detail=detail[:2000])])


def _run(writer: ShardWriter, metas: list[str], stage_cls: type, cfg: CopyPasteConfig | ImageLayersConfig,
         stage_res: Resources, use_ray: bool = True, **encode_options: Any) -> None:
    if not metas:
        return
    stage_kwargs = {"config": cfg.model_dump(mode="json")}
    encode_kwargs = {"stage": stage_cls.stage, "crf": cfg.output.crf, "fg_fill": cfg.output.fg_fill, **encode_options}
    if not use_ray:
        _write_units(writer, _iter_local(metas, stage_cls, stage_kwargs, encode_kwargs))
        return
    started = _init_ray(cfg.ray)
    try:
        ds = build_dag(metas, stage_cls, stage_kwargs, stage_res, encode_kwargs, cfg.encode, cfg.ray)
        _write_units(writer, _execute(ds))
    finally:
        if started:
            import ray

            ray.shutdown()


def run_copypaste(cfg: CopyPasteConfig, use_ray: bool = True) -> dict[str, Any]:
    config_hash = cfg.processing_hash()
    out = cfg.output
    with OutputDir(out.dir), ShardWriter(out.dir, out.samples_per_shard, out.max_shard_bytes,
                                         out.retry_rejects) as writer:
        plan = cp.plan_copypaste(cfg)
        for r in plan.rejects:
            _reject_only(writer, r.unit_id, r.source_uri, cp.STAGE, r.reason, r.detail)
        pairs = plan.pairs
        done = writer.committed_clip_ids()
        pending = [p for p in pairs if p.unit_id not in done]
        metas = [UnitState(unit_id=p.unit_id, source_uri=p.fg.source_uri, task=p.model_dump()).model_dump_json()
                 for p in pending]
        _run(writer, metas, cp.CopyPasteStage, cfg, cfg.composite, use_ray)
        summary = writer.close()
    summary.update(fg_sources=plan.fg_sources, bg_sources=plan.bg_sources, pairs=len(pairs),
                   pending_units=len(pending), out_dir=str(out.dir), config_hash=config_hash)
    return summary


def run_image_layers(cfg: ImageLayersConfig, use_ray: bool = True) -> dict[str, Any]:
    config_hash = cfg.processing_hash()
    out = cfg.output
    with OutputDir(out.dir), ShardWriter(out.dir, out.samples_per_shard, out.max_shard_bytes,
                                         out.retry_rejects) as writer:
        tasks = il.discover_tasks(cfg.input)
        done = writer.committed_clip_ids()
        metas = []
        for task in tasks:
            unit_id = il.unit_id_for(task, config_hash)
            if unit_id not in done:
                metas.append(UnitState(unit_id=unit_id, source_uri=task.path, task=task.model_dump()).model_dump_json())
        _run(writer, metas, il.ImageLayersStage, cfg, cfg.inpaint.resources, use_ray,
             exact_static=cfg.static_encoding == "exact")
        summary = writer.close()
    summary.update(inputs=len(tasks), pending_units=len(metas), out_dir=str(out.dir), config_hash=config_hash)
    return summary
