"""Qwen2.5-VL inputs built by hand (no torchvision) must equal the official ``Qwen2_5_VLProcessor``'s,
including ``mm_token_type_ids``, from which the model builds its 3-D M-RoPE positions; batched
answers must equal one-by-one answers (left padding)."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_builder.config import BackendSpec
from dataset_builder.models.hf.qwen_vl import QwenVL, chatml_prompt

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def vlm(hf_qwen_dir):
    return QwenVL(BackendSpec(name="qwen2_5_vl", model_dir=str(hf_qwen_dir), options={"num_frames": 2,
                                                                                      "max_new_tokens": 4}))


def official_processor(vlm, monkeypatch):
    """The official processor over the same tokenizer and image processor. Its constructor insists on a
    video processor (torchvision-only in transformers 5.x); images never touch it, so None is let through."""
    from transformers import Qwen2_5_VLProcessor
    from transformers.processing_utils import ProcessorMixin

    check = ProcessorMixin.check_argument_for_proper_class
    monkeypatch.setattr(ProcessorMixin, "check_argument_for_proper_class",
                        lambda self, name, arg: None if name == "video_processor" and arg is None
                        else check(self, name, arg))
    return Qwen2_5_VLProcessor(image_processor=vlm.image_processor, tokenizer=vlm.tokenizer, video_processor=None)


def _requests(hf_clip):
    return [(hf_clip, "describe the video"), (hf_clip[::-1].copy(), "is the object real or a photo of a bike")]


def test_inputs_match_official_processor(vlm, hf_clip, monkeypatch):
    import torch

    processor = official_processor(vlm, monkeypatch)
    requests = _requests(hf_clip)
    ours = vlm.batch_inputs(requests)
    images = [im for frames, _ in requests for im in vlm.pick_frames(frames)]
    texts = [chatml_prompt(q, len(vlm.pick_frames(f))) for f, q in requests]
    ref = processor(text=texts, images=images, return_tensors="pt", padding=True, padding_side="left")

    assert set(ref) == set(ours)
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw"):
        assert torch.equal(ours[key].long(), ref[key].long()), key
    assert torch.equal(ours["pixel_values"], ref["pixel_values"])
    assert (ours["mm_token_type_ids"] == 1).sum() == (ours["input_ids"] == vlm.image_token_id).sum() > 0

    model = vlm.model.model
    kw = {k: ours[k] for k in ("input_ids", "image_grid_thw", "attention_mask", "mm_token_type_ids")}
    pos, _ = model.get_rope_index(**kw)
    ref_pos, _ = model.get_rope_index(**{k: ref[k] for k in kw})
    assert torch.equal(pos, ref_pos)
    vision = ours["mm_token_type_ids"][0] == 1
    assert not torch.equal(pos[1, 0, vision], pos[2, 0, vision])  # real 3-D (h, w) positions on image tokens


def test_missing_token_types_changes_the_output(vlm, hf_clip):
    """Guard for the silent fallback: without mm_token_type_ids the model sees 1-D positions."""
    import torch

    inputs = vlm.inputs(hf_clip, "describe the video")
    with torch.inference_mode():
        with_types = vlm.model(**inputs).logits
        without = vlm.model(**{k: v for k, v in inputs.items() if k != "mm_token_type_ids"}).logits
    assert not torch.allclose(with_types, without, atol=1e-5)


def test_batched_answers_equal_single_answers(vlm, hf_clip):
    requests = _requests(hf_clip)
    calls = dict(vlm.stats.calls)
    batched = vlm.answer_many(requests)
    assert vlm.stats.calls["generate"] == calls.get("generate", 0) + 1
    assert batched == [vlm.answer(f, q) for f, q in requests]
    probs = vlm.yes_probabilities(requests)
    singles = [vlm.yes_probability(f, q) for f, q in requests]
    assert np.allclose(probs, singles, atol=1e-4)
