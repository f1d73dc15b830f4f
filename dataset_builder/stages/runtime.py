"""The one stage runtime of every pipeline (coarse, copy-paste, image-layers).

* :func:`map_stage` - the Ray Data adapter: a :class:`StageSpec` (callable class + constructor kwargs +
  :class:`~dataset_builder.config.Resources`) becomes one ``map_batches`` call on an autoscaling actor
  pool (``concurrency``..``max_concurrency`` actors, CPUs/GPUs per actor).
* :class:`WriteShards` - the writer stage. It runs on the workers, writes its rows' units straight to
  the output storage as committed shards (data first, commit record last) and emits one small row
  per shard: the JSON commit record. That is all the driver ever receives.
* :func:`run_ray` (:func:`write_ray`) / :func:`run_local` - the same stages and writer on Ray Data, or called in this
  process (debugging, small jobs, benchmark baseline). Both yield :class:`CommitRecord` objects.

With a crash ledger, every stage runs inside :class:`CrashGuarded`: a unit whose worker dies (segfault,
OOM kill) is retried once alone in a fresh worker, then becomes a ``worker_crash`` reject.

Stages are row stages (:class:`~dataset_builder.stages.base.RowStage`): exceptions become rejects
there; rows end with ``meta`` (the unit's state JSON) and ``payload`` (the encoded tar fragment).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataset_builder.config import Resources
from dataset_builder.io.shard_writer import ShardWriter, samples_from_payload
from dataset_builder.io.storage import Storage
from dataset_builder.stages.base import RowState, batch_from_rows, rows_from_batch
from dataset_builder.stages.circuit_breaker import clip_failure
from schemas import CommitRecord

log = logging.getLogger(__name__)

COMMIT_COLUMN = "commit"


@dataclass(frozen=True)
class StageSpec:
    cls: type
    kwargs: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)

    def build(self):
        return self.cls(**self.kwargs)


def pool_size(res: Resources) -> tuple[int, int]:
    low = max(1, res.concurrency)
    return low, max(low, res.max_concurrency or low)


def cpu_threads(res: Resources) -> int:
    """Threads an actor of ``res`` may run: its whole CPUs, at least one (0.5 CPU -> 1)."""
    return max(1, int(res.num_cpus))


def limit_cpu_threads(threads: int) -> None:
    """Cap OpenCV's thread pool (pthreads: it ignores the OMP_NUM_THREADS Ray sets, and starts one
    thread per core of the node in every actor: 64 actors of 0.5 CPU on a 64-core node ran 4096).
    On 2 cores, YOLOv3-tiny on 16 frames cost 1.39 CPU s with the default pool vs 1.01 s on one."""
    try:
        import cv2
    except ImportError:  # a stage without OpenCV
        return
    cv2.setNumThreads(threads)


class ThreadLimited:
    """A stage whose actor first caps the CPU threads to its resources (:func:`limit_cpu_threads`)."""

    def __init__(self, inner: type, inner_kwargs: dict[str, Any], threads: int):
        limit_cpu_threads(threads)
        self.inner = inner(**inner_kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.inner(batch)


def actor_class(inner: type, inner_kwargs: dict[str, Any], res: Resources, ledger: str | None = None
                ) -> tuple[type, dict[str, Any]]:
    """(class, constructor kwargs) of the actor that runs ``inner`` on ``res``: OpenCV capped to its
    CPUs, inside :class:`CrashGuarded` when there is a crash ``ledger``."""
    wrapped = {"inner": inner, "inner_kwargs": inner_kwargs, "threads": cpu_threads(res)}
    return (CrashGuarded, {**wrapped, "ledger": ledger}) if ledger is not None else (ThreadLimited, wrapped)


def map_stage(ds, spec: StageSpec, ledger: str | None = None, **ray_args):
    """``ds.map_batches`` of one stage on an autoscaling actor pool sized by its resources, its actors'
    OpenCV threads capped to their CPUs. With a crash ``ledger`` (:func:`start_crash_ledger`) the stage
    runs inside :class:`CrashGuarded`."""
    import ray.data

    res = spec.resources
    low, high = pool_size(res)
    cls, kwargs = actor_class(spec.cls, spec.kwargs, res, ledger)
    return ds.map_batches(
        cls, fn_constructor_kwargs=kwargs, batch_size=res.batch_size, batch_format="numpy",
        num_cpus=res.num_cpus, num_gpus=res.num_gpus or None,
        compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high), **ray_args,
    )


# -- hard worker crashes ----------------------------------------------------------------------------
WORKER_CRASH = "worker_crash"


class CrashLedger:
    """Counts how often each unit was started, cluster-wide (a named Ray actor; Ray-free logic).

    Ray Data retries a task forever when its actor process dies (segfault, OOM kill, ``os._exit``),
    so one poisoned clip would end the run by never ending it. The ledger remembers, across those
    retries and fresh workers, which units were in flight."""

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self.alone: dict[str, int] = {}

    def begin(self, keys: list[str]) -> list[int]:
        """Start ``keys`` as one batch; returns each key's start count including this one."""
        out = []
        for key in keys:
            self.started[key] = self.started.get(key, 0) + 1
            out.append(self.started[key])
        return out

    def begin_alone(self, key: str) -> int:
        """Start ``key`` on its own; returns how many earlier solo starts it had (each one crashed)."""
        before = self.alone.get(key, 0)
        self.alone[key] = before + 1
        return before

    def end(self, keys: list[str]) -> None:
        for key in keys:
            self.started.pop(key, None)
            self.alone.pop(key, None)

    def in_flight(self) -> int:
        return len(self.started)


