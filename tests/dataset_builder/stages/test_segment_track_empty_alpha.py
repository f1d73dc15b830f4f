"""segment_track rejects an object whose alpha vanishes in some frame (it would stay whole in the bg)."""

import numpy as np

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import TrackedObject
from dataset_builder.models.registry import register
from dataset_builder.stages.base import ClipState, batch_from_rows, rows_from_batch
from dataset_builder.stages.segment_track import SegmentTrackStage, empty_alpha_frames


class VanishingSegmenter:
    """Two objects: one present in every frame, one that is gone in frame 2 and a speck in frame 3."""

    def __init__(self, spec):
        pass

    def segment(self, frames, prompts):
        t, h, w = frames.shape[:3]
        whole = np.zeros((t, h, w), np.uint8)
        whole[:, 2:10, 2:10] = 255
        gappy = np.zeros((t, h, w), np.uint8)
        gappy[:, 10:20, 10:20] = 255
        gappy[2] = 0
        gappy[3, 10:20, 10:20] = 0
        gappy[3, 10, 10] = 255
        return [TrackedObject("dog", gappy, 0.9), TrackedObject("cat", whole, 0.5)]


register("segment_track", "test_vanishing", VanishingSegmenter)


def test_empty_alpha_frames_finds_missing_and_speck_frames():
    m = np.full((4, 8, 8), 255, np.uint8)
    m[1] = 0
    m[2] = 0
    m[2, 0, 0] = 255
    assert empty_alpha_frames(m) == [1, 2]
    assert empty_alpha_frames(np.full((3, 4, 4), 200, np.uint8)) == []


def test_object_with_an_empty_alpha_frame_is_rejected_with_reason():
    t, h, w = 5, 24, 24
    state = ClipState(clip_id="c", source_uri="/v.mp4", num_frames=t, height=h, width=w, tags=[])
    row = {"meta": state.model_dump_json(), "frames": np.zeros((t, h, w, 3), np.uint8),
           "masks": np.zeros((0, t, h, w), np.uint8), "backgrounds": np.zeros((0, t, h, w, 3), np.uint8)}
    out = rows_from_batch(SegmentTrackStage(BackendSpec(name="test_vanishing"))(batch_from_rows([row])))[0]
    state = ClipState.model_validate_json(out["meta"])
    assert [o.label for o in state.objects] == ["cat"]
    assert out["masks"].shape == (1, t, h, w) and (out["masks"][0] >= 128).reshape(t, -1).any(1).all()
    rejects = [(r.stage, r.reason) for r in state.rejects]
    assert rejects == [("segment_track", "empty_alpha_frame")]
    assert "frames=[2, 3]" in state.rejects[0].detail
    assert {"label": "cat", "score": 0.5, "is_subject": True} in state.tags  # the class travels into tags
    assert "dog" not in {t["label"] for t in state.tags}  # the rejected object's class does not
