"""Colour naming for captions and scene tags: HSV bins to a small, caption-friendly vocabulary."""

from __future__ import annotations

import cv2
import numpy as np

#: Hue bins on OpenCV's 0..180 hue circle (upper bound exclusive).
_HUES: tuple[tuple[int, str], ...] = (
    (8, "red"), (20, "orange"), (33, "yellow"), (78, "green"), (100, "cyan"), (130, "blue"),
    (150, "purple"), (170, "pink"), (181, "red"),
)


def color_names(rgb: np.ndarray) -> np.ndarray:
    """Name for every pixel of an (N, 3) or (..., 3) uint8 RGB array (object array of str)."""
    flat = rgb.reshape(-1, 1, 3).astype(np.uint8)
    hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.int32)
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    names = np.empty(len(hsv), dtype=object)
    bounds = np.array([b for b, _ in _HUES])
    hue_names = np.array([n for _, n in _HUES], dtype=object)
    names[:] = hue_names[np.searchsorted(bounds, h, side="right")]
    # Brown: dark-ish orange/yellow.
    names[(names == "orange") & (v < 150)] = "brown"
    names[(names == "yellow") & (v < 110)] = "brown"
    grey = s < 45
    names[grey] = "gray"
    names[grey & (v >= 200)] = "white"
    names[(v < 50) | (grey & (v < 60))] = "black"
    return names.reshape(rgb.shape[:-1])


def dominant_colors(
    pixels: np.ndarray, weights: np.ndarray | None = None, top: int = 2, min_fraction: float = 0.15,
    max_samples: int = 20000,
) -> list[tuple[str, float]]:
    """Most frequent colour names (name, fraction) of (..., 3) pixels, optionally alpha-weighted.

    Deterministic subsampling keeps this cheap on whole clips.
    """
    px = pixels.reshape(-1, 3)
    # Every ``step``-th pixel of positive weight, picked by index (whole clips: no full-size copies)
    idx = np.arange(len(px)) if weights is None else np.flatnonzero(weights.reshape(-1) > 0)
    if len(idx) == 0:
        return []
    if len(idx) > max_samples:
        idx = idx[:: int(np.ceil(len(idx) / max_samples))]
    px = px[idx]
    w = np.ones(len(idx)) if weights is None else weights.reshape(-1)[idx].astype(np.float64)
    names = color_names(px)
    labels, inverse = np.unique(names, return_inverse=True)
    totals = np.bincount(inverse, weights=w) / w.sum()
    order = np.argsort(-totals, kind="stable")
    out = [(str(labels[i]), float(totals[i])) for i in order[:top] if totals[i] >= min_fraction]
    return out or [(str(labels[order[0]]), float(totals[order[0]]))]


def brightness_word(frames: np.ndarray) -> str:
    luma = float(cv2.cvtColor(frames.reshape(-1, frames.shape[-2], 3), cv2.COLOR_RGB2GRAY).mean())
    return "dark" if luma < 70 else "bright" if luma > 170 else "evenly lit"
