"""Qwen2.5-VL runtime shared by the foreground judge and the captioner.

Frames go in as a few images of one user turn. We build the ChatML prompt and expand the image
placeholders ourselves instead of using ``Qwen2_5_VLProcessor``: in transformers 5.x that processor
always instantiates the video processor, which needs torchvision; the image processor alone has a
PIL backend, so this path runs with or without torchvision and gives the model identical inputs -
including ``mm_token_type_ids`` (0 text, 1 image): from transformers 5.3 the model builds its 3-D M-RoPE
positions from them and silently falls back to 1-D text positions without them. A test compares every
input, and the position ids, with the official processor's.

Requests are batched: one ``generate`` (or forward) call answers many (frames, question) pairs, left-padded
(decoder-only generation continues from the last real token of every row).
"""

from __future__ import annotations

import numpy as np

from dataset_builder.config import BackendSpec
from dataset_builder.models.hf import loading
from dataset_builder.models.hf.batching import BatchRunner, CallStats

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


#: ``mm_token_type_ids`` values, as ``ProcessorMixin.create_mm_token_type_ids`` assigns them.
TEXT_TYPE, IMAGE_TYPE, VIDEO_TYPE = 0, 1, 2

#: One question about a clip: (frames ``(T, H, W, 3)`` uint8, question text).
Request = tuple[np.ndarray, str]


def mm_token_type_ids(input_ids, image_token_id: int, video_token_id: int | None = None):
    """0 for text, 1 for image, 2 for video placeholder tokens (same tensor type and shape as ``input_ids``)."""
    types = (input_ids == image_token_id).long() * IMAGE_TYPE
    if video_token_id is not None:
        types = types + (input_ids == video_token_id).long() * VIDEO_TYPE
    return types


class QwenVL:
    """Loads Qwen2.5-VL once and answers batches of questions about a few frames each.

    Options: ``num_frames`` (4), ``max_side`` (448), ``max_new_tokens`` (96), ``max_batch`` (8 requests
    per model call; halved automatically on out-of-memory).
    """

    def __init__(self, spec: BackendSpec) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        path = loading.resolve_model_dir(spec, DEFAULT_SUBDIR)
        self.model, self.device, self.dtype = loading.load_model(AutoModelForImageTextToText, path, spec)
        self.tokenizer = loading.load_pretrained(AutoTokenizer, path, spec)
        self.tokenizer.padding_side = "left"
        self.image_processor = loading.load_pretrained(AutoImageProcessor, path, spec)
        self.num_frames = int(spec.options.get("num_frames", 4))
        self.max_side = int(spec.options.get("max_side", 448))
        self.max_new_tokens = int(spec.options.get("max_new_tokens", 96))
        self.stats = CallStats()
        self.runner = BatchRunner(int(spec.options.get("max_batch", 8)), self.stats)
        cfg = self.model.config
        self.image_token_id = int(cfg.image_token_id)
        self.video_token_id = getattr(cfg, "video_token_id", None)

    def pick_frames(self, frames: np.ndarray) -> np.ndarray:
        return loading.resize_frames(frames[loading.sample_indices(len(frames), self.num_frames)], self.max_side)

    def batch_inputs(self, requests: list[Request]) -> dict:
        """Model inputs for several requests: left-padded ids, images of all requests in one tensor."""
        picked = [self.pick_frames(frames) for frames, _ in requests]
        images = [image for frames in picked for image in frames]
        vision = self.image_processor(images=images, return_tensors="pt")
        grid = vision["image_grid_thw"].numpy()
        merge = self.image_processor.merge_size
        texts, first = [], 0
        for frames, (_, question) in zip(picked, requests):
            count = len(frames)
            texts.append(expand_image_tokens(chatml_prompt(question, count), grid[first:first + count], merge))
            first += count
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        ids = enc["input_ids"]
        return {
            "input_ids": ids.to(self.device),
            "attention_mask": enc["attention_mask"].to(self.device),
            "mm_token_type_ids": mm_token_type_ids(ids, self.image_token_id, self.video_token_id).to(self.device),
            "pixel_values": vision["pixel_values"].to(self.device, self.dtype),
            "image_grid_thw": vision["image_grid_thw"].to(self.device),
        }

    def inputs(self, frames: np.ndarray, question: str) -> dict:
        """Model inputs for ``question`` about ``num_frames`` evenly spaced frames of ``frames``."""
        return self.batch_inputs([(frames, question)])

    def answer_many(self, requests: list[Request], max_new_tokens: int | None = None) -> list[str]:
        """Greedy answers (deterministic, so reruns of a clip give the same captions), batched."""
        return self.runner.run("generate", requests, lambda chunk: self._generate(chunk, max_new_tokens))

    def _generate(self, requests: list[Request], max_new_tokens: int | None) -> list[str]:
        import torch

        inputs = self.batch_inputs(requests)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens or self.max_new_tokens, do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, inputs["input_ids"].shape[1]:]
        return [text.strip() for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def answer(self, frames: np.ndarray, question: str, max_new_tokens: int | None = None) -> str:
        return self.answer_many([(frames, question)], max_new_tokens)[0]

    def yes_probabilities(self, requests: list[Request]) -> list[float]:
        """P("yes") vs P("no") of the first answer token per request: a calibrated score, unlike the parsed word."""
        return self.runner.run("score", requests, self._yes_probabilities)

    def _yes_probabilities(self, requests: list[Request]) -> list[float]:
        import torch

        yes = _word_ids(self.tokenizer, ("yes", "Yes", "YES"))
        no = _word_ids(self.tokenizer, ("no", "No", "NO"))
        if not yes or not no:
            raise ValueError("tokenizer has no single-token 'yes'/'no'; cannot score the answer")
        inputs = self.batch_inputs(requests)
        with torch.inference_mode():
            logits = self.model(**inputs).logits[:, -1].float()  # left padding: last column is real
        pair = torch.stack([torch.logsumexp(logits[:, yes], -1), torch.logsumexp(logits[:, no], -1)], -1)
        return [float(p) for p in torch.softmax(pair, -1)[:, 0]]

    def yes_probability(self, frames: np.ndarray, question: str) -> float:
        return self.yes_probabilities([(frames, question)])[0]


def _word_ids(tokenizer, words: tuple[str, ...]) -> list[int]:
    """Ids of the words that are a single token (Qwen's BPE has "yes"/"Yes"/... as whole tokens)."""
    ids = set()
    for word in words:
        encoded = tokenizer.encode(word, add_special_tokens=False)
        if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id:
            ids.add(encoded[0])
    return sorted(ids)
