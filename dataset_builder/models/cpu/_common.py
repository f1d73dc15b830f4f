"""Shared plumbing of the CPU backends: strict option parsing, work resolution, person detection."""

from __future__ import annotations

from typing import TypeVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from dataset_builder.config import BackendSpec

O = TypeVar("O", bound=BaseModel)


class Options(BaseModel):
    """Base of every backend's options: a typo in ``spec.options`` is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_options(cls: type[O], spec: BackendSpec, backend: str) -> O:
    try:
        return cls.model_validate(spec.options)
    except ValidationError as exc:
        raise ValueError(f"invalid options for backend {backend!r}: {exc}") from exc


def resize_frames(frames: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return frames
    return np.stack([cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames])


def resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (T,h,w) -> (T,H,W); bilinear so an upscaled hard mask comes back with soft edges."""
    if masks.shape[1:] == (height, width):
        return masks
    return np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in masks])


def person_detector_available() -> bool:
    """OpenCV >= 5 moved the HOG people detector out of the main wheel; 4.x has it."""
    return hasattr(cv2, "HOGDescriptor")


def detect_people(frame: np.ndarray, min_score: float = 0.4) -> list[tuple[tuple[int, int, int, int], float]]:
    """HOG + linear SVM (Dalal-Triggs) upright people: [((x0, y0, x1, y1), score 0..1)].

    Returns [] when this OpenCV build has no HOG detector. SVM margins m are squashed by 1 - exp(-1.5 m).
    """
    if not person_detector_available():
        return []
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    # The detector window is 64x128; upscale small frames so people of ~100 px are found.
    scale = max(1.0, 128.0 / max(1, gray.shape[0] // 2))
    if scale > 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale)
    boxes, weights = hog.detectMultiScale(gray, winStride=(8, 8), padding=(8, 8), scale=1.05)
    out = []
    for (x, y, w, h), wt in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).ravel()):
        score = float(1.0 - np.exp(-1.5 * max(float(wt), 0.0)))
        if score >= min_score:
            box = tuple(round(v / scale) for v in (x, y, x + w, y + h))
            out.append((box, score))
    return out
