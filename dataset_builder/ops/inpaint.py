"""Video object removal without a network: borrow the background from other frames, then paint.

1. Dilate the object mask into the hole (covers soft edges, shadows' fringe, mask error).
2. For each frame, warp the other frames onto it with the camera homographies and take, per hole
   pixel, the median of the first ``max_candidates`` frames (nearest in time first) that see that
   pixel outside their own hole. Static camera or pan: most of the hole is real background.
3. What no frame ever saw is filled spatially (cv2.inpaint, Telea or Navier-Stokes).
4. The fill fades into the input across the outer ring of the hole, so there is no hard seam.
   Pixels outside the dilated hole are returned untouched.
"""

from __future__ import annotations

import cv2
import numpy as np

from dataset_builder.ops.motion import relative_homography, warp, warp_valid


def dilate_masks(masks: np.ndarray, radius: int, threshold: int = 1) -> np.ndarray:
    """Bool (T,H,W) hole: every pixel with mask >= ``threshold`` grown by ``radius`` px."""
    hard = (masks >= threshold).astype(np.uint8)
    if radius <= 0:
        return hard > 0
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return np.stack([cv2.dilate(m, k) for m in hard]) > 0


def temporal_fill(
    frames: np.ndarray, holes: np.ndarray, cum: np.ndarray, max_candidates: int = 5, max_sources: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Fill holes from aligned other frames. Returns (filled uint8 frames, bool "still unseen")."""
    t, h, w = holes.shape
    out = frames.copy()
    unseen = holes.copy()
    for i in range(t):
        hole = holes[i]
        if not hole.any():
            continue
        ys, xs = np.nonzero(hole)
        sources = sorted((j for j in range(t) if j != i), key=lambda j: (abs(j - i), j))[:max_sources]
        vals = np.zeros((len(sources), len(ys), 3), np.float32)
        ok = np.zeros((len(sources), len(ys)), bool)
        for k, j in enumerate(sources):
            hom = relative_homography(cum, j, i)
            src_hole = warp(holes[j].astype(np.uint8), hom, (h, w), nearest=True)
            valid = warp_valid(hom, (h, w), (h, w)) & (src_hole == 0)
            ok[k] = valid[ys, xs]
            if ok[k].any():
                vals[k] = warp(frames[j], hom, (h, w))[ys, xs]
            if (ok[: k + 1].sum(0) >= max_candidates).all():
                ok, vals = ok[: k + 1], vals[: k + 1]
                break
        take = ok & (np.cumsum(ok, axis=0) <= max_candidates)
        seen = take.any(0)
        if seen.any():
            cand = np.where(take[..., None], vals, np.nan)[:, seen]
            out[i, ys[seen], xs[seen]] = np.clip(np.round(np.nanmedian(cand, axis=0)), 0, 255).astype(np.uint8)
        unseen[i, ys[seen], xs[seen]] = False
    return out, unseen


def spatial_fill(frame: np.ndarray, hole: np.ndarray, radius: int = 5, method: str = "telea") -> np.ndarray:
    if not hole.any():
        return frame.copy()
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(cv2.inpaint(bgr, hole.astype(np.uint8), radius, flag), cv2.COLOR_BGR2RGB)


def seam_blend(original: np.ndarray, filled: np.ndarray, hole: np.ndarray, core: np.ndarray, width: int) -> np.ndarray:
    """Fade from ``original`` to ``filled`` over ``width`` px inside ``hole`` but never inside ``core``.

    ``core`` is the undilated object: there the original is the object, so only the fill is valid.
    """
    if width <= 0:
        return np.where(hole[..., None], filled, original)
    dist = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
    wgt = np.clip(dist / float(width), 0.0, 1.0)
    wgt[core] = 1.0
    wgt[~hole] = 0.0
    wgt = wgt[..., None]
    out = wgt * filled.astype(np.float32) + (1.0 - wgt) * original.astype(np.float32)
    return np.where(hole[..., None], np.clip(np.round(out), 0, 255).astype(np.uint8), original)


def inpaint_video(
    frames: np.ndarray,
    masks: np.ndarray,
    cum: np.ndarray,
    dilate: int = 6,
    max_candidates: int = 5,
    max_sources: int = 12,
    spatial_radius: int = 5,
    spatial_method: str = "telea",
    seam: int = 3,
) -> tuple[np.ndarray, dict[str, float]]:
    """Remove the masked object from every frame. ``cum``: frame -> frame-0 homographies.

    Returns (background uint8 (T,H,W,3), stats: hole fraction and share filled temporally).
    """
    holes = dilate_masks(masks, dilate)
    core = masks >= 128
    filled, unseen = temporal_fill(frames, holes, cum, max_candidates, max_sources)
    out = np.empty_like(frames)
    for i in range(len(frames)):
        painted = spatial_fill(filled[i], unseen[i], spatial_radius, spatial_method)
        out[i] = seam_blend(frames[i], painted, holes[i], core[i], seam)
    hole_px = int(holes.sum())
    stats = {
        "hole_fraction": float(holes.mean()),
        "temporal_fill_fraction": float(1.0 - unseen.sum() / hole_px) if hole_px else 1.0,
    }
    return out, stats


def naive_inpaint(frames: np.ndarray, masks: np.ndarray, dilate: int = 6, radius: int = 5) -> np.ndarray:
    """Per-frame Telea baseline (no temporal information), for evaluation."""
    holes = dilate_masks(masks, dilate)
    return np.stack([spatial_fill(f, m, radius) for f, m in zip(frames, holes)])
