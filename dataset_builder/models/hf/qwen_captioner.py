"""Per-layer captions with Qwen2.5-VL (backend ``qwen2_5_vl`` of ``caption``); questions in ``captioning``."""

from __future__ import annotations

import numpy as np

from dataset_builder.config import BackendSpec, Resources
from dataset_builder.models.base import LayerCaptions
from dataset_builder.models.hf.captioning import layer_prompts
from dataset_builder.models.hf.overlay import composite
from dataset_builder.models.hf.qwen_vl import QwenVL


class QwenCaptioner:
    """Options: ``prompts`` (override any of fg/bg/blend), ``fg_fill`` (grey level behind the object,
    default 0 as in the shards), plus QwenVL's ``num_frames``/``max_side``/``max_new_tokens``."""

    default_resources = Resources(num_cpus=2, num_gpus=0.5, batch_size=4, concurrency=8)

    def __init__(self, spec: BackendSpec) -> None:
        self.vlm = QwenVL(spec)
        self.overrides = dict(spec.options.get("prompts", {}))
        self.fg_fill = int(spec.options.get("fg_fill", 0))

    def caption(self, frames: np.ndarray, alpha: np.ndarray, background: np.ndarray, label: str,
                tags: list[str]) -> LayerCaptions:
        prompts = layer_prompts(label, tags, self.overrides)
        return LayerCaptions(
            fg=self.vlm.answer(composite(frames, alpha, self.fg_fill), prompts["fg"]),
            bg=self.vlm.answer(background, prompts["bg"]),
            blend=self.vlm.answer(frames, prompts["blend"]),
        )
