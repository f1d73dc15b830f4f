"""Each coarse stage, with its real CPU backend, on a synthetic clip whose ground truth is known."""

import numpy as np
import pytest

from dataset_builder.config import BackendSpec
from dataset_builder.samples.synthetic import make_synthetic_clip
from dataset_builder.stages.base import ClipState, ObjectState, batch_from_rows, rows_from_batch
from dataset_builder.stages.caption import CaptionStage
from dataset_builder.stages.dedup_masks import DedupMasksStage
from dataset_builder.stages.filter_foreground import FilterForegroundStage
from dataset_builder.stages.inpaint import InpaintStage
from dataset_builder.stages.segment_track import SegmentTrackStage
from dataset_builder.stages.tag import TagStage

T, H, W = 12, 96, 144


@pytest.fixture(scope="module")
def clip():
    return make_synthetic_clip(seed=5, num_frames=T, height=H, width=W, num_objects=1, camera_pan=False)


def _batch(frames, masks=None, objects=(), tags=()):
    state = ClipState(clip_id="c", source_uri="/s.mp4", fps=8.0, num_frames=T, height=H, width=W,
                      objects=list(objects), tags=list(tags))
    masks = np.zeros((0, T, H, W), np.uint8) if masks is None else masks
    return batch_from_rows([{"meta": state.model_dump_json(), "frames": frames, "masks": masks,
                             "backgrounds": np.zeros((len(masks), T, H, W, 3), np.uint8)}])


def _out(batch):
    row = rows_from_batch(batch)[0]
    return ClipState.model_validate_json(row["meta"]), row


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_tag_then_segment_finds_the_moving_object(clip):
    state, row = _out(TagStage(BackendSpec(name="cpu"))(_batch(clip.frames)))
    labels = [t["label"] for t in state.tags]
    assert "moving object" in labels and state.backends["tag"] == "cpu"
    state, row = _out(SegmentTrackStage(BackendSpec(name="cpu"))(batch_from_rows([row])))
    assert not state.rejected and row["masks"].shape[1:] == (T, H, W)
    best = max(_iou(m > 127, clip.alpha > 127) for m in row["masks"])
    assert best > 0.7


def test_dedup_drops_the_copy_and_keeps_the_better_score(clip):
    gt = clip.alpha
    shifted = np.roll(gt, 40, axis=2)
    masks = np.stack([gt, gt, shifted])
    objects = [ObjectState(object_id=i, label="thing", score=s) for i, s in enumerate((0.5, 0.9, 0.7))]
    state, row = _out(DedupMasksStage(BackendSpec(name="iou"))(_batch(clip.frames, masks, objects)))
    assert [o.object_id for o in state.objects] == [1, 2] and len(row["masks"]) == 2
    assert [(r.object_id, r.reason) for r in state.rejects] == [(0, "duplicate")]


def test_filter_foreground_rejects_a_sky_band_and_keeps_the_mover(clip):
    sky = np.zeros((T, H, W), np.uint8)
    sky[:, : H // 4, :] = 255
    masks = np.stack([clip.alpha, sky])
    objects = [ObjectState(object_id=0, label="thing", score=0.9), ObjectState(object_id=1, label="sky", score=0.9)]
    state, row = _out(FilterForegroundStage(BackendSpec(name="cpu"))(_batch(clip.frames, masks, objects)))
    assert [o.object_id for o in state.objects] == [0]
    assert state.rejects[0].object_id == 1 and state.rejects[0].stage == "filter_foreground"
    assert "fg_judge" in state.objects[0].scores


def test_inpaint_recovers_the_background_and_caption_describes_layers(clip):
    objects = [ObjectState(object_id=0, label="ball", score=0.9)]
    state, row = _out(InpaintStage(BackendSpec(name="cpu"))(_batch(clip.frames, clip.alpha[None], objects)))
    bg = row["backgrounds"][0].astype(float)
    hole = clip.alpha > 127
    err = np.abs(bg[hole] - clip.bg[hole]).mean()
    assert err < 0.5 * np.abs(clip.frames[hole].astype(float) - clip.bg[hole]).mean()
    state, row = _out(CaptionStage(BackendSpec(name="cpu"))(batch_from_rows([row])))
    captions = state.objects[0].captions
    assert set(captions) == {"fg", "bg", "blend"} and len(set(captions.values())) == 3
    assert "ball" in captions["fg"] and "ball" in captions["blend"]
