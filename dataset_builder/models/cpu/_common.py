"""Shared plumbing of the CPU backends: strict option parsing, work resolution, person/face detection."""

from __future__ import annotations

from functools import cache
from typing import TypeVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from dataset_builder.config import BackendSpec

O = TypeVar("O", bound=BaseModel)


class Options(BaseModel):
    """Base of every backend's options: a typo in ``spec.options`` is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_raw(cls, options: dict, name: str):
        """``options[name]``, else the field's default: one option read from raw ``spec.options`` without
        validating them all (the stage revision asks which model files the options choose)."""
        return options.get(name, cls.model_fields[name].default)


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


@cache
def _cascade(name: str) -> cv2.CascadeClassifier | None:
    data = getattr(cv2, "data", None)
    if data is None:
        return None
    cascade = cv2.CascadeClassifier(data.haarcascades + name)
    return None if cascade.empty() else cascade


#: Frontal + profile Haar cascades (Viola-Jones): a close-up talking head has no HOG-shaped body.
FACE_CASCADES = ("haarcascade_frontalface_alt2.xml", "haarcascade_profileface.xml")


def detect_faces(
    frame: np.ndarray, min_score: float = 0.4, min_size: float = 0.08
) -> list[tuple[tuple[int, int, int, int], float]]:
    """Haar-cascade faces: [((x0, y0, x1, y1), score 0..1)], [] where the OpenCV build has no cascades.

    ``min_size``: smallest face side as a fraction of the shorter frame side (tiny "faces" in foliage
    are the cascades' typical false positives). Scores squash the final-stage weight w by
    1 - exp(-w / 20) (w ~ 50 on a clear face, ~ 5-15 on accidental hits), profile faces searched
    on the frame and its mirror.
    """
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    # Faces below min_size are ignored anyway: search at <= 256 px on the short side (cheap at 1080p).
    scale = min(1.0, 256.0 / min(gray.shape))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    side = max(20, int(min_size * min(gray.shape)))
    out = []
    for name in FACE_CASCADES:
        cascade = _cascade(name)
        if cascade is None:
            continue
        for flip in (False, True) if "profile" in name else (False,):
            img = gray[:, ::-1].copy() if flip else gray
            boxes, _, weights = cascade.detectMultiScale3(
                img, scaleFactor=1.15, minNeighbors=5, minSize=(side, side), outputRejectLevels=True
            )
            for (x, y, w, h), wt in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).ravel()):
                score = float(1.0 - np.exp(-max(float(wt), 0.0) / 20.0))
                if flip:
                    x = gray.shape[1] - x - w
                if score >= min_score:
                    out.append((tuple(round(v / scale) for v in (x, y, x + w, y + h)), score))
    return out

