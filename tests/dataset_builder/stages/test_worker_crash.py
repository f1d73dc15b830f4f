"""A hard crash (os._exit, SIGSEGV) of a worker on one clip costs that clip, not the run: it is retried
once alone in a fresh worker, then committed as a ``worker_crash`` reject (old main: Ray Data retried
the task forever, so the build never ended)."""

from __future__ import annotations

import ctypes
import os
import uuid

import numpy as np
import pytest

from dataset_builder.config import Resources
from dataset_builder.io import layout
from dataset_builder.stages.base import ClipStage, ClipState
from dataset_builder.stages.runtime import StageSpec, run_ray, start_crash_ledger, writer_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # each worker restart takes tens of seconds here


class PoisonedTag(ClipStage):
    stage = "tag"

    def process(self, state, row):
        if state.clip_id == "poison-exit":
            os._exit(1)
        if state.clip_id == "poison-segv":
            # a real segfault, in this thread: os.kill(getpid(), SIGSEGV) is delivered to the main thread
            # while Ray Data 2.60 runs the stage on another, which went on, ended the batch in the ledger
            # and returned before the process died, so every retry looked like a first start: a hang
            ctypes.string_at(0)
        state.tags.append({"label": "ok", "score": 1.0})


def test_poisoned_clips_become_worker_crash_rejects_and_the_rest_commits(ray_local, tmp_path):
    ids = ["c0", "poison-exit", "c1", "poison-segv", "c2"]
    rows = [{"meta": ClipState(clip_id=cid, source_uri=f"/v/{cid}.mp4", clips_planned=1).model_dump_json(),
             "frames": np.zeros((2, 4, 4, 3), np.uint8), "masks": np.zeros((0, 2, 4, 4), np.uint8),
             "backgrounds": np.zeros((0, 2, 4, 4, 3), np.uint8)} for cid in ids]
    ds = ray_local.data.from_items(rows, override_num_blocks=3)
    name = f"test-ledger-{uuid.uuid4().hex[:8]}"
    ledger = start_crash_ledger(name)
    stage = StageSpec(PoisonedTag, {}, Resources(num_cpus=0.5, concurrency=1, batch_size=2))
    commits = list(run_ray(ds, [stage], writer_spec(tmp_path, ClipState, 64, 1 << 20), ledger=name))
    committed = sorted(c for record in commits for c in record.clip_ids)
    assert committed == sorted(ids)  # every clip committed exactly once
    crashes = {r["clip_id"]: r for r in layout.read_rejects(tmp_path).to_pylist() if r["reason"] == "worker_crash"}
    assert set(crashes) == {"poison-exit", "poison-segv"}
    assert crashes["poison-exit"]["stage"] == "tag" and "died twice" in crashes["poison-exit"]["detail"]
    assert ray_local.get(ledger.in_flight.remote()) == 0
