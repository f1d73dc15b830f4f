"""Stage actors cap OpenCV's thread pool to their CPUs. OpenCV's pthreads pool ignores the
OMP_NUM_THREADS Ray sets: before, every actor of 0.5 CPU started one thread per core of its node."""

from __future__ import annotations

import uuid

import cv2
import numpy as np
import pytest

from dataset_builder.config import Resources
from dataset_builder.stages.runtime import (
    CrashGuarded,
    StageSpec,
    ThreadLimited,
    cpu_threads,
    map_stage,
    start_crash_ledger,
)


class ReportThreads:
    """A stage that says how many threads OpenCV would use in its actor."""

    def __init__(self):
        self.threads = cv2.getNumThreads()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"threads": np.full(len(batch["x"]), self.threads)}


def test_cpu_threads_are_whole_cpus_at_least_one():
    assert [cpu_threads(Resources(num_cpus=n)) for n in (0.25, 0.5, 1, 2.5, 4)] == [1, 1, 1, 2, 4]


def test_thread_limited_caps_opencv_before_the_stage_is_built():
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)  # a pool larger than the cap, so that the cap is seen on any machine
        stage = ThreadLimited(ReportThreads, {}, threads=1)
        assert stage.inner.threads == 1 and stage({"x": np.zeros(2)})["threads"].tolist() == [1, 1]
    finally:
        cv2.setNumThreads(before)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_actors_run_opencv_on_their_cpus_only(ray_local):
    ds = ray_local.data.from_items([{"x": i} for i in range(4)], override_num_blocks=2)
    spec = StageSpec(ReportThreads, {}, Resources(num_cpus=0.5, concurrency=1, batch_size=2))
    assert {int(r["threads"]) for r in map_stage(ds, spec).iter_rows()} == {1}
    name = f"test-threads-{uuid.uuid4().hex[:8]}"
    ledger = start_crash_ledger(name)  # noqa: F841 (held while it is used)
    before = cv2.getNumThreads()
    try:  # with a crash ledger (every real build) the stage runs inside CrashGuarded: capped too
        cv2.setNumThreads(2)
        assert CrashGuarded(ReportThreads, {}, ledger=name, threads=1).inner.threads == 1
    finally:
        cv2.setNumThreads(before)
