"""The contracts every backend of a stage fulfils. Frames are always uint8 RGB ``(T, H, W, 3)``,
masks/alpha uint8 ``(T, H, W)`` in 0..255; backends never see Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


#: Labels that name no class (segmenter fallbacks such as "moving object" / "salient object", empty).
#: Never put into a caption, a judge question or the clip's tags: say "object" or let the model name it.
PLACEHOLDER_LABELS = frozenset({"", "object", "moving object", "salient object", "thing", "foreground"})


def is_placeholder(label: str | None) -> bool:
    return (label or "").strip().lower() in PLACEHOLDER_LABELS


@dataclass(frozen=True)
class Tag:
    label: str
    score: float
    #: Candidate subjects are prompts for segmentation; scene tags only describe the background.
    is_subject: bool = True


@dataclass
class TrackedObject:
    label: str
    #: uint8 (T, H, W), 0..255 (soft edges allowed).
    masks: np.ndarray
    score: float
    extras: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Judgement:
    is_foreground: bool
    score: float
    reason: str


@dataclass(frozen=True)
class LayerCaptions:
    fg: str
    bg: str
    blend: str


@runtime_checkable
class Tagger(Protocol):
    def tag(self, frames: np.ndarray) -> list[Tag]: ...


@runtime_checkable
class SegmenterTracker(Protocol):
    def segment(self, frames: np.ndarray, prompts: list[str]) -> list[TrackedObject]: ...


@runtime_checkable
class Deduper(Protocol):
    def dedup(self, objects: list[TrackedObject]) -> tuple[list[int], list[tuple[int, int, float]]]:
        """Returns (indices kept, [(index dropped, index kept instead, mask IoU)])."""
        ...


@runtime_checkable
class FgJudge(Protocol):
    def judge(self, frames: np.ndarray, masks: np.ndarray, label: str) -> Judgement: ...


@runtime_checkable
class Inpainter(Protocol):
    def inpaint(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Captioner(Protocol):
    def caption(
        self, frames: np.ndarray, alpha: np.ndarray, background: np.ndarray, label: str, tags: list[str]
    ) -> LayerCaptions: ...


def judge_objects(judge: FgJudge, frames: np.ndarray, masks: np.ndarray, labels: list[str]) -> list[Judgement]:
    """All objects of a clip: one batched call where the backend offers ``judge_objects``, else one by one."""
    batched = getattr(judge, "judge_objects", None)
    if batched is not None:
        return list(batched(frames, masks, labels))
    return [judge.judge(frames, m, label) for m, label in zip(masks, labels)]


def caption_objects(captioner: Captioner, frames: np.ndarray, alphas: np.ndarray, backgrounds: np.ndarray,
                    labels: list[str], tags: list[str]) -> list[LayerCaptions]:
    """All objects of a clip: one batched call where the backend offers ``caption_objects``, else one by one."""
    batched = getattr(captioner, "caption_objects", None)
    if batched is not None:
        return list(batched(frames, alphas, backgrounds, labels, tags))
    return [captioner.caption(frames, a, b, label, tags) for a, b, label in zip(alphas, backgrounds, labels)]


# -- several clips at once (the stages' batch-level hook, stages.base.BackendStage.infer) -------------------
# A backend that can batch across clips offers the ``*_clips`` method (one model call over all clips'
# items, chunked by its ``max_batch``); any other backend, e.g. every CPU one, is called clip by clip.

def tag_clips(tagger: Tagger, clips: list[np.ndarray]) -> list[list[Tag]]:
    batched = getattr(tagger, "tag_clips", None)
    if batched is not None:
        return [list(tags) for tags in batched(clips)]
    return [tagger.tag(frames) for frames in clips]


def segment_clips(segmenter: SegmenterTracker, clips: list[tuple[np.ndarray, list[str]]]) -> list[list[TrackedObject]]:
    """``clips``: (frames, prompts) per clip."""
    batched = getattr(segmenter, "segment_clips", None)
    if batched is not None:
        return [list(objects) for objects in batched(clips)]
    return [segmenter.segment(frames, prompts) for frames, prompts in clips]


def judge_clips(judge: FgJudge, clips: list[tuple[np.ndarray, np.ndarray, list[str]]]) -> list[list[Judgement]]:
    """``clips``: (frames, masks (K, T, H, W), labels) per clip."""
    batched = getattr(judge, "judge_clips", None)
    if batched is not None:
        return [list(verdicts) for verdicts in batched(clips)]
    return [judge_objects(judge, *clip) for clip in clips]


def caption_clips(captioner: Captioner, clips: list[tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]]
                  ) -> list[list[LayerCaptions]]:
    """``clips``: (frames, alphas, backgrounds, labels, tags) per clip."""
    batched = getattr(captioner, "caption_clips", None)
    if batched is not None:
        return [list(captions) for captions in batched(clips)]
    return [caption_objects(captioner, *clip) for clip in clips]


def split_by_counts(flat: list, counts: list[int]) -> list[list]:
    """Undo the concatenation of per-clip item lists: ``counts[i]`` items belong to clip ``i``."""
    if sum(counts) != len(flat):
        raise RuntimeError(f"{len(flat)} results for {sum(counts)} items")
    out, first = [], 0
    for count in counts:
        out.append(list(flat[first:first + count]))
        first += count
    return out
