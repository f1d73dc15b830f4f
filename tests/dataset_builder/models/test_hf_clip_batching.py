"""Batching across the clips of a Ray batch with the paper backends (tiny random models, CPU, offline):
a batch of clips gives the same decisions and greedy captions as each clip alone, with fewer model calls
per clip; a poisoned clip becomes one reject while its batch-mates succeed."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_builder.stages.base import ClipState, ObjectState, batch_from_rows
from dataset_builder.stages.caption import CaptionStage
from dataset_builder.stages.filter_foreground import FilterForegroundStage
from dataset_builder.stages.segment_track import SegmentTrackStage
from dataset_builder.stages.tag import TagStage

pytest.importorskip("transformers")

LABELS = [["bike", "person"], ["car"], ["dog", "tree", "person"]]


def _clips(hf_clip: np.ndarray) -> list[np.ndarray]:
    return [hf_clip, hf_clip[:, ::-1].copy(), hf_clip[::-1].copy()]


def _rows(hf_clip: np.ndarray, labels=LABELS) -> list[dict]:
    rows = []
    for i, (frames, clip_labels) in enumerate(zip(_clips(hf_clip), labels)):
        t, h, w = frames.shape[:3]
        masks = np.zeros((len(clip_labels), t, h, w), np.uint8)
        for k in range(len(clip_labels)):
            masks[k, :, 8 + 4 * k:40 + 4 * k, 10 + 20 * k:40 + 20 * k] = 255
        state = ClipState(clip_id=f"c{i}", source_uri=f"v{i}.mp4",
                          tags=[{"label": "road", "score": 0.5, "is_subject": False}],
                          objects=[ObjectState(object_id=k, label=label, score=1.0)
                                   for k, label in enumerate(clip_labels)])
        rows.append({"meta": state.model_dump_json(), "frames": frames, "masks": masks,
                     "backgrounds": np.repeat(frames[None], len(clip_labels), 0)})
    return rows


def _states(batch) -> list[ClipState]:
    return [ClipState.model_validate_json(m) for m in batch["meta"]]


def _alone(stage, rows) -> list[ClipState]:
    return [_states(stage(batch_from_rows([row])))[0] for row in rows]


def _summary(state: ClipState) -> dict:
    return {"rejected": state.rejected, "reasons": [(r.stage, r.reason, r.object_id) for r in state.rejects],
            "objects": [(o.label, o.captions) for o in state.objects],
            "fg_judge": [round(o.scores.get("fg_judge", -1), 4) for o in state.objects],
            "tags": [(t["label"], round(t["score"], 5)) for t in state.tags]}


def _calls(stats, what: str) -> int:
    return stats.calls.get(what, 0)


def qwen_spec(hf_qwen_dir, **options) -> dict:
    return {"name": "qwen2_5_vl", "model_dir": str(hf_qwen_dir),
            "options": {"num_frames": 2, "max_new_tokens": 4, "max_batch": 32, **options}}


def test_judge_and_captioner_batch_equals_per_clip_with_fewer_calls(hf_qwen_dir, hf_clip):
    rows = _rows(hf_clip)
    judge = FilterForegroundStage(qwen_spec(hf_qwen_dir, threshold=0.0))  # keep all: captions for every object
    stats = judge.backend.vlm.stats
    alone = _alone(judge, rows)
    assert _calls(stats, "score") == 3  # one forward per clip
    batched = _states(judge(batch_from_rows(rows)))
    assert _calls(stats, "score") == 3 + 1  # the whole Ray batch: one forward over its 6 objects
    assert [_summary(s) for s in batched] == [_summary(s) for s in alone]
    strict = FilterForegroundStage(qwen_spec(hf_qwen_dir, threshold=0.5))
    assert [_summary(s) for s in _states(strict(batch_from_rows(rows)))] == \
        [_summary(s) for s in _alone(strict, rows)]  # same keep/reject decisions at a real threshold

    captioner = CaptionStage(qwen_spec(hf_qwen_dir))
    stats = captioner.backend.vlm.stats
    alone = _alone(captioner, rows)
    assert (_calls(stats, "generate"), stats.items["generate"]) == (3, 18)  # 3 questions x 6 objects
    batched = _states(captioner(batch_from_rows(rows)))
    assert (_calls(stats, "generate"), stats.items["generate"]) == (3 + 1, 18 + 18)
    assert [_summary(s) for s in batched] == [_summary(s) for s in alone]  # greedy: identical captions
    assert all(o.captions.keys() == {"fg", "bg", "blend"} for s in batched for o in s.objects)

    chunked = CaptionStage(qwen_spec(hf_qwen_dir, max_batch=4))
    _states(chunked(batch_from_rows(rows)))
    assert chunked.backend.vlm.stats.calls["generate"] == 5  # ceil(18 / 4): max_batch bounds every call


def test_a_poisoned_clip_becomes_one_reject_and_its_batch_mates_succeed(hf_qwen_dir, hf_clip):
    rows = _rows(hf_clip)
    judge = FilterForegroundStage(qwen_spec(hf_qwen_dir))
    good = _alone(judge, [rows[0], rows[2]])
    rows[1]["masks"] = rows[1]["masks"][:, :, :32]  # masks that do not match the frames: the model call raises
    states = _states(judge(batch_from_rows(rows)))
    assert judge.batch_fallbacks == 1
    assert states[1].rejected and [(r.stage, r.reason) for r in states[1].rejects] == [("filter_foreground", "error")]
    assert "frames" in states[1].rejects[0].detail and "masks" in states[1].rejects[0].detail
    assert [_summary(s) for s in (states[0], states[2])] == [_summary(s) for s in good]


def test_siglip_tags_a_batch_in_one_image_forward(hf_siglip_dir, hf_clip):
    spec = {"name": "siglip", "model_dir": str(hf_siglip_dir), "options": {"threshold": 0.0, "max_tags": 5}}
    stage = TagStage(spec)
    rows = _rows(hf_clip)
    alone = _alone(stage, rows)
    batched = _states(stage(batch_from_rows(rows)))
    assert [_summary(s) for s in batched] == [_summary(s) for s in alone]
    assert all(len(s.tags) == 5 for s in batched)  # threshold 0: top-k of every clip
    assert stage.backend.stats.calls == {"siglip_image": 3 + 1} and stage.backend.stats.items["siglip_image"] == 6
    small = TagStage({**spec, "options": {**spec["options"], "max_batch": 2}})
    small(batch_from_rows(rows))
    assert small.backend.stats.calls == {"siglip_image": 2}  # chunked by max_batch clips


def test_owlv2_detects_the_keyframes_of_all_clips_in_one_forward(hf_owlv2_sam2_dir, hf_clip):
    from dataset_builder.models.registry import BackendKind, build_backend
    from dataset_builder.config import BackendSpec

    seg = build_backend(BackendKind.SEGMENTER, BackendSpec(
        name="owlv2_sam2", model_dir=str(hf_owlv2_sam2_dir),
        options={"box_threshold": 0.0, "redetect_every": 4, "max_batch": 16}))
    clips = list(zip(_clips(hf_clip), [["bike"], ["bike", "person"], ["road", "tree", "car"]]))
    alone = [seg.detect(frames, prompts) for frames, prompts in clips]
    assert seg.stats.calls["owlv2"] == 3
    batched = seg.detect_clips(clips)  # different prompt lists share one forward
    assert seg.stats.calls["owlv2"] == 4 and seg.stats.items["owlv2"] == 6 + 6
    for one, many in zip(alone, batched):
        assert [(d.frame, d.label) for d in one] == [(d.frame, d.label) for d in many] and one
        np.testing.assert_allclose([d.box for d in one], [d.box for d in many], atol=1e-3)
        np.testing.assert_allclose([d.score for d in one], [d.score for d in many], atol=1e-5)


@pytest.mark.slow
def test_segment_track_batch_equals_per_clip_one_sam2_session_per_clip(hf_owlv2_sam2_dir, hf_clip):
    stage = SegmentTrackStage({"name": "owlv2_sam2", "model_dir": str(hf_owlv2_sam2_dir),
                               "options": {"box_threshold": 0.0, "redetect_every": 4, "max_objects": 2,
                                           "min_area_frac": 0.0}}, max_objects=2)
    rows = _rows(hf_clip)[:2]
    for row, prompts in zip(rows, (["bike", "person"], ["car"])):
        state = ClipState.model_validate_json(row["meta"])
        state.tags, state.objects = [{"label": p, "score": 0.5, "is_subject": True} for p in prompts], []
        row["meta"], row["masks"] = state.model_dump_json(), np.zeros((0, 8, 64, 96), np.uint8)
    alone_out = [stage(batch_from_rows([row])) for row in rows]
    stats = stage.backend.stats
    assert (stats.calls["owlv2"], stats.calls["sam2_session"]) == (2, 2)
    batched_out = stage(batch_from_rows(rows))
    assert (stats.calls["owlv2"], stats.calls["sam2_session"]) == (3, 4)  # one detector call; a session per clip
    assert [_summary(s) for s in _states(batched_out)] == [_summary(_states(b)[0]) for b in alone_out]
    for i, alone in enumerate(alone_out):
        np.testing.assert_array_equal(batched_out["masks"][i], alone["masks"][0])
    # Random SAM2 weights give near-empty masks, which the stage rejects (empty_alpha_frame): compare the
    # backend's tracked objects themselves too.
    clips = [(row["frames"], prompts) for row, prompts in zip(rows, (["bike", "person"], ["car"]))]
    alone = [stage.backend.segment(frames, prompts) for frames, prompts in clips]
    batched = stage.backend.segment_clips(clips)
    assert sum(map(len, batched)) >= 2
    for one, many in zip(alone, batched):
        assert [(o.label, o.score, o.extras) for o in one] == [(o.label, o.score, o.extras) for o in many]
        for a, b in zip(one, many):
            np.testing.assert_array_equal(a.masks, b.masks)
