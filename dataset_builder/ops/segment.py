"""Motion segmentation and tracking on camera-compensated video (the math of the CPU segmenter).

residuals (low-rank difference to aligned other frames) -> hysteresis threshold + morphology -> per-frame
connected components -> tracks linked by motion-compensated overlap -> gap filling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

from dataset_builder.ops.motion import (
    motion_residual,
    reference_indices,
    relative_homography,
    warp,
    warp_valid,
)


def residual_maps(
    frames: np.ndarray, cum: np.ndarray, num_references: int = 8, exclude: np.ndarray | None = None,
    rank: int = 1, tolerance: int = 1,
) -> np.ndarray:
    """Float32 (T, H, W) motion evidence: per pixel, the ``rank``-th smallest difference of a frame to
    the other frames aligned onto it (0 where no frame sees the pixel).

    A background pixel matches *some* reference, so its low-rank difference is small even where
    movers cross it in most frames (a median background would carry their ghosts); a mover differs
    from every reference that shows background there. ``exclude`` (bool (T,H,W), known movers per
    frame) removes references that show a mover at the pixel, which keeps slow, self-overlapping
    objects whole. ``rank`` 1 (second smallest) ignores one accidental match.
    """
    t_len, h, w = frames.shape[:3]
    out = np.zeros((t_len, h, w), np.float32)
    for t in range(t_len):
        refs = reference_indices(t_len, t, num_references)
        diffs = np.full((len(refs), h, w), np.inf, np.float32)
        for k, i in enumerate(refs):
            hom = relative_homography(cum, i, t)
            valid = warp_valid(hom, (h, w), (h, w))
            if exclude is not None:
                valid &= warp(exclude[i].astype(np.uint8), hom, (h, w), nearest=True) == 0
            d = motion_residual(frames[t], warp(frames[i], hom, (h, w)), tolerance)
            diffs[k][valid] = d[valid]
        diffs.sort(axis=0)
        n = np.isfinite(diffs).sum(0)
        pick = np.clip(np.minimum(rank, n - 1), 0, None)
        res = np.take_along_axis(diffs, pick[None], axis=0)[0]
        res[n == 0] = 0.0
        out[t] = cv2.GaussianBlur(res, (0, 0), 1.0)
    return out


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def threshold_residuals(
    residuals: np.ndarray, abs_threshold: float = 20.0, noise_k: float = 5.0, open_radius: int = 1,
    close_radius: int = 3,
) -> np.ndarray:
    """Bool (T, H, W) movers: hysteresis threshold (weak regions survive if they hold a strong seed),
    opening against speckle, closing + hole filling so textureless interiors are not lost.

    The strong threshold adapts to the clip's noise (median + ``noise_k`` * robust sigma), never
    going below ``abs_threshold``.
    """
    med = float(np.median(residuals))
    sigma = 1.4826 * float(np.median(np.abs(residuals - med)))
    strong_thr = max(abs_threshold, med + noise_k * sigma)
    out = np.zeros(residuals.shape, bool)
    for t, res in enumerate(residuals):
        strong = res > strong_thr
        if not strong.any():
            continue
        weak = (res > 0.5 * strong_thr).astype(np.uint8)
        if open_radius:
            weak = cv2.morphologyEx(weak, cv2.MORPH_OPEN, _disk(open_radius))
        n, labels = cv2.connectedComponents(weak, connectivity=8)
        seeded = np.zeros(n, bool)
        seeded[np.unique(labels[strong & (weak > 0)])] = True
        seeded[0] = False
        m = seeded[labels].astype(np.uint8)
        if close_radius:
            m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, _disk(close_radius))
        out[t] = ndimage.binary_fill_holes(m > 0)
    return out


def components(mask: np.ndarray, min_area: int) -> list[np.ndarray]:
    """Connected components (bool masks) of a 2-D bool mask with at least ``min_area`` pixels."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [labels == i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area]


