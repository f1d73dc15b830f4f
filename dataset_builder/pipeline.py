"""Build and run the coarse layered-video DAG from a :class:`BuildConfig`.

    videos -> clip (probe, plan, decode) -> tag -> segment_track -> dedup_masks -> filter_foreground
           -> matte -> inpaint -> layer_qa -> caption -> encode -> writer stage on the workers (shards + commit
           records) -> driver: commit records only (stages/runtime.py)

``matte`` and ``layer_qa`` are the shared post-processing of every profile (not part of any backend).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dataset_builder.cluster import check_resources
from dataset_builder.cluster import init_ray as connect_ray
from dataset_builder.config import BackendSpec, BuildConfig, Resources
from dataset_builder.io import layout
from dataset_builder.io.inputs import InputEntry, discover, manifest_blocks, manifest_table, write_manifest
from dataset_builder.io.shard_writer import DiskFull, OutputDir
from dataset_builder.io.storage import Storage, is_disk_full
from dataset_builder.models.registry import BackendKind, effective_resources
from dataset_builder.stages.base import ClipState, batch_from_rows, rows_from_batch
from dataset_builder.stages.caption import CaptionStage
from dataset_builder.stages.chain import StageChain
from dataset_builder.stages.circuit_breaker import ErrorRateBreaker
from dataset_builder.stages.pool_sizing import build_costs, cost_table, fit_gpu_pools
from dataset_builder.stages.dedup_masks import DedupMasksStage
from dataset_builder.stages.encode import EncodeStage
from dataset_builder.stages.filter_foreground import FilterForegroundStage
from dataset_builder.stages.inpaint import InpaintStage
from dataset_builder.stages.layer_qa import LayerQAStage
from dataset_builder.stages.matte import MatteStage
from dataset_builder.stages.runtime import (
    StageSpec,
    actor_class,
    map_stage,
    run_local,
    start_crash_ledger,
    write_ray,
    writer_spec,
)
from dataset_builder.stages.sample_clips import SampleClips
from dataset_builder.stages.segment_track import SegmentTrackStage
from dataset_builder.stages.tag import TagStage
from schemas import StageStats

log = logging.getLogger(__name__)


def discover_inputs(paths: list[str], extensions: list[str], max_videos: int | None = None) -> list[str]:
    """Usable input videos (sorted, absolute or URIs); see :func:`dataset_builder.io.inputs.discover`
    for the full manifest, which also lists the paths that cannot be used and why."""
    return [e.uri for e in discover(paths, extensions, max_videos) if e.usable]


def _with_absolute_model_dir(spec: BackendSpec, model_root: str | None) -> BackendSpec:
    """Resolve ``model_dir`` on the driver, so actors on other nodes need no LAYERFLOW_MODEL_ROOT."""
    path = spec.resolved_model_dir(model_root)
    return spec if path is None else spec.model_copy(update={"model_dir": str(path)})


def stage_plan(cfg: BuildConfig) -> list[tuple[type, dict[str, Any], Resources]]:
    """(stage class, constructor kwargs, resources) in DAG order."""
    s = cfg.stages.model_copy(update={
        name: _with_absolute_model_dir(spec, cfg.model_root) for name, spec in cfg.stages
    })
    #: The shared post-processing (every profile) is CPU work sized like the encoder.
    post = Resources(num_cpus=cfg.ray.encode_num_cpus, concurrency=cfg.ray.encode_concurrency)
    plan: list[tuple[type, dict[str, Any], Resources]] = [
        (TagStage, {"spec": s.tag}, effective_resources(BackendKind.TAGGER, s.tag)),
        (SegmentTrackStage, {"spec": s.segment_track, "max_objects": cfg.ray.max_objects_per_clip},
         effective_resources(BackendKind.SEGMENTER, s.segment_track)),
        (DedupMasksStage, {"spec": s.dedup_masks}, effective_resources(BackendKind.DEDUP, s.dedup_masks)),
        (FilterForegroundStage, {"spec": s.filter_foreground},
         effective_resources(BackendKind.FG_JUDGE, s.filter_foreground)),
        (MatteStage, {"postprocess": cfg.postprocess}, post),
        (InpaintStage, {"spec": s.inpaint}, effective_resources(BackendKind.INPAINTER, s.inpaint)),
        (LayerQAStage, {"postprocess": cfg.postprocess, "qa": cfg.qa}, post),
        (CaptionStage, {"spec": s.caption}, effective_resources(BackendKind.CAPTIONER, s.caption)),
        (EncodeStage, {"crf": cfg.output.crf, "fg_fill": cfg.output.fg_fill},
         Resources(num_cpus=cfg.ray.encode_num_cpus, concurrency=cfg.ray.encode_concurrency)),
    ]
    return plan


def fuse_cpu_stages(plan):
    """Merge runs of consecutive CPU-only stages into one :class:`StageChain` (max of their resources)."""
    fused, run = [], []

    def flush():
        if not run:
            return
        if len(run) == 1:
            fused.append(run[0])
        else:
            res = Resources(
                num_cpus=max(r.num_cpus for _, _, r in run),
                concurrency=max(r.concurrency for _, _, r in run),
                batch_size=min(r.batch_size for _, _, r in run),
            )
            fused.append((StageChain, {"stages": [(cls, kw) for cls, kw, _ in run]}, res))
        run.clear()

    for item in plan:
        if item[2].num_gpus == 0:
            run.append(item)
        else:
            flush()
            fused.append(item)
    flush()
    return fused


def input_dataset(entries: list[InputEntry], rows_per_block: int = 100):
    """The input manifest as a Ray Dataset in ~``rows_per_block``-row blocks (not one per video)."""
    import ray.data

    table = manifest_table(entries)
    blocks = manifest_blocks(table.num_rows, rows_per_block)
    bounds = [table.num_rows * i // blocks for i in range(blocks + 1)]
    return ray.data.from_arrow([table.slice(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:])])


def decode_stage(ds, cfg: BuildConfig, skip_clip_ids: set[str], ledger: str | None = None):
    """Decode as an autoscaling actor pool. Read-ahead is bounded by Ray Data's backpressure on the
    pool's output and two queued blocks per actor (the least that lets the pool autoscale: Ray Data
    grows a pool at 175 % task utilisation), not by the number of inputs."""
    import ray.data

    kwargs = {"clip": cfg.clip, "config_hash": cfg.processing_hash(), "skip_clip_ids": frozenset(skip_clip_ids),
              "limits": cfg.input}
    # a video that kills its decoder is retried once, then a worker_crash reject
    cls, kwargs = actor_class(SampleClips, kwargs, Resources(num_cpus=cfg.ray.decode_num_cpus), ledger)
    return ds.map_batches(
        cls,
        fn_constructor_kwargs=kwargs,
        batch_size=1, batch_format="numpy", num_cpus=cfg.ray.decode_num_cpus,
        compute=ray.data.ActorPoolStrategy(min_size=cfg.ray.decode_min_actors, max_size=cfg.ray.decode_max_actors,
                                           max_tasks_in_flight_per_actor=2),
    )


def resource_demands(cfg: BuildConfig) -> list[tuple[str, float, float]]:
    """(stage, CPUs, GPUs) one actor of each stage asks for."""
    demands = [("clip", cfg.ray.decode_num_cpus, 0.0)]
    return demands + [(cls.__name__, res.num_cpus, res.num_gpus) for cls, _, res in stage_plan(cfg)]


def stage_specs(cfg: BuildConfig, fuse: bool | None = None) -> list[StageSpec]:
    """The stages after decode, as runtime specs (CPU runs fused when ``ray.fuse_cpu_stages``)."""
    plan = stage_plan(cfg)
    if cfg.ray.fuse_cpu_stages if fuse is None else fuse:
        plan = fuse_cpu_stages(plan)
    return [StageSpec(cls, kwargs, res) for cls, kwargs, res in plan]


def shard_writer_spec(cfg: BuildConfig) -> StageSpec:
    out = cfg.output
    return writer_spec(out.dir, ClipState, out.samples_per_shard, out.max_shard_bytes)


def build_dataset(cfg: BuildConfig, inputs: list[InputEntry], skip_clip_ids: set[str], ledger: str | None = None):
    """inputs -> decode -> stages (Ray Data, lazy); :func:`run_build` maps the writer stage after them.
    ``skip_clip_ids``: committed clips of partially committed inputs only (``layout.resume_plan``)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = cfg.ray.preserve_order
    ds = decode_stage(input_dataset(inputs, cfg.input.rows_per_block), cfg, skip_clip_ids, ledger)
    specs = stage_specs(cfg)
    if cfg.ray.fit_gpu_pools and any(s.resources.num_gpus > 0 for s in specs):
        costs, sources = build_costs(cfg.ray, str(cfg.output.dir))
        specs = fit_specs_to_cluster(specs, float(ray.cluster_resources().get("GPU", 0)), costs)
        for spec in specs:
            if spec.resources.num_gpus > 0:
                name = spec.cls.stage
                log.info("GPU pool %s: %d..%d actors, cost %.3g s/clip (%s)", name, spec.resources.concurrency,
                         spec.resources.max_concurrency, costs.get(name, 1.0), sources.get(name, "default 1"))
    for spec in specs:
        ds = map_stage(ds, spec, ledger)
    return ds


