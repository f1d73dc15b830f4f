"""RAM-style open-vocabulary tagging with SigLIP zero-shot scores (backend ``siglip``).

The recognize-anything (RAM/RAM++) code is not a transformers model, so we reproduce what the
pipeline needs from it - a multi-label tag set over a fixed open vocabulary, split into subject and
scene tags - with SigLIP: its sigmoid (not softmax) image-text head scores every label independently,
which is exactly multi-label tagging. Text embeddings of the vocabulary are computed once per actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_builder.config import BackendSpec, Resources
from dataset_builder.models.base import Tag
from dataset_builder.models.hf import loading

VOCAB_PATH = Path(__file__).with_name("ram_vocab.txt")


@dataclass(frozen=True)
class VocabEntry:
    label: str
    is_subject: bool


def load_vocab(path: str | Path = VOCAB_PATH) -> list[VocabEntry]:
    """Parse ``<label>\\t<subject|scene>`` lines (``#`` comments); underscores become spaces."""
    entries: list[VocabEntry] = []
    for lineno, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        label, _, kind = line.partition("\t")
        if kind not in ("subject", "scene"):
            raise ValueError(f"{path}:{lineno}: expected '<label>\\t<subject|scene>', got {raw!r}")
        entries.append(VocabEntry(label.replace("_", " "), kind == "subject"))
    return entries


def select_tags(
    probs: np.ndarray, vocab: list[VocabEntry], threshold: float, max_tags: int
) -> list[Tag]:
    """Labels whose probability clears ``threshold``, best first, at most ``max_tags``."""
    order = np.argsort(-probs, kind="stable")
    return [
        Tag(vocab[i].label, float(probs[i]), vocab[i].is_subject)
        for i in order[:max_tags]
        if probs[i] >= threshold
    ]


class SiglipTagger:
    """Tags a clip from the mean SigLIP image embedding of a few evenly spaced frames.

    Options: ``threshold`` (sigmoid probability, default 0.1), ``max_tags`` (20), ``num_frames`` (4),
    ``prompt`` (``"a photo of a {}."``, SigLIP's training template), ``vocab_path``.
    """

    default_subdir = "siglip-so400m-patch14-384"
    default_resources = Resources(num_cpus=1, num_gpus=0.125, batch_size=8, concurrency=8)

    def __init__(self, spec: BackendSpec) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        opts = spec.options
        self.threshold = float(opts.get("threshold", 0.1))
        self.max_tags = int(opts.get("max_tags", 20))
        self.num_frames = int(opts.get("num_frames", 4))
        self.vocab = load_vocab(opts.get("vocab_path", VOCAB_PATH))
        template = str(opts.get("prompt", "a photo of a {}."))

        path = loading.resolve_model_dir(spec, self.default_subdir)
        self.model, self.device, self.dtype = loading.load_model(AutoModel, path, spec)
        self.image_processor = loading.load_pretrained(AutoImageProcessor, path, spec)
        tokenizer = loading.load_pretrained(AutoTokenizer, path, spec)
        prompts = [template.format(entry.label) for entry in self.vocab]
        # SigLIP was trained on max_length padding; other padding shifts its text embeddings.
        max_len = self.model.config.text_config.max_position_embeddings
        text = tokenizer(prompts, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
        with torch.inference_mode():
            feats = self.model.get_text_features(input_ids=text["input_ids"].to(self.device))
            feats = _as_tensor(feats)
        self.text_embeds = torch.nn.functional.normalize(feats.float(), dim=-1)
        self.logit_scale = float(self.model.logit_scale.detach().exp())
        self.logit_bias = float(self.model.logit_bias.detach())

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """Sigmoid probability of every vocabulary label for the clip, shape ``(len(vocab),)``."""
        import torch

        picked = frames[loading.sample_indices(len(frames), self.num_frames)]
        pixels = self.image_processor(images=list(picked), return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            feats = _as_tensor(self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)))
        image = torch.nn.functional.normalize(feats.float(), dim=-1).mean(0)
        image = torch.nn.functional.normalize(image, dim=-1)
        logits = self.text_embeds @ image * self.logit_scale + self.logit_bias
        return torch.sigmoid(logits).cpu().numpy()

    def tag(self, frames: np.ndarray) -> list[Tag]:
        return select_tags(self.probabilities(frames), self.vocab, self.threshold, self.max_tags)


def _as_tensor(out):
    """``get_*_features`` return a tensor in transformers 4.x and an output object in some 5.x models."""
    return out if hasattr(out, "float") else out.pooler_output
