"""The stage wrapper's contract: failures become rejects, rejected clips pass through untouched."""

import numpy as np
import pytest

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import TrackedObject
from dataset_builder.models.registry import BackendKind, available_backends, build_backend, register
from dataset_builder.stages.base import ClipState, ObjectState, batch_from_rows, keep_objects, rows_from_batch
from dataset_builder.stages.segment_track import SegmentTrackStage
from dataset_builder.stages.tag import TagStage


class ExplodingTagger:
    def __init__(self, spec):
        pass

    def tag(self, frames):
        raise RuntimeError("model fell over")


class FixedSegmenter:
    """Deterministic test backend: returns one square per prompt."""

    def __init__(self, spec):
        self.size = spec.options.get("size", 4)

    def segment(self, frames, prompts):
        out = []
        for i, prompt in enumerate(prompts):
            masks = np.zeros(frames.shape[:3], np.uint8)
            masks[:, i: i + self.size, i: i + self.size] = 255
            out.append(TrackedObject(prompt, masks, score=1.0 - 0.1 * i))
        return out


register("tag", "test_exploding", ExplodingTagger)
register("segment_track", "test_fixed", FixedSegmenter)


def _batch(n=2, t=3, h=16, w=16):
    rows = []
    for i in range(n):
        state = ClipState(clip_id=f"c{i}", source_uri=f"/v{i}.mp4", num_frames=t, height=h, width=w,
                          tags=[{"label": "dog", "score": 0.9, "is_subject": True},
                                {"label": "cat", "score": 0.8, "is_subject": True},
                                {"label": "sunny", "score": 0.5, "is_subject": False}])
        rows.append({"meta": state.model_dump_json(), "frames": np.full((t, h, w, 3), i, np.uint8),
                     "masks": np.zeros((0, t, h, w), np.uint8), "backgrounds": np.zeros((0, t, h, w, 3), np.uint8)})
    return batch_from_rows(rows)


def test_registry_errors_name_the_alternatives():
    with pytest.raises(KeyError, match="available"):
        build_backend(BackendKind.TAGGER, BackendSpec(name="nope"))
    assert "test_exploding" in available_backends("tag")


def test_backend_exception_becomes_reject_and_frees_arrays():
    out = TagStage(BackendSpec(name="test_exploding"))(_batch())
    for row in rows_from_batch(out):
        state = ClipState.model_validate_json(row["meta"])
        assert state.rejected and state.rejects[0].stage == "tag" and state.rejects[0].reason == "error"
        assert "model fell over" in state.rejects[0].detail
        assert row["frames"].size == 0


def test_rejected_clips_pass_through_later_stages_untouched():
    rejected = TagStage(BackendSpec(name="test_exploding"))(_batch())
    out = SegmentTrackStage(BackendSpec(name="test_fixed"))(rejected)
    for row in rows_from_batch(out):
        state = ClipState.model_validate_json(row["meta"])
        assert len(state.rejects) == 1 and state.objects == []


def test_segment_uses_subject_tags_as_prompts_and_caps_objects():
    out = SegmentTrackStage(BackendSpec(name="test_fixed"), max_objects=1)(_batch(n=1))
    row = rows_from_batch(out)[0]
    state = ClipState.model_validate_json(row["meta"])
    assert [o.label for o in state.objects] == ["dog"]  # scene tag "sunny" is not a prompt
    assert row["masks"].shape == (1, 3, 16, 16)
    assert [(r.object_id, r.reason) for r in state.rejects] == [(1, "over_max_objects")]


def test_keep_objects_keeps_masks_aligned_and_rejects_empty_clips():
    state = ClipState(clip_id="c", source_uri="/v.mp4",
                      objects=[ObjectState(object_id=i, label=str(i), score=1.0) for i in range(3)])
    row = {"masks": np.arange(3)[:, None, None, None] * np.ones((3, 1, 2, 2), np.uint8)}
    keep_objects(state, row, [2, 0], "x", "none")
    assert [o.object_id for o in state.objects] == [2, 0] and row["masks"][:, 0, 0, 0].tolist() == [2, 0]
    keep_objects(state, row, [], "filter_foreground", "no_foreground")
    assert state.rejected and state.rejects[-1].reason == "no_foreground"


def test_resources_come_from_config_else_from_the_backend_declaration():
    from dataset_builder.config import BuildConfig, Resources
    from dataset_builder.models.registry import effective_resources
    from dataset_builder.pipeline import stage_plan

    class GpuTagger(ExplodingTagger):
        default_resources = Resources(num_cpus=2, num_gpus=0.25, batch_size=8, concurrency=3)

    register("tag", "test_gpu", GpuTagger)
    declared = BackendSpec(name="test_gpu")
    assert effective_resources("tag", declared) == GpuTagger.default_resources
    explicit = BackendSpec(name="test_gpu", resources={"num_cpus": 1, "num_gpus": 1})
    assert effective_resources("tag", explicit).num_gpus == 1
    assert effective_resources("tag", BackendSpec(name="cpu")) == Resources()  # declares nothing
    cfg = BuildConfig.model_validate({"stages": {"tag": {"name": "test_gpu"}}})
    tag_resources = stage_plan(cfg)[0][2]
    assert tag_resources.num_gpus == 0.25 and tag_resources.concurrency == 3