def fit_specs_to_cluster(specs: list[StageSpec], total_gpus: float, costs: dict[str, float]) -> list[StageSpec]:
    """GPU stages get autoscaling pools sized from the cluster's GPUs (``stages.pool_sizing``)."""
    named = [(getattr(s.cls, "stage", f"{s.cls.__name__}#{i}"), s) for i, s in enumerate(specs)]
    if not any(s.resources.num_gpus > 0 for _, s in named):
        return specs
    fitted = fit_gpu_pools([(name, s.resources) for name, s in named], total_gpus, costs)
    return [StageSpec(s.cls, s.kwargs, fitted[name]) for name, s in named]


def init_ray(cfg: BuildConfig) -> None:
    """Private local Ray unless ``ray.address`` / RAY_ADDRESS name a cluster; then check that every
    stage's actor fits on some node (fails in seconds instead of hanging)."""
    connect_ray(cfg.ray.address, cfg.ray.num_cpus)
    check_resources(resource_demands(cfg), cfg.ray.resource_wait_s)


def ensure_output_dir(path: str | os.PathLike) -> Path | str:
    """Create the output dir and prove it is writable now, not after hours of work."""
    store = Storage.at(path)
    try:
        store.makedirs()
        probe = f".write-test-{os.getpid()}"
        store.write_bytes(probe, b"")
        store.delete(probe)
    except OSError as exc:
        raise ValueError(f"output dir {store.uri} is not writable: {exc.strerror or exc}") from None
    return Path(store.root) if store.local else store.uri