@dataclass
class Track:
    frames: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def last(self) -> int:
        return max(self.frames)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller area: tolerant to a mover growing/shrinking or splitting."""
    inter = np.logical_and(a, b).sum()
    return float(inter / max(min(a.sum(), b.sum()), 1))


def link_tracks(
    comps: list[list[np.ndarray]], cum: np.ndarray, min_overlap: float = 0.2, max_gap: int = 3,
    search_radius: int = 4,
) -> list[Track]:
    """Greedy frame-to-frame linking of components into tracks.

    A track's last mask is warped into the current frame by the camera homography and dilated by
    ``search_radius`` (objects move), then matched by overlap. Several components matching one
    track are merged (an object split by the threshold); a component matching several tracks is
    split between them; unmatched components start new tracks.
    """
    tracks: list[Track] = []
    kernel = _disk(search_radius)
    for t, frame_comps in enumerate(comps):
        if not frame_comps:
            continue
        h, w = frame_comps[0].shape
        active = [k for k, tr in enumerate(tracks) if t - tr.last <= max_gap + 1]
        predicted = {}
        for k in active:
            tr = tracks[k]
            hom = relative_homography(cum, tr.last, t)
            pred = warp(tr.frames[tr.last].astype(np.uint8), hom, (h, w), nearest=True)
            predicted[k] = cv2.dilate(pred, kernel) > 0
        pieces: list[tuple[int, np.ndarray]] = []  # (track index or -1 for new, mask)
        for comp in frame_comps:
            matched = [k for k in active if _overlap(comp, predicted[k]) >= min_overlap]
            if len(matched) <= 1:
                pieces.append((matched[0] if matched else -1, comp))
                continue
            # Movers that touch or cross merge into one blob: split it between the tracks by
            # nearest predicted mask so identities survive the crossing.
            dist = np.stack([cv2.distanceTransform((~predicted[k]).astype(np.uint8), cv2.DIST_L2, 3)
                             for k in matched])
            owner = np.argmin(dist, axis=0)
            pieces += [(k, comp & (owner == j)) for j, k in enumerate(matched) if (comp & (owner == j)).any()]
        for k, piece in pieces:
            if k < 0:
                tracks.append(Track({t: piece}))
            else:
                tr = tracks[k]
                tr.frames[t] = tr.frames[t] | piece if t in tr.frames else piece
    return tracks


def fill_gaps(track: Track, num_frames: int, cum: np.ndarray) -> np.ndarray:
    """Bool (T, H, W) masks of a track; frames missing *between* detections get the nearest detection,
    carried by the camera homography and shifted along the linearly interpolated centroid path."""
    first = next(iter(track.frames.values()))
    h, w = first.shape
    out = np.zeros((num_frames, h, w), bool)
    seen = sorted(track.frames)
    for t in seen:
        out[t] = track.frames[t]
    for t in range(seen[0] + 1, seen[-1]):
        if t in track.frames:
            continue
        prev = max(s for s in seen if s < t)
        nxt = min(s for s in seen if s > t)
        src = prev if t - prev <= nxt - t else nxt
        hom = relative_homography(cum, src, t)
        c_prev, c_next = (_centroid(warp(track.frames[s].astype(np.uint8), relative_homography(cum, s, t), (h, w),
                                         nearest=True)) for s in (prev, nxt))
        carried = warp(track.frames[src].astype(np.uint8), hom, (h, w), nearest=True)
        if c_prev is not None and c_next is not None:
            a = (t - prev) / (nxt - prev)
            target = (1 - a) * c_prev + a * c_next
            here = _centroid(carried)
            if here is not None:
                dx, dy = target - here
                carried = cv2.warpAffine(carried, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h),
                                         flags=cv2.INTER_NEAREST)
        out[t] = carried > 0
    return out


def _centroid(mask: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    return None if len(xs) == 0 else np.array([xs.mean(), ys.mean()])
