"""Alpha compositing in float, with uint8 in/out: ``I = a * F + (1 - a) * B``."""

from __future__ import annotations

import numpy as np


def _a(alpha: np.ndarray) -> np.ndarray:
    return (alpha.astype(np.float32) / 255.0)[..., None]


def composite(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight (non-premultiplied) fg over bg. Shapes (..., H, W, 3), alpha (..., H, W)."""
    a = _a(alpha)
    out = fg.astype(np.float32) * a + bg.astype(np.float32) * (1.0 - a)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def premultiply(fg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.clip(np.round(fg.astype(np.float32) * _a(alpha)), 0, 255).astype(np.uint8)


def unpremultiply(premul: np.ndarray, alpha: np.ndarray, fill: int = 0) -> np.ndarray:
    a = _a(alpha)
    out = np.where(a > 0, premul.astype(np.float32) / np.maximum(a, 1e-6), float(fill))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def extract_foreground(
    frames: np.ndarray, alpha: np.ndarray, background: np.ndarray | None = None, fill: int = 0,
    min_alpha: int = 8,
) -> np.ndarray:
    """Foreground colour layer: ``fill`` where alpha < ``min_alpha``.

    With a ``background``, edge pixels are un-mixed, ``F = (I - (1 - a) B) / a``, so the fg layer does
    not carry a halo of the old background; without one the blended colour is kept as is.
    """
    a = _a(alpha)
    img = frames.astype(np.float32)
    if background is not None:
        img = (img - (1.0 - a) * background.astype(np.float32)) / np.maximum(a, 1e-3)
        # Un-mixing is ill-posed at tiny alpha; fall back to the observed colour there.
        img = np.where(a >= 0.25, img, frames.astype(np.float32))
    out = np.where(alpha[..., None] >= min_alpha, img, float(fill))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