def start_crash_ledger(name: str):
    """The run's ledger actor (owned by the driver's job, gone with it)."""
    import ray

    return ray.remote(num_cpus=0)(CrashLedger).options(name=name, max_restarts=0).remote()


class CrashGuarded:
    """Runs a stage so that a hard crash of its worker costs one unit, not the run: a batch whose
    units were started before (Ray is retrying it after the worker died) is re-run one unit at a
    time; a unit whose solo run crashed too becomes a ``worker_crash`` reject without running again
    (so it gets exactly one retry, in a fresh worker)."""

    def __init__(self, inner: type, inner_kwargs: dict[str, Any], ledger: str, threads: int | None = None):
        import ray

        if threads is not None:
            limit_cpu_threads(threads)
        self.inner = inner(**inner_kwargs)
        self.ledger = ray.get_actor(ledger)
        self.name = getattr(self.inner, "stage", type(self.inner).__name__)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray

        rows = rows_from_batch(batch)
        keys = [_unit_key(row) for row in rows]
        starts = ray.get(self.ledger.begin.remote(keys))
        if all(n == 1 for n in starts):
            out = self.inner(batch)
            self.ledger.end.remote(keys)
            return out
        outs = []
        for row, key in zip(rows, keys):
            if ray.get(self.ledger.begin_alone.remote(key)) >= 1:
                log.warning("%s crashed its worker twice on %s: rejected as %s", self.name, key, WORKER_CRASH)
                outs.append(self._reject(row, key))
            else:
                outs.append(self.inner(batch_from_rows([row])))
            self.ledger.end.remote([key])
        rows_out = [r for out in outs for r in rows_from_batch(out)]
        return batch_from_rows(rows_out) if rows_out else self.inner({k: v[:0] for k, v in batch.items()})

    def _reject(self, row: dict[str, Any], key: str) -> dict[str, np.ndarray]:
        detail = f"the worker process died twice while {type(self.inner).__name__} processed {key} (segfault/OOM?)"
        if "meta" not in row:  # the decode stage: its input row is a video
            return batch_from_rows(self.inner.crash_rejects(str(row["uri"]), WORKER_CRASH, detail))
        stages = getattr(self.inner, "stages", [self.inner])
        state = stages[0].state_cls.model_validate_json(row["meta"])
        state.reject_row(getattr(stages[0], "stage", self.name), WORKER_CRASH, detail)
        state.rejected = True
        row["meta"] = state.model_dump_json()
        return self.inner(batch_from_rows([row]))  # passes through as rejected (heavy columns dropped)


def _unit_key(row: dict[str, Any]) -> str:
    if "meta" in row:
        meta = json.loads(row["meta"])
        return str(meta.get("clip_id") or meta.get("unit_id"))
    return str(row["uri"])


