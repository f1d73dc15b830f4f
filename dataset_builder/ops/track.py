"""Keyframe track association and re-anchoring (Grounded-SAM-2 style), independent of any model.

At each keyframe the detector proposes candidate masks; every live track's mask is propagated (by
flow) from its last anchor to the keyframe and matched to the candidates by mask IoU (optimal
assignment). A matched track is *re-anchored* on the detected mask (propagation drift is reset, the
identity kept); an unmatched candidate starts a new track; a track that goes unmatched keeps
propagating and may be picked up again later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """IoU of every boolean mask in ``a`` with every one in ``b`` -> (len(a), len(b))."""
    out = np.zeros((len(a), len(b)), np.float64)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            union = np.logical_or(x, y).sum()
            out[i, j] = np.logical_and(x, y).sum() / union if union else 0.0
    return out


def _area_ok(a: float, b: float, max_ratio: float) -> bool:
    return a > 0 and b > 0 and max(a, b) / min(a, b) <= max_ratio


def associate(tracked: list[np.ndarray], candidates: list[np.ndarray], min_iou: float,
              max_area_ratio: float = np.inf) -> list[tuple[int, int]]:
    """Optimal one-to-one (track, candidate) pairs by IoU (Hungarian), keeping pairs with IoU >= min_iou
    whose areas differ by at most ``max_area_ratio`` (a region that doubles between two keyframes is a
    segmentation that merged with, or lost, something: re-anchoring on it would carry the error on)."""
    if not tracked or not candidates:
        return []
    iou = iou_matrix(tracked, candidates)
    t_area = [float(m.sum()) for m in tracked]
    c_area = [float(m.sum()) for m in candidates]
    for i in range(len(tracked)):
        for j in range(len(candidates)):
            if not _area_ok(t_area[i], c_area[j], max_area_ratio):
                iou[i, j] = 0.0
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]


def _centroid_area(mask: np.ndarray) -> tuple[np.ndarray, float]:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return np.array([np.nan, np.nan]), 0.0
    return np.array([xs.mean(), ys.mean()]), float(len(xs))


def associate_by_position(tracked: list[np.ndarray], candidates: list[np.ndarray], reach: float = 1.0,
                          max_area_ratio: float = 2.5) -> list[tuple[int, int]]:
    """Second-chance pairs for what IoU could not match (flow lost a fast mover): a candidate of similar
    size (area ratio <= ``max_area_ratio``) whose centroid is within ``reach`` x (sum of both objects'
    sqrt(area)) of the propagated mask's; optimal by distance."""
    if not tracked or not candidates:
        return []
    t_stats = [_centroid_area(m) for m in tracked]
    c_stats = [_centroid_area(m) for m in candidates]
    big = 1e9
    cost = np.full((len(tracked), len(candidates)), big)
    for i, (ct, at) in enumerate(t_stats):
        for j, (cc, ac) in enumerate(c_stats):
            if not _area_ok(at, ac, max_area_ratio):
                continue
            dist = float(np.linalg.norm(ct - cc))
            if dist <= reach * (np.sqrt(at) + np.sqrt(ac)):
                cost[i, j] = dist
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < big]


@dataclass
class Track:
    #: keyframe index -> index of the candidate that anchored the track there
    anchors: dict[int, int] = field(default_factory=dict)
    #: propagation IoU with the matched candidate at each re-anchoring (1.0 = no drift)
    match_ious: list[float] = field(default_factory=list)


def track_keyframes(
    keyframes: list[int],
    candidates: list[list[np.ndarray]],
    propagate: Callable[[np.ndarray, int, int], np.ndarray],
    min_iou: float = 0.3,
    reach: float = 1.0,
    max_area_ratio: float = 2.0,
) -> list[Track]:
    """Link per-keyframe candidate masks into tracks.

    ``candidates[k]``: boolean masks found at frame ``keyframes[k]``; ``propagate(mask, src, dst)``
    returns the mask carried from frame ``src`` to frame ``dst`` (boolean). Returns the tracks in
    creation order, each with the candidate index it was anchored on at each keyframe it was found.
    Pairs are matched by IoU first; what is left over gets one position-based chance
    (:func:`associate_by_position`, ``reach`` 0 disables it). A candidate whose area differs from the
    propagated track's by more than ``max_area_ratio`` is not matched to it.
    """
    tracks: list[Track] = []
    last_mask: list[np.ndarray] = []
    last_frame: list[int] = []
    for k, (frame, cands) in enumerate(zip(keyframes, candidates)):
        predicted = [propagate(m, f, frame) for m, f in zip(last_mask, last_frame)]
        pairs = associate(predicted, cands, min_iou, max_area_ratio)
        if reach > 0:
            left_t = [i for i in range(len(predicted)) if i not in {p[0] for p in pairs}]
            left_c = [j for j in range(len(cands)) if j not in {p[1] for p in pairs}]
            extra = associate_by_position([predicted[i] for i in left_t], [cands[j] for j in left_c], reach,
                                          max_area_ratio)
            pairs += [(left_t[a], left_c[b]) for a, b in extra]
        matched = set()
        iou = iou_matrix(predicted, cands) if pairs else None
        for ti, ci in pairs:
            tracks[ti].anchors[k] = ci
            tracks[ti].match_ious.append(float(iou[ti, ci]))
            last_mask[ti], last_frame[ti] = cands[ci], frame
            matched.add(ci)
        for ci, mask in enumerate(cands):
            if ci not in matched:
                tracks.append(Track(anchors={k: ci}))
                last_mask.append(mask)
                last_frame.append(frame)
    return tracks


def keyframe_indices(num_frames: int, interval: int) -> list[int]:
    """0, interval, 2*interval, ... and always the last frame."""
    if num_frames < 1:
        return []
    keys = list(range(0, num_frames, max(1, interval)))
    if keys[-1] != num_frames - 1:
        keys.append(num_frames - 1)
    return keys
