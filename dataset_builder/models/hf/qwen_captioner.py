"""Per-layer captions with Qwen2.5-VL (backend ``qwen2_5_vl`` of ``caption``); questions in ``captioning``."""

from __future__ import annotations

import numpy as np

from dataset_builder.config import BackendSpec, Resources
from dataset_builder.models.base import LayerCaptions, split_by_counts
from dataset_builder.models.hf.captioning import layer_prompts
from dataset_builder.models.hf.overlay import composite
from dataset_builder.models.hf.qwen_vl import QwenVL


class QwenCaptioner:
    """Options: ``prompts`` (override any of fg/bg/blend), ``fg_fill`` (grey level behind the object,
    default 0 as in the shards), plus QwenVL's ``num_frames``/``max_side``/``max_new_tokens``/``max_batch``."""

    default_resources = Resources(num_cpus=2, num_gpus=0.5, batch_size=4, concurrency=8)

    def __init__(self, spec: BackendSpec) -> None:
        self.vlm = QwenVL(spec)
        self.overrides = dict(spec.options.get("prompts", {}))
        self.fg_fill = int(spec.options.get("fg_fill", 0))

    def caption_clips(self, clips: list[tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]]
                      ) -> list[list[LayerCaptions]]:
        """The 3 layer captions of every object of every clip ``(frames, alphas, backgrounds, labels, tags)``
        as one padded batched greedy generation (chunked by ``max_batch``): 3K questions of all the clips
        of a Ray batch together, not 3K sequential batch-1 ``generate`` calls per clip."""
        requests = []
        for frames, alphas, backgrounds, labels, tags in clips:
            for alpha, background, label in zip(alphas, backgrounds, labels):
                prompts = layer_prompts(label, tags, self.overrides)
                requests += [(composite(frames, alpha, self.fg_fill), prompts["fg"]), (background, prompts["bg"]),
                             (frames, prompts["blend"])]
        answers = self.vlm.answer_many(requests)
        captions = [LayerCaptions(*answers[i:i + 3]) for i in range(0, len(answers), 3)]
        return split_by_counts(captions, [len(clip[3]) for clip in clips])

    def caption_objects(self, frames: np.ndarray, alphas: np.ndarray, backgrounds: np.ndarray,
                        labels: list[str], tags: list[str]) -> list[LayerCaptions]:
        """All objects of one clip."""
        return self.caption_clips([(frames, alphas, backgrounds, labels, tags)])[0]

    def caption(self, frames: np.ndarray, alpha: np.ndarray, background: np.ndarray, label: str,
                tags: list[str]) -> LayerCaptions:
        return self.caption_objects(frames, alpha[None], background[None], [label], tags)[0]