class WriteShards:
    """Writer stage: each call writes its batch's units as one or more committed shards and returns
    their commit records (``{"commit": [json, ...]}``). With ``flush_each_batch`` (Ray) nothing stays
    open between calls, so a batch Ray considers done is durably committed."""

    def __init__(self, out: str, state_cls: type[RowState], samples_per_shard: int = 64,
                 max_shard_bytes: int = 1 << 30, flush_each_batch: bool = True):
        self.writer = ShardWriter(Storage.at(out), samples_per_shard, max_shard_bytes, skip_committed=False)
        self.state_cls = state_cls
        self.flush_each_batch = flush_each_batch

    def add_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            state = self.state_cls.model_validate_json(row["meta"])
            samples = [] if state.rejected else samples_from_payload(bytes(row.get("payload") or b""))
            self.writer.add_clip(state.row_id, samples, state.rejects, source=state.input_key,
                                 planned=state.clips_planned, failure=clip_failure(state.rejects),
                                 stage_seconds=state.stage_seconds)

    def take_commits(self) -> list[CommitRecord]:
        commits, self.writer.commits = self.writer.commits, []
        return commits

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.add_rows(rows_from_batch(batch))
        if self.flush_each_batch:
            self.writer.flush()
        column = np.empty(0, dtype=object)
        commits = self.take_commits()
        if commits:
            column = np.empty(len(commits), dtype=object)
            column[:] = [c.model_dump_json() for c in commits]
        return {COMMIT_COLUMN: column}

    def finish(self) -> list[CommitRecord]:
        self.writer.flush()
        return self.take_commits()


def run_ray(ds, stages: list[StageSpec], writer: StageSpec, ledger: str | None = None) -> Iterator[CommitRecord]:
    """Map ``stages`` then the writer over ``ds``; yields the commit records as shards commit."""
    for spec in stages:
        ds = map_stage(ds, spec, ledger)
    return write_ray(ds, writer)


def write_ray(ds, writer: StageSpec) -> Iterator[CommitRecord]:
    for row in map_stage(ds, writer).iter_rows():
        yield CommitRecord.model_validate_json(row[COMMIT_COLUMN])


def run_local(batches: Iterable[dict[str, np.ndarray]], stages: list[StageSpec],
              writer: StageSpec) -> Iterator[CommitRecord]:
    """The same stage objects called in this process. Each stage gets batches of its own
    ``resources.batch_size`` rows, as :func:`map_stage` gives it on Ray (so batching across clips
    behaves the same on both executors); shards fill up to ``samples_per_shard`` across batches."""
    sink: WriteShards = writer.cls(**{**writer.kwargs, "flush_each_batch": False})
    flow: Iterable[dict[str, np.ndarray]] = batches
    for spec in stages:
        flow = rebatched(spec.build(), flow, spec.resources.batch_size)
    for batch in flow:
        sink.add_rows(rows_from_batch(batch))
        yield from sink.take_commits()
    yield from sink.finish()


def rebatched(stage, batches: Iterable[dict[str, np.ndarray]], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """``stage`` over the rows of ``batches`` regrouped into batches of ``batch_size`` (the last may be
    smaller); empty batches are dropped."""
    pending: list[dict[str, Any]] = []
    for batch in batches:
        pending += rows_from_batch(batch)
        while len(pending) >= batch_size:
            group, pending = pending[:batch_size], pending[batch_size:]
            yield stage(batch_from_rows(group))
    if pending:
        yield stage(batch_from_rows(pending))


def writer_spec(out: str | os.PathLike, state_cls: type[RowState], samples_per_shard: int, max_shard_bytes: int,
                resources: Resources | None = None) -> StageSpec:
    """The writer stage for ``out``: by default a batch is one shard's worth of units, on a small
    autoscaling pool of quarter-CPU actors (writing is I/O)."""
    res = resources or Resources(num_cpus=0.25, concurrency=1, max_concurrency=4, batch_size=samples_per_shard)
    store = Storage.at(out)
    target = store.root if store.local else os.fspath(out)  # workers rebuild the filesystem from this
    return StageSpec(WriteShards, {"out": target, "state_cls": state_cls, "samples_per_shard": samples_per_shard,
                                   "max_shard_bytes": max_shard_bytes}, res)
