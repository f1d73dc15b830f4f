"""Hard mask -> soft alpha: an edge-aware guided filter (He et al.) and plain feathering.

The guided filter snaps a coarse, blocky mask to the image edges in O(N) with box filters, which
is what a CPU pipeline can afford per frame; closed-form matting (pymatting) is the optional,
much slower refinement for small frames.
"""

from __future__ import annotations

import cv2
import numpy as np


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int = 4, eps: float = 1e-4) -> np.ndarray:
    """Guided filter of float ``src`` (H, W) by ``guide`` (uint8 or 0..1 float, gray or RGB).

    The colour version models ``q = a^T I + b`` per window, so it follows edges between regions of
    equal brightness but different hue (where a gray guide is blind).
    """
    g = guide.astype(np.float32) / (255.0 if guide.dtype == np.uint8 else 1.0)
    p = src.astype(np.float32)
    mean_p = _box(p, radius)
    if g.ndim == 2:
        mean_g = _box(g, radius)
        a = (_box(g * p, radius) - mean_g * mean_p) / (_box(g * g, radius) - mean_g * mean_g + eps)
        b = mean_p - a * mean_g
        return _box(a, radius) * g + _box(b, radius)
    mean_g = _box(g, radius)  # (H, W, 3)
    cov_gp = _box(g * p[..., None], radius) - mean_g * mean_p[..., None]
    sigma = np.empty(g.shape[:2] + (3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            sigma[..., i, j] = sigma[..., j, i] = _box(g[..., i] * g[..., j], radius) - mean_g[..., i] * mean_g[..., j]
    sigma += eps * np.eye(3, dtype=np.float32)
    a = np.linalg.solve(sigma, cov_gp[..., None])[..., 0]
    b = mean_p - (a * mean_g).sum(-1)
    return (_box(a, radius) * g).sum(-1) + _box(b, radius)


def refine_alpha(frame: np.ndarray, mask: np.ndarray, radius: int = 2, eps: float = 1e-4) -> np.ndarray:
    """uint8 soft alpha from a (hard or soft) uint8 mask, with edges following ``frame``.

    Pixels farther than ``2 * radius`` from the mask boundary keep their hard value, so the filter
    can only move the edge, never punch holes or add blobs.
    """
    hard = mask >= 128
    soft = np.clip(guided_filter(frame, mask.astype(np.float32) / 255.0, radius, eps), 0.0, 1.0)
    k = np.ones((4 * radius + 1, 4 * radius + 1), np.uint8)
    band = cv2.dilate(hard.astype(np.uint8), k) > cv2.erode(hard.astype(np.uint8), k)
    out = np.where(band, soft, hard.astype(np.float32))
    return np.round(out * 255).astype(np.uint8)


def refine_alpha_sequence(frames: np.ndarray, masks: np.ndarray, radius: int = 2, eps: float = 1e-4) -> np.ndarray:
    return np.stack([refine_alpha(f, m, radius, eps) for f, m in zip(frames, masks)])


def feather(mask: np.ndarray, radius: float = 2.0) -> np.ndarray:
    """Gaussian-softened uint8 alpha (image-agnostic anti-aliasing of a hard mask)."""
    if radius <= 0:
        return mask.copy()
    out = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), radius)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def trimap(mask: np.ndarray, band: int = 5) -> np.ndarray:
    """float64 trimap (0 bg, 0.5 unknown, 1 fg) with an unknown band of ``band`` px each side."""
    hard = (mask >= 128).astype(np.uint8)
    k = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    out = np.full(mask.shape, 0.5)
    out[cv2.erode(hard, k) > 0] = 1.0
    out[cv2.dilate(hard, k) == 0] = 0.0
    return out


def closed_form_alpha(frame: np.ndarray, mask: np.ndarray, band: int = 5) -> np.ndarray:
    """Closed-form matting (Levin et al., via pymatting) on a trimap around the mask; slow, small frames."""
    from pymatting import estimate_alpha_cf  # optional dependency, imported only when asked for

    alpha = estimate_alpha_cf(frame.astype(np.float64) / 255.0, trimap(mask, band))
    return np.clip(np.round(alpha * 255), 0, 255).astype(np.uint8)
