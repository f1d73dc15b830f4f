"""Foreground judge with Qwen2.5-VL (backend ``qwen2_5_vl`` of ``filter_foreground``).

LayerFlow keeps only tracked objects that are real, independently moving foreground; masks of
ground, sky, walls or mis-tracked blobs are rejected. The object is highlighted on the frames and the
model is asked a yes/no question; the score is P(yes) of the first answer token, thresholded.
"""

from __future__ import annotations

import numpy as np

from dataset_builder.config import BackendSpec, Resources
from dataset_builder.models.base import Judgement, is_placeholder, split_by_counts
from dataset_builder.models.hf.captioning import with_article
from dataset_builder.models.hf.overlay import highlight
from dataset_builder.models.hf.qwen_vl import QwenVL

QUESTION = (
    "These are frames of one video. Is the object highlighted in red {a_label} that is a real, complete "
    "foreground object, separate from the background (not ground, sky, water, a wall or a fragment)? "
    "Answer yes or no."
)
#: For class-agnostic labels: never ask "is it a moving object" (a placeholder, not a class).
NEUTRAL_QUESTION = (
    "These are frames of one video. Is the object highlighted in red a real, complete foreground object, "
    "separate from the background (not ground, sky, water, a wall or a fragment)? Answer yes or no."
)


def judge_question(template: str, label: str) -> str:
    if is_placeholder(label):
        return NEUTRAL_QUESTION
    return template.format(label=label, a_label=with_article(label))


class QwenFgJudge:
    """Options: ``threshold`` (P(yes), default 0.5), ``question`` (with ``{label}``/``{a_label}``), plus QwenVL's
    ``num_frames``/``max_side``/``max_batch``."""

    default_resources = Resources(num_cpus=2, num_gpus=0.5, batch_size=8, concurrency=8)

    def __init__(self, spec: BackendSpec) -> None:
        self.vlm = QwenVL(spec)
        self.threshold = float(spec.options.get("threshold", 0.5))
        self.question = str(spec.options.get("question", QUESTION))

    def judge_clips(self, clips: list[tuple[np.ndarray, np.ndarray, list[str]]]) -> list[list[Judgement]]:
        """Every object of every clip ``(frames, masks, labels)`` in one batched forward (chunked by
        ``max_batch``): a Ray batch of clips costs ceil(objects / max_batch) calls, not one per clip."""
        requests = [(highlight(frames, m), judge_question(self.question, label))
                    for frames, masks, labels in clips for m, label in zip(masks, labels)]
        verdicts = [Judgement(p >= self.threshold, p, f"qwen2.5-vl P(yes)={p:.3f}")
                    for p in self.vlm.yes_probabilities(requests)]
        return split_by_counts(verdicts, [len(labels) for _, _, labels in clips])

    def judge_objects(self, frames: np.ndarray, masks: np.ndarray, labels: list[str]) -> list[Judgement]:
        """All objects of one clip."""
        return self.judge_clips([(frames, masks, labels)])[0]

    def judge(self, frames: np.ndarray, masks: np.ndarray, label: str) -> Judgement:
        return self.judge_objects(frames, masks[None], [label])[0]
