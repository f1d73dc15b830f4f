"""Error-rate circuit breaker: a systematic failure aborts the build with the dominant cause; judged
rejects (no objects, duplicates) and occasional errors do not."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_builder.config import BuildConfig
from dataset_builder.stages.base import ClipStage, ClipState
from dataset_builder.stages.circuit_breaker import BuildAborted, ErrorRateBreaker
from schemas import RejectRecord


def _reject(reason: str, detail: str = "", stage: str = "inpaint", object_id: int = -1) -> RejectRecord:
    return RejectRecord(source_uri="v.mp4", clip_id="c", stage=stage, reason=reason, detail=detail,
                        object_id=object_id)


def test_trips_on_systematic_errors_with_the_dominant_cause():
    breaker = ErrorRateBreaker(max_error_rate=0.5, window=10, min_clips=4)
    oops = [_reject("error", "ModuleNotFoundError: No module named 'pytorchcv'\nTraceback ...")]
    for _ in range(3):
        breaker.observe(oops)  # below min_clips: never trips
    with pytest.raises(BuildAborted, match=r"4 of the last 4 clips.*\(4x\): inpaint: ModuleNotFoundError: No module "
                                           r"named 'pytorchcv'"):
        breaker.observe(oops)


def test_judged_rejects_and_sparse_errors_do_not_trip():
    breaker = ErrorRateBreaker(max_error_rate=0.5, window=10, min_clips=4)
    for i in range(100):
        if i % 3 == 0:
            breaker.observe([_reject("error", "corrupt frame")])
        elif i % 3 == 1:
            breaker.observe([_reject("no_objects", stage="segment_track"), _reject("duplicate", object_id=1)])
        else:
            breaker.observe([])
    assert breaker.seen == 100


def test_window_forgets_an_early_burst_and_disabled_never_trips():
    breaker = ErrorRateBreaker(max_error_rate=0.5, window=10, min_clips=10)
    for _ in range(5):
        breaker.observe([_reject("oom", "OutOfMemoryError")])
    for _ in range(6):
        breaker.observe([])  # 5/10 then 4/10: not above the bound
    off = ErrorRateBreaker(max_error_rate=1.0, window=5, min_clips=1)
    for _ in range(20):
        off.observe([_reject("error", "x")])
    with pytest.raises(ValueError):
        ErrorRateBreaker(max_error_rate=1.5)


class _Oom(ClipStage):
    stage = "caption"

    def process(self, state, row):
        raise RuntimeError("CUDA out of memory. Tried to allocate 1 GiB")


def test_oom_left_after_batch_back_off_is_its_own_reject_reason():
    state = ClipState(clip_id="c", source_uri="v.mp4")
    batch = {"meta": np.array([state.model_dump_json()]), "frames": np.zeros((1, 2, 4, 4, 3), np.uint8)}
    out = ClipState.model_validate_json(_Oom()(batch)["meta"][0])
    assert out.rejected and out.rejects[0].reason == "oom"


def test_local_build_aborts_when_every_clip_fails(tmp_path, monkeypatch):
    """End to end on the local executor: a stage that fails on every clip stops the build."""
    from dataset_builder import pipeline
    from dataset_builder.samples.synthetic import write_synthetic_video
    from dataset_builder.stages.tag import TagStage

    def broken(self, states, rows):
        raise ImportError("No module named 'pytorchcv'")

    monkeypatch.setattr(TagStage, "infer", broken)
    videos = [tmp_path / f"v{i}.mp4" for i in range(3)]
    for i, video in enumerate(videos):
        write_synthetic_video(video, seed=i, num_frames=8, height=64, width=96)
    cfg = BuildConfig.model_validate({
        "input": {"paths": [str(v) for v in videos]}, "output": {"dir": str(tmp_path / "out")},
        "clip": {"height": 64, "width": 96, "num_frames": 8, "max_clips_per_video": 1},
        "failures": {"max_error_rate": 0.5, "window": 10, "min_clips": 2},
    })
    with pytest.raises(BuildAborted, match="No module named 'pytorchcv'"):
        pipeline.run_build(cfg, use_ray=False)
