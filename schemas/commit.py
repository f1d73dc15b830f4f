"""The commit record: one small JSON object per committed shard, written last.

A shard exists for readers only once its commit record does; the record is also what workers send
back to the driver (counts, ids, bytes — never sample data) and what resume anti-joins against.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from schemas.layered_clip import SCHEMA_VERSION


class StageStats(BaseModel):
    """Busy time of one stage over some units (measured in the workers, ``stages.base.run_timed``)."""

    model_config = ConfigDict(extra="ignore")
    #: Seconds the stage's actors spent in calls on these units (wall clock, model load excluded).
    seconds: float = 0.0
    #: Units the stage processed (live on entry; units rejected upstream pass through uncounted).
    items: int = 0
    #: Stage calls (Ray batches) those units came in; items / calls = units per actor call.
    calls: float = 0.0

    def add(self, other: StageStats) -> None:
        self.seconds += other.seconds
        self.items += other.items
        self.calls += other.calls


class CommitRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")
    schema_version: str = SCHEMA_VERSION
    #: Tar file name under ``shards/`` (also names the ``manifest/`` and ``rejects/`` parts).
    shard: str
    num_samples: int = 0
    num_rejects: int = 0
    bytes: int = 0
    #: Every clip (unit) committed by this shard, with or without samples.
    clip_ids: list[str] = Field(default_factory=list)
    #: Clips of ``clip_ids`` that produced no sample (only rejects); retried by ``retry_rejects``.
    rejected_clip_ids: list[str] = Field(default_factory=list)
    #: Input a clip came from, aligned with ``clip_ids`` ("" when unknown).
    clip_sources: list[str] = Field(default_factory=list)
    #: Clips planned for each input this shard touches: an input is done when all of them are committed.
    planned: dict[str, int] = Field(default_factory=dict)
    #: Per clip (aligned with ``clip_ids``): the failure signature of its first error reject, "" if none
    #: (what the driver's error-rate circuit breaker watches).
    clip_failures: list[str] = Field(default_factory=list)
    keys: list[str] = Field(default_factory=list)
    labels: dict[str, int] = Field(default_factory=dict)
    reject_reasons: dict[str, int] = Field(default_factory=dict)
    #: Orders commits (the latest commit of a clip wins after ``retry_rejects``); 0 for old records.
    committed_at: float = Field(default_factory=time.time)
    #: Who wrote it (host:pid), for audits.
    writer: str = ""
    #: Per-stage busy time of this shard's clips, by stage name (what ``ray.costs_from`` sizes pools by).
    stage_stats: dict[str, StageStats] = Field(default_factory=dict)
