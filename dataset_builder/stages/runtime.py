"""The one stage runtime of every pipeline (coarse, copy-paste, image-layers).

* :func:`map_stage` - the Ray Data adapter: a :class:`StageSpec` (callable class + constructor kwargs +
  :class:`~dataset_builder.config.Resources`) becomes one ``map_batches`` call on an autoscaling actor
  pool (``concurrency``..``max_concurrency`` actors, CPUs/GPUs per actor).
* :class:`WriteShards` - the writer stage. It runs on the workers, writes its rows' units straight to
  the output storage as committed shards (data first, commit record last) and emits one small row
  per shard: the JSON commit record. That is all the driver ever receives.
* :func:`run_ray` (:func:`write_ray`) / :func:`run_local` - the same stages and writer on Ray Data, or called in this
  process (debugging, small jobs, benchmark baseline). Both yield :class:`CommitRecord` objects.

Stages are row stages (:class:`~dataset_builder.stages.base.RowStage`): exceptions become rejects
there; rows end with ``meta`` (the unit's state JSON) and ``payload`` (the encoded tar fragment).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataset_builder.config import Resources
from dataset_builder.io.shard_writer import ShardWriter, samples_from_payload
from dataset_builder.io.storage import Storage
from dataset_builder.stages.base import RowState, rows_from_batch
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


def map_stage(ds, spec: StageSpec, **ray_args):
    """``ds.map_batches`` of one stage on an autoscaling actor pool sized by its resources."""
    import ray.data

    res = spec.resources
    low, high = pool_size(res)
    return ds.map_batches(
        spec.cls, fn_constructor_kwargs=spec.kwargs, batch_size=res.batch_size, batch_format="numpy",
        num_cpus=res.num_cpus, num_gpus=res.num_gpus or None,
        compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high), **ray_args,
    )


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
                                 planned=state.clips_planned, failure=clip_failure(state.rejects))

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


def run_ray(ds, stages: list[StageSpec], writer: StageSpec) -> Iterator[CommitRecord]:
    """Map ``stages`` then the writer over ``ds``; yields the commit records as shards commit."""
    for spec in stages:
        ds = map_stage(ds, spec)
    return write_ray(ds, writer)


def write_ray(ds, writer: StageSpec) -> Iterator[CommitRecord]:
    for row in map_stage(ds, writer).iter_rows():
        yield CommitRecord.model_validate_json(row[COMMIT_COLUMN])


def run_local(batches: Iterable[dict[str, np.ndarray]], stages: list[StageSpec],
              writer: StageSpec) -> Iterator[CommitRecord]:
    """The same stage objects called in this process, one input batch at a time; shards fill up to
    ``samples_per_shard`` across batches."""
    built = [spec.build() for spec in stages]
    sink: WriteShards = writer.cls(**{**writer.kwargs, "flush_each_batch": False})
    for batch in batches:
        for stage in built:
            if not len(next(iter(batch.values()), [])):
                break
            batch = stage(batch)
        if len(next(iter(batch.values()), [])):
            sink.add_rows(rows_from_batch(batch))
        yield from sink.take_commits()
    yield from sink.finish()


def writer_spec(out: str | os.PathLike, state_cls: type[RowState], samples_per_shard: int, max_shard_bytes: int,
                resources: Resources | None = None) -> StageSpec:
    """The writer stage for ``out``: by default a batch is one shard's worth of units, on a small
    autoscaling pool of quarter-CPU actors (writing is I/O)."""
    res = resources or Resources(num_cpus=0.25, concurrency=1, max_concurrency=4, batch_size=samples_per_shard)
    store = Storage.at(out)
    target = store.root if store.local else os.fspath(out)  # workers rebuild the filesystem from this
    return StageSpec(WriteShards, {"out": target, "state_cls": state_cls, "samples_per_shard": samples_per_shard,
                                   "max_shard_bytes": max_shard_bytes}, res)