def plan_inputs(cfg: BuildConfig, inputs: list[str] | None = None) -> list[InputEntry]:
    """Discover (or take the given paths as named inputs), write ``<out>/inputs.parquet``."""
    store = Storage.at(ensure_output_dir(cfg.output.dir))
    entries = discover(inputs if inputs is not None else cfg.input.paths, cfg.input.extensions,
                       cfg.input.max_videos)
    if not entries:
        raise FileNotFoundError(f"no input videos found under {cfg.input.paths}")
    write_manifest(entries, store.path("inputs.parquet"), filesystem=store.fs)
    return entries


def decoded_batches(cfg: BuildConfig, inputs: list[InputEntry], skip_clip_ids: set[str]) -> Iterator[dict[str, Any]]:
    """Decode in this process, one clip per batch: the local executor's source (no Ray; debugging,
    small jobs, and the baseline of the benchmarks)."""
    sampler = SampleClips(cfg.clip, cfg.processing_hash(), frozenset(skip_clip_ids), cfg.input)
    for entry in manifest_table(inputs).to_pylist():
        for row in rows_from_batch(sampler({k: np.array([v]) for k, v in entry.items()})):
            yield batch_from_rows([row])


def iter_local(cfg: BuildConfig, inputs: list[InputEntry], skip_clip_ids: set[str]) -> Iterator[dict[str, Any]]:
    """The processed rows, one clip at a time, without writing (per-clip timing in the benchmarks)."""
    stages = [spec.build() for spec in stage_specs(cfg, fuse=False)]
    for batch in decoded_batches(cfg, inputs, skip_clip_ids):
        for stage in stages:
            batch = stage(batch)
        yield rows_from_batch(batch)[0]


