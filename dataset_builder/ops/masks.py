"""Mask-sequence geometry: IoU, dedup, border contact, bbox/centroid tracks, temporal stability."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

#: uint8 masks are soft; a pixel belongs to the object at alpha >= 50 %.
ON = 128


def binarize(mask: np.ndarray, threshold: int = ON) -> np.ndarray:
    return mask if mask.dtype == bool else mask >= threshold


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks of any (equal) shape; two empty masks agree perfectly (1.0)."""
    a, b = binarize(a), binarize(b)
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def per_frame_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU for each frame of two ``(T, H, W)`` sequences (1.0 where both are empty)."""
    a, b = binarize(a), binarize(b)
    inter = np.logical_and(a, b).reshape(len(a), -1).sum(1)
    union = np.logical_or(a, b).reshape(len(a), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def temporal_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-frame IoU over frames where either sequence is present (the DAVIS J measure)."""
    a, b = binarize(a), binarize(b)
    present = np.logical_or(a, b).reshape(len(a), -1).any(1)
    if not present.any():
        return 1.0
    return float(per_frame_iou(a, b)[present].mean())


def containment(a: np.ndarray, b: np.ndarray) -> float:
    """Share of the smaller mask sequence (by pixel volume) that lies inside the other one."""
    a, b = binarize(a), binarize(b)
    smaller = min(int(a.sum()), int(b.sum()))
    return float(np.logical_and(a, b).sum() / smaller) if smaller else 0.0


def dedup_sequences(
    masks: list[np.ndarray], scores: list[float], iou_threshold: float = 0.7,
    containment_threshold: float | None = None,
) -> tuple[list[int], list[tuple[int, int, float]]]:
    """Greedy NMS over mask sequences by temporal IoU, and optionally by containment.

    Containment catches what IoU misses: a part segmented beside its whole (a rider and rider+bike,
    a blob and its person-model mask) overlaps little by IoU but would be the same layer twice.
    Returns (kept indices in input order, [(dropped, kept_instead, iou)]). Higher score wins;
    ties go to the earlier index so the result is deterministic.
    """
    order = sorted(range(len(masks)), key=lambda i: (-float(scores[i]), i))
    kept: list[int] = []
    dropped: list[tuple[int, int, float]] = []
    for i in order:
        for k in kept:
            iou = temporal_iou(masks[i], masks[k])
            if iou > iou_threshold or (
                containment_threshold is not None and containment(masks[i], masks[k]) > containment_threshold
            ):
                dropped.append((i, k, iou))
                break
        else:
            kept.append(i)
    return sorted(kept), sorted(dropped)


def border_touches(mask: np.ndarray, margin: int = 1, min_fraction: float = 0.02) -> int:
    """How many image sides (0..4) a 2-D mask touches along at least ``min_fraction`` of that side."""
    m = binarize(mask)
    sides = (m[:margin].any(0), m[-margin:].any(0), m[:, :margin].any(1), m[:, -margin:].any(1))
    return int(sum(side.mean() >= min_fraction for side in sides))


def sequence_border_touches(masks: np.ndarray, margin: int = 1, min_fraction: float = 0.02) -> int:
    """Median over present frames of :func:`border_touches` (robust to a frame or two at an edge)."""
    counts = [border_touches(m, margin, min_fraction) for m in binarize(masks) if m.any()]
    return int(np.median(counts)) if counts else 0


def presence(masks: np.ndarray, min_pixels: int = 1) -> np.ndarray:
    """Bool (T,): frames in which the object is visible."""
    return binarize(masks).reshape(len(masks), -1).sum(1) >= min_pixels


def area_fractions(masks: np.ndarray) -> np.ndarray:
    return binarize(masks).reshape(len(masks), -1).mean(1)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) exclusive-end box of a 2-D mask, or None if empty."""
    ys, xs = np.nonzero(binarize(mask))
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def bbox_track(masks: np.ndarray) -> list[tuple[int, int, int, int] | None]:
    return [bbox(m) for m in masks]


def centroid_track(masks: np.ndarray) -> np.ndarray:
    """(T, 2) alpha-weighted (x, y) centroids; NaN where the object is absent."""
    t, h, w = masks.shape
    weights = masks.astype(np.float64).reshape(t, -1)
    total = weights.sum(1)
    ys, xs = np.mgrid[0:h, 0:w]
    cx = weights @ xs.ravel() / np.maximum(total, 1e-9)
    cy = weights @ ys.ravel() / np.maximum(total, 1e-9)
    out = np.stack([cx, cy], 1)
    out[total <= 0] = np.nan
    return out


def stability(masks: np.ndarray) -> float:
    """Mean IoU of consecutive present frames: 1 for a rigid still mask, ~0 for flicker."""
    m = binarize(masks)
    idx = np.flatnonzero(presence(m))
    if len(idx) < 2:
        return 0.0 if len(idx) == 0 else 1.0
    return float(np.mean([mask_iou(m[i], m[j]) for i, j in pairwise(idx)]))


def area_stability(masks: np.ndarray) -> float:
    """1 - coefficient of variation of the area over present frames (clipped to 0..1)."""
    areas = area_fractions(masks)
    areas = areas[areas > 0]
    if len(areas) < 2:
        return float(len(areas))
    return _one_minus_cv(areas)


def _one_minus_cv(values: np.ndarray) -> float:
    """1 - coefficient of variation, clipped to 0..1."""
    return float(np.clip(1.0 - values.std() / values.mean(), 0.0, 1.0))


def trend_area_stability(masks: np.ndarray) -> float:
    """:func:`area_stability` of the area divided by its log-linear trend over the present frames: an
    object that steadily approaches or leaves the camera (area x7 over the clip) is stable; a mask that
    flickers, or swells for some frames (merged with its surroundings), is not."""
    areas = area_fractions(masks)
    t = np.flatnonzero(areas > 0)
    if len(t) < 3:
        return area_stability(masks)
    log_area = np.log(areas[t])
    slope, icpt = np.polyfit(t.astype(np.float64), log_area, 1)
    return _one_minus_cv(np.exp(log_area - (slope * t + icpt)))
