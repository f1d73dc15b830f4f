"""Per-sample quality scores of a finished layer triple (fg colour, alpha, bg) and the gate on them.

All scores are computed from the layers alone (no ground truth), so they run on every sample of every
profile. They are cheap proxies of what a researcher checks by eye:

``qa_alpha_coverage_min`` / ``_mean``  share of the frame the object covers (per frame; min and mean)
``qa_empty_frames``        share of frames whose alpha is empty (the object vanishes from fg)
``qa_alpha_stability``     min over consecutive frames of the smaller/larger area ratio (flicker,
                           identity switches and track loss show up as jumps)
``qa_alpha_iou_min``       min IoU of consecutive hard masks (informative; fast movers lower it)
``qa_edge_band_px``        mean width of the fractional-alpha band, in px (soft-pixel count / contour length)
``qa_soft_visible_share``  share of visible fg pixels (alpha > 0) that are mostly transparent (alpha < 128)
``qa_color_consistency``   min over consecutive frames of the colour-histogram similarity (Bhattacharyya
                           coefficient, 0..1) of the object's opaque pixels: an identity switch (the
                           track jumps from a plant to a horse) changes the colours at once, a moving or
                           deforming object keeps them
``qa_bg_remnant``          moving content left in the bg around where the object was, in object areas:
                           a bg with the object removed is static after camera alignment, so residual
                           motion near the hole means parts of the object (or its shadow) stayed
``qa_recompose_psnr``      PSNR (dB) of fg-over-bg against the blend in the edge band (the layers
                           must give the clip back where the matte decides)
"""

from __future__ import annotations


import cv2
import numpy as np

from dataset_builder.ops.alpha import edge_band
from dataset_builder.ops.composite import composite
from dataset_builder.ops.motion import cumulative_homographies, pairwise_homographies, work_scale
from dataset_builder.ops.segment import residual_maps


def _resize(stack: np.ndarray, scale: float, nearest: bool = False) -> np.ndarray:
    if scale >= 1:
        return stack
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return np.stack([cv2.resize(x, None, fx=scale, fy=scale, interpolation=interp) for x in stack])


