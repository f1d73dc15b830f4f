"""Qwen2.5-VL runtime shared by the foreground judge and the captioner.

Frames go in as a few images of one user turn. We build the ChatML prompt and expand the image
placeholders ourselves instead of using ``Qwen2_5_VLProcessor``: in transformers 5.x that processor
always instantiates the video processor, which needs torchvision; the image processor alone has a
PIL backend, so this path runs with or without torchvision and gives the model identical inputs.
"""

from __future__ import annotations

import numpy as np

from dataset_builder.config import BackendSpec
from dataset_builder.models.hf import loading

DEFAULT_SUBDIR = "Qwen2.5-VL-7B-Instruct"
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


def chatml_prompt(question: str, num_images: int, system: str = "You are a helpful assistant.") -> str:
    """The exact text Qwen2.5-VL's chat template renders for one user turn with images first."""
    images = IMAGE_PLACEHOLDER * num_images
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{images}{question}<|im_end|>\n<|im_start|>assistant\n"
    )


def expand_image_tokens(prompt: str, grid_thw: np.ndarray, merge_size: int) -> str:
    """Repeat each ``<|image_pad|>`` once per merged vision token of its image (what the processor does)."""
    counts = [int(np.prod(g)) // (merge_size**2) for g in np.asarray(grid_thw)]
    parts = prompt.split("<|image_pad|>")
    if len(parts) - 1 != len(counts):
        raise ValueError(f"prompt has {len(parts) - 1} image placeholders for {len(counts)} images")
    out = parts[0]
    for count, tail in zip(counts, parts[1:]):
        out += "<|image_pad|>" * count + tail
    return out


class QwenVL:
    """Loads Qwen2.5-VL once and answers questions about a few frames."""

    def __init__(self, spec: BackendSpec) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        path = loading.resolve_model_dir(spec, DEFAULT_SUBDIR)
        self.model, self.device, self.dtype = loading.load_model(AutoModelForImageTextToText, path, spec)
        self.tokenizer = loading.load_pretrained(AutoTokenizer, path, spec)
        self.image_processor = loading.load_pretrained(AutoImageProcessor, path, spec)
        self.num_frames = int(spec.options.get("num_frames", 4))
        self.max_side = int(spec.options.get("max_side", 448))
        self.max_new_tokens = int(spec.options.get("max_new_tokens", 96))

    def inputs(self, frames: np.ndarray, question: str) -> dict:
        """Model inputs for ``question`` about ``num_frames`` evenly spaced frames of ``frames``."""
        picked = loading.resize_frames(frames[loading.sample_indices(len(frames), self.num_frames)], self.max_side)
        vision = self.image_processor(images=list(picked), return_tensors="pt")
        merge = self.image_processor.merge_size
        text = expand_image_tokens(chatml_prompt(question, len(picked)), vision["image_grid_thw"].numpy(), merge)
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        return {
            "input_ids": enc["input_ids"].to(self.device),
            "attention_mask": enc["attention_mask"].to(self.device),
            "pixel_values": vision["pixel_values"].to(self.device, self.dtype),
            "image_grid_thw": vision["image_grid_thw"].to(self.device),
        }

    def answer(self, frames: np.ndarray, question: str, max_new_tokens: int | None = None) -> str:
        """Greedy answer (deterministic, so reruns of a clip give the same captions)."""
        import torch

        inputs = self.inputs(frames, question)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens or self.max_new_tokens, do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    def yes_probability(self, frames: np.ndarray, question: str) -> float:
        """P("yes") vs P("no") of the first answer token: a calibrated score, unlike the parsed word."""
        import torch

        inputs = self.inputs(frames, question)
        with torch.inference_mode():
            logits = self.model(**inputs).logits[0, -1].float()
        yes = [i for i in _word_ids(self.tokenizer, ("yes", "Yes", "YES"))]
        no = [i for i in _word_ids(self.tokenizer, ("no", "No", "NO"))]
        if not yes or not no:
            raise ValueError("tokenizer has no single-token 'yes'/'no'; cannot score the answer")
        pair = torch.stack([torch.logsumexp(logits[yes], 0), torch.logsumexp(logits[no], 0)])
        return float(torch.softmax(pair, 0)[0])


def _word_ids(tokenizer, words: tuple[str, ...]) -> list[int]:
    """Ids of the words that are a single token (Qwen's BPE has "yes"/"Yes"/... as whole tokens)."""
    ids = set()
    for word in words:
        encoded = tokenizer.encode(word, add_special_tokens=False)
        if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id:
            ids.add(encoded[0])
    return sorted(ids)
