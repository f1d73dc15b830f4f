"""Paper-profile backends loaded through their real loading code from tiny random models, run on a
short real clip (bikes.mp4) on CPU. Random weights give random answers, so these assert the plumbing:
types, shapes, value ranges, determinism and the loading rules."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import Captioner, FgJudge, Inpainter, LayerCaptions, SegmenterTracker, Tagger
from dataset_builder.models.registry import BackendKind, build_backend

pytest.importorskip("transformers")


def _object_mask(clip: np.ndarray) -> np.ndarray:
    masks = np.zeros(clip.shape[:3], np.uint8)
    masks[:, 16:48, 30:70] = 255
    return masks


def test_siglip_tagger(hf_siglip_dir, hf_clip):
    spec = BackendSpec(name="siglip", model_dir=str(hf_siglip_dir), options={"threshold": 0.0, "max_tags": 7})
    tagger = build_backend(BackendKind.TAGGER, spec)
    assert isinstance(tagger, Tagger)
    probs = tagger.probabilities(hf_clip)
    assert probs.shape == (len(tagger.vocab),) and ((probs > 0) & (probs < 1)).all()
    tags = tagger.tag(hf_clip)
    assert len(tags) == 7 and [t.score for t in tags] == sorted((t.score for t in tags), reverse=True)
    assert tags[0].score == pytest.approx(float(probs.max()), rel=1e-5)
    assert [t.label for t in tagger.tag(hf_clip)] == [t.label for t in tags]  # deterministic


def test_qwen_judge_and_captioner(hf_qwen_dir, hf_clip):
    spec = BackendSpec(name="qwen2_5_vl", model_dir=str(hf_qwen_dir), options={"num_frames": 2, "max_new_tokens": 4})
    judge = build_backend(BackendKind.FG_JUDGE, spec)
    assert isinstance(judge, FgJudge)
    masks = _object_mask(hf_clip)
    verdict = judge.judge(hf_clip, masks, "bike")
    assert 0.0 <= verdict.score <= 1.0 and verdict.is_foreground == (verdict.score >= 0.5)
    assert judge.judge(hf_clip, masks, "bike").score == pytest.approx(verdict.score, abs=1e-6)

    inputs = judge.vlm.inputs(hf_clip, "is the object real")
    n_pad = int((inputs["input_ids"] == judge.vlm.model.config.image_token_id).sum())
    assert n_pad == int(inputs["image_grid_thw"].prod(-1).sum()) // 4  # merge_size 2 -> 4 patches per token
    assert inputs["pixel_values"].shape[0] == int(inputs["image_grid_thw"].prod(-1).sum())

    captioner = build_backend(BackendKind.CAPTIONER, spec)
    assert isinstance(captioner, Captioner)
    caps = captioner.caption(hf_clip, masks, hf_clip, "bike", ["road"])
    assert isinstance(caps, LayerCaptions) and all(isinstance(c, str) for c in (caps.fg, caps.bg, caps.blend))


@pytest.mark.slow
def test_owlv2_sam2_segments_and_tracks(hf_owlv2_sam2_dir, hf_clip):
    import cv2

    spec = BackendSpec(name="owlv2_sam2", model_dir=str(hf_owlv2_sam2_dir),
                       options={"box_threshold": 0.0, "redetect_every": 4, "max_objects": 2, "min_area_frac": 0.0})
    seg = build_backend(BackendKind.SEGMENTER, spec)
    assert isinstance(seg, SegmenterTracker)
    dets = seg.detect(hf_clip, ["bike", "person"])
    assert {d.frame for d in dets} <= {0, 4} and all(d.label in ("bike", "person") for d in dets)
    for d in dets:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 <= x1 <= 96 and 0 <= y0 <= y1 <= 64 and 0 <= d.score <= 1
    objs = seg.segment(hf_clip, ["bike", "person"])
    assert 1 <= len(objs) <= 2
    ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (13, 13))  # soft band: 2 low-res px = 6 px here
    for obj in objs:
        assert obj.masks.shape == hf_clip.shape[:3] and obj.masks.dtype == np.uint8
        assert obj.label in ("bike", "person") and 0 <= obj.extras["visible_frac"] <= 1
        near = np.stack([cv2.dilate((m >= 128).astype(np.uint8), ring) for m in obj.masks]) > 0
        assert not (obj.masks[~near] > 0).any()  # no faint alpha away from the object
    assert seg.segment(hf_clip, []) == []
    seg.stats.calls.clear()
    seg.stats.items.clear()
    seg.segment(hf_clip, ["bike", "person"])
    assert seg.stats.calls["sam2_session"] == 1  # one tracking session per clip, not per keyframe
    assert seg.stats.calls["owlv2"] == 1 and seg.stats.items["owlv2"] == 2  # both keyframes in one forward


@pytest.mark.slow
def test_propainter_inpaints_only_the_hole(hf_propainter_dir, hf_clip):
    spec = BackendSpec(name="propainter", model_dir=str(hf_propainter_dir))
    inp = build_backend(BackendKind.INPAINTER, spec)
    assert isinstance(inp, Inpainter)
    masks = _object_mask(hf_clip)
    out = inp.inpaint(hf_clip, masks)
    assert out.shape == hf_clip.shape and out.dtype == np.uint8
    hole = masks > 0
    grown = np.zeros_like(hole)
    grown[:, 12:52, 26:74] = True  # 4 px dilation
    assert np.array_equal(out[~grown], hf_clip[~grown])  # outside the (dilated) hole: untouched
    assert not np.array_equal(out[hole], hf_clip[hole])  # inside: repainted
    assert np.array_equal(inp.inpaint(hf_clip, np.zeros_like(masks)), hf_clip)


def test_cogvlm2_remote_code(hf_cogvlm2_dir, hf_clip):
    from dataset_builder.models.hf.cogvlm2 import RemoteCodeNotAllowedError

    spec = BackendSpec(name="cogvlm2", model_dir=str(hf_cogvlm2_dir), options={"max_new_tokens": 3, "num_frames": 4})
    with pytest.raises(RemoteCodeNotAllowedError, match="trust_remote_code: true"):
        build_backend(BackendKind.CAPTIONER, spec)
    cap = build_backend(BackendKind.CAPTIONER, spec.model_copy(update={"trust_remote_code": True}))
    assert type(cap.model).__name__ == "TinyCogForCausalLM"  # the directory's own modeling code ran
    caps = cap.caption(hf_clip, _object_mask(hf_clip), hf_clip, "bike", ["road"])
    assert all(isinstance(c, str) for c in (caps.fg, caps.bg, caps.blend))
    assert cap.caption(hf_clip, _object_mask(hf_clip), hf_clip, "bike", ["road"]) == caps  # greedy


LEGACY_GENERATION_HOOK = """

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False,
                                            standardize_cache_format=False):
        model_kwargs["past_key_values"] = self._extract_past_from_model_output(
            outputs, standardize_cache_format=standardize_cache_format)
        return model_kwargs
"""


def test_cogvlm2_legacy_generation_code_fails_at_load(hf_cogvlm2_dir, tmp_path):
    """The published CogVLM2 code overrides generation with an API newer transformers removed: that
    must be a clear error when the actor starts, not a crash on every clip."""
    import shutil

    import transformers

    if hasattr(transformers.GenerationMixin, "_extract_past_from_model_output"):
        pytest.skip("installed transformers still has the legacy generation API")
    legacy = tmp_path / "cogvlm2_legacy"
    shutil.copytree(hf_cogvlm2_dir, legacy)
    with open(legacy / "modeling_tinycog.py", "a") as fh:
        fh.write(LEGACY_GENERATION_HOOK)
    spec = BackendSpec(name="cogvlm2", model_dir=str(legacy), trust_remote_code=True)
    with pytest.raises(RuntimeError, match=r"cogvlm2_legacy.*_extract_past_from_model_output.*qwen2_5_vl"):
        build_backend(BackendKind.CAPTIONER, spec)