def alpha_scores(alpha: np.ndarray) -> dict[str, float]:
    """Coverage, emptiness, stability and edge-band statistics of a uint8 (T, H, W) alpha."""
    hard = alpha >= 128
    area = hard.reshape(len(hard), -1).mean(1)
    ratios, ious = [], []
    for a, b, ha, hb in zip(area[:-1], area[1:], hard[:-1], hard[1:]):
        ratios.append(min(a, b) / max(a, b) if max(a, b) > 0 else 1.0)
        union = np.logical_or(ha, hb).sum()
        ious.append(np.logical_and(ha, hb).sum() / union if union else 1.0)
    soft = (alpha > 0) & (alpha < 255)
    contour = sum(int((cv2.morphologyEx(h.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0)
                      .sum()) for h in hard) / 2.0  # the gradient is ~2 px wide
    visible = alpha > 0
    return {
        "qa_alpha_coverage_min": float(area.min()),
        "qa_alpha_coverage_mean": float(area.mean()),
        "qa_empty_frames": float((area == 0).mean()),
        "qa_alpha_stability": float(min(ratios)) if ratios else 1.0,
        "qa_alpha_iou_min": float(min(ious)) if ious else 1.0,
        "qa_edge_band_px": float(soft.sum() / contour) if contour else 0.0,
        "qa_soft_visible_share": float((visible & (alpha < 128)).sum() / max(1, visible.sum())),
    }


def color_consistency(frames: np.ndarray, alpha: np.ndarray, bins: int = 8, max_side: int = 160) -> float:
    """Min over consecutive frames of the Bhattacharyya coefficient of the 3D colour histograms (``bins``
    per channel) of the pixels with alpha >= 128; 1.0 when fewer than two frames show the object."""
    t, h, w = alpha.shape
    scale = work_scale(h, w, max_side)
    small_f, small_a = _resize(frames, scale), _resize(alpha, scale, nearest=True)
    hists = []
    for f, a in zip(small_f, small_a):
        m = (a >= 128).astype(np.uint8)
        if not m.any():
            hists.append(None)
            continue
        hist = cv2.calcHist([f], [0, 1, 2], m, [bins] * 3, [0, 256] * 3).ravel()
        hists.append(np.sqrt(hist / hist.sum()))
    sims = [float((p * q).sum()) for p, q in zip(hists[:-1], hists[1:]) if p is not None and q is not None]
    return min(sims) if sims else 1.0


def recompose_psnr(frames: np.ndarray, fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray, band: int = 3) -> float:
    """PSNR (dB, capped at 60) of ``fg`` over ``bg`` against ``frames`` within ``band`` px of the alpha edge."""
    region = np.stack([edge_band(a, band) for a in alpha])
    if not region.any():
        return 60.0
    rec = composite(fg[region], bg[region], alpha[region])  # only the band's pixels (same values)
    mse = float(((rec.astype(np.float32) - frames[region]) ** 2).mean())
    return float(min(60.0, 10 * np.log10(255.0**2 / max(mse, 1e-12))))


def bg_remnant(
    frames: np.ndarray, bg: np.ndarray, alpha: np.ndarray, max_side: int = 240, ring: float = 0.5,
    threshold: float = 30.0, num_references: int = 6, align_max_side: int = 360,
) -> float:
    """Moving bg pixels near the object, in units of the object's mean area (0 = clean).

    The region checked is the object grown by ``ring`` x its equivalent radius; the scene's own
    motion density elsewhere (water, foliage, other movers) is subtracted so only the excess counts.
    Camera motion is taken from the blend (the same for every object of a clip, memoised), estimated at
    ``align_max_side`` like the CPU inpainter's, so it is the inpainter's memoised estimate.
    """
    t, h, w = alpha.shape
    hard = alpha > 0
    obj_area = hard.reshape(t, -1).sum(1)
    if obj_area.max() == 0 or t < 3:
        return 0.0
    scale = work_scale(h, w, max_side)
    pairwise_h, _ = pairwise_homographies(frames, max_side=align_max_side)
    s = np.diag([scale, scale, 1.0])
    cum = np.array([s @ c @ np.linalg.inv(s) for c in cumulative_homographies(pairwise_h)])
    small_bg = _resize(bg, scale)
    small_hard = _resize(hard.astype(np.uint8), scale, nearest=True) > 0
    res = residual_maps(small_bg, cum, num_references=num_references, rank=1)
    movers = res > threshold
    radius = max(2, int(ring * np.sqrt(small_hard.reshape(t, -1).sum(1).max() / np.pi)))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    excess = []
    for i in range(t):
        if not small_hard[i].any():
            continue
        near = cv2.dilate(small_hard[i].astype(np.uint8), k) > 0
        far_density = movers[i][~near].mean() if (~near).any() else 0.0
        near_excess = max(0.0, float(movers[i][near].sum()) - far_density * near.sum())
        excess.append(near_excess / max(1, small_hard[i].sum()))
    return float(np.mean(excess)) if excess else 0.0


def qa_scores(
    frames: np.ndarray, fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray, band: int = 3, remnant_max_side: int = 240,
    matte: np.ndarray | None = None,
) -> dict[str, float]:
    """All scores of one layer triple. ``matte``: the object's matte before ``ops.alpha.reconcile_layers``
    added the translucent shadow / missed-edge alpha; the alpha statistics describe it (a contact shadow
    is not a wide soft edge), ``qa_reconciled_share`` says how much alpha was added (per object pixel)."""
    matte = alpha if matte is None else matte
    scores = alpha_scores(matte)
    scores["qa_reconciled_share"] = float(((alpha > 0) & (matte == 0)).sum() / max(1, (matte >= 128).sum()))
    scores["qa_color_consistency"] = color_consistency(frames, matte)
    scores["qa_recompose_psnr"] = recompose_psnr(frames, fg, bg, alpha, band)
    scores["qa_bg_remnant"] = bg_remnant(frames, bg, alpha, max_side=remnant_max_side)
    return scores


def gate(scores: dict[str, float], limits: dict[str, tuple[str, float]]) -> list[tuple[str, str]]:
    """Failed checks as (reason = score name, detail). ``limits``: score -> ("min" | "max", bound)."""
    failed = []
    for name, (kind, bound) in limits.items():
        if name not in scores:
            continue
        value = scores[name]
        if (kind == "min" and value < bound) or (kind == "max" and value > bound):
            failed.append((name, f"{name}={value:.4g} {'<' if kind == 'min' else '>'} {bound:g}"))
    return failed


__all__ = ["alpha_scores", "bg_remnant", "color_consistency", "gate", "qa_scores", "recompose_psnr"]