def run_build(cfg: BuildConfig, inputs: list[str] | None = None, use_ray: bool = True) -> dict[str, Any]:
    """Run the whole build; returns (and writes to ``<out>/run_summary.json``) a summary.

    Resume: inputs whose planned clips are all committed are dropped before anything is decoded (an
    anti-join of the input uris against the commit records); only the committed clip ids of partially
    committed inputs reach the decode stage. Workers write the shards; the driver sees commit records.
    """
    t0 = time.time()
    out_dir = Storage.at(ensure_output_dir(cfg.output.dir))  # local path or s3:// etc.
    with OutputDir(out_dir):
        entries = plan_inputs(cfg, inputs)
        plan = layout.resume_plan(out_dir, include_rejected=not cfg.output.retry_rejects)
        todo = set(plan.pending_inputs([e.uri for e in entries]))
        pending = [e for e in entries if e.uri in todo]
        writer = shard_writer_spec(cfg)
        if not pending:
            commits: Iterator = iter(())
        elif use_ray:
            init_ray(cfg)
            ledger = f"layerflow-crash-ledger-{uuid.uuid4().hex[:12]}"
            ledger_actor = start_crash_ledger(ledger)  # noqa: F841 - held so it lives as long as the run
            commits = write_ray(build_dataset(cfg, pending, plan.partial_clip_ids, ledger), writer)
        else:
            commits = run_local(decoded_batches(cfg, pending, plan.partial_clip_ids),
                                stage_specs(cfg, fuse=False), writer)
        now = {"shards_committed_now": 0, "samples_written_now": 0, "rejects_written_now": 0,
               "clips_processed_now": 0, "commit_bytes_received": 0}
        breaker = ErrorRateBreaker(**cfg.failures.model_dump())
        run_stats: dict[str, StageStats] = {}
        for record in _raise_user_errors(commits):
            for stage, stats in record.stage_stats.items():
                run_stats.setdefault(stage, StageStats()).add(stats)
            now["shards_committed_now"] += 1
            now["samples_written_now"] += record.num_samples
            now["rejects_written_now"] += record.num_rejects
            now["clips_processed_now"] += len(record.clip_ids)
            now["commit_bytes_received"] += len(record.model_dump_json())
            for signature in record.clip_failures or [""] * len(record.clip_ids):
                breaker.observe_signature(signature or None)  # raises BuildAborted on systematic failure
        committed = layout.list_commits(out_dir)
        summary = {
            "shards": sum(1 for c in committed if c.num_samples > 0),
            "samples_total": layout.read_manifest(out_dir, committed).num_rows,
            "rejects_total": layout.read_rejects(out_dir, committed).num_rows,
            **now, "inputs": len(entries), "inputs_skipped_as_committed": len(entries) - len(pending),
            "seconds": round(time.time() - t0, 2), "config_hash": cfg.processing_hash(), "out_dir": out_dir.uri,
            "executor": "ray" if use_ray else "local",
            # measured busy time of this run's stages (``ray.costs_from`` sizes later runs' pools by it)
            "stage_costs": cost_table(run_stats, now["clips_processed_now"]),
        }
        summary["unaccounted_inputs"] = unaccounted_inputs(out_dir, [e.uri for e in entries])
        out_dir.write_bytes("run_summary.json", json.dumps(summary, indent=1).encode())
        out_dir.write_bytes("config.json", cfg.model_dump_json(indent=1).encode())
    return summary


def _raise_user_errors(commits: Iterator):
    """A worker's :class:`DiskFull` arrives wrapped in Ray's task errors: re-raise it as itself."""
    try:
        yield from commits
    except DiskFull:
        raise
    except Exception as exc:
        cause = exc
        while cause is not None:
            if isinstance(cause, DiskFull) or is_disk_full(cause):
                raise DiskFull(errno.ENOSPC, str(cause).strip().splitlines()[-1]) from exc
            cause = cause.__cause__ or cause.__context__
        raise


def unaccounted_inputs(out_dir: str | os.PathLike | Storage, inputs: list[str]) -> list[str]:
    """Inputs that are neither in a shard nor in the rejects table (must be empty)."""
    commits = layout.list_commits(out_dir)
    seen = set(layout.read_manifest(out_dir, commits).column("source_uri").to_pylist())
    seen |= set(layout.read_rejects(out_dir, commits).column("source_uri").to_pylist())
    return sorted(set(inputs) - seen)


__all__ = ["BackendSpec", "build_dataset", "decoded_batches", "discover_inputs", "iter_local", "run_build",
           "stage_plan", "stage_specs", "unaccounted_inputs"]
