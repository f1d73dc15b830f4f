"""Keyframe track association and re-anchoring (Grounded-SAM-2 style), independent of any model.

At each keyframe the detector proposes candidate masks; every live track's mask is propagated (by
flow) from its last anchor to the keyframe and matched to the candidates by mask IoU (optimal
assignment). A matched track is *re-anchored* on the detected mask (propagation drift is reset, the
identity kept); an unmatched candidate starts a new track; a track that goes unmatched keeps
propagating and may be picked up again later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def _sizes_ok(t_area: float, c_area: float, max_ratio: float, ref_area: float | None) -> bool:
    """The candidate's size is consistent with the propagated mask's or with the track's recent anchors'
    (flow that lost a fast mover shrinks or smears the propagated mask; a real approach grows it)."""
    return _area_ok(t_area, c_area, max_ratio) or (ref_area is not None and _area_ok(ref_area, c_area, max_ratio))


def associate(tracked: list[np.ndarray], candidates: list[np.ndarray], min_iou: float,
              max_area_ratio: float = np.inf, ref_areas: list[float] | None = None) -> list[tuple[int, int]]:
    """Optimal one-to-one (track, candidate) pairs by IoU (Hungarian), keeping pairs with IoU >= min_iou
    whose areas differ by at most ``max_area_ratio`` (a region that doubles between two keyframes is a
    segmentation that merged with, or lost, something: re-anchoring on it would carry the error on).
    ``ref_areas``: each track's typical anchor area, a second size reference (see :func:`_sizes_ok`)."""
    if not tracked or not candidates:
        return []
    iou = iou_matrix(tracked, candidates)
    t_area = [float(m.sum()) for m in tracked]
    c_area = [float(m.sum()) for m in candidates]
    for i in range(len(tracked)):
        for j in range(len(candidates)):
            if not _sizes_ok(t_area[i], c_area[j], max_area_ratio, ref_areas[i] if ref_areas else None):
                iou[i, j] = 0.0
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]


def _centroid_area(mask: np.ndarray) -> tuple[np.ndarray, float]:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return np.array([np.nan, np.nan]), 0.0
    return np.array([xs.mean(), ys.mean()]), float(len(xs))


def associate_by_position(tracked: list[np.ndarray], candidates: list[np.ndarray], reach: float = 1.0,
                          max_area_ratio: float = 2.5, ref_areas: list[float] | None = None,
                          ) -> list[tuple[int, int]]:
    """Second-chance pairs for what IoU could not match (flow lost a fast mover): a candidate of similar
    size (area ratio <= ``max_area_ratio``, see :func:`associate` for ``ref_areas``) whose centroid is
    within ``reach`` x (sum of both objects' sqrt(area)) of the propagated mask's; optimal by distance."""
    if not tracked or not candidates:
        return []
    t_stats = [_centroid_area(m) for m in tracked]
    c_stats = [_centroid_area(m) for m in candidates]
    big = 1e9
    cost = np.full((len(tracked), len(candidates)), big)
    for i, (ct, at) in enumerate(t_stats):
        ref = ref_areas[i] if ref_areas else None
        for j, (cc, ac) in enumerate(c_stats):
            if not at or not _sizes_ok(at, ac, max_area_ratio, ref):
                continue
            dist = float(np.linalg.norm(ct - cc))
            if dist <= reach * (np.sqrt(max(at, ref or 0.0)) + np.sqrt(ac)):
                cost[i, j] = dist
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < big]


#: How many of a track's latest anchors give its size reference (log-linear area trend).
RECENT_ANCHORS = 3
#: Per-frame area growth (or shrink) a trend may extrapolate at most: a motorbike jumping at the camera
#: doubles in area every two frames at 8 fps; faster "growth" is a segmentation merging with its surroundings.
MAX_GROWTH_PER_FRAME = 1.6


def expected_area(frames: Sequence[int], areas: Sequence[float], at: int,
                  max_growth: float = MAX_GROWTH_PER_FRAME) -> float:
    """A track's area at frame ``at`` from its latest anchors (frames, areas): the log-linear trend of the
    last :data:`RECENT_ANCHORS` extrapolated, the per-frame growth clipped to ``max_growth``. An object
    that approaches the camera grows steadily; a median of past areas would call its next (correct)
    segmentation too large and break the track."""
    f = np.asarray(frames[-RECENT_ANCHORS:], np.float64)
    la = np.log(np.maximum(np.asarray(areas[-RECENT_ANCHORS:], np.float64), 1.0))
    if len(f) < 2 or np.ptp(f) == 0:
        return float(np.exp(np.median(la)))
    slope, _ = np.polyfit(f, la, 1)
    limit = np.log(max_growth)
    slope = float(np.clip(slope, -limit, limit))
    return float(np.exp(np.mean(la - slope * f) + slope * at))


@dataclass
class Track:
    #: keyframe index -> index of the candidate that anchored the track there
    anchors: dict[int, int] = field(default_factory=dict)
    #: propagation IoU with the matched candidate at each re-anchoring (1.0 = no drift)
    match_ious: list[float] = field(default_factory=list)


def track_keyframes(
    keyframes: list[int],
    candidates: Sequence[list[np.ndarray]],
    propagate: Callable[[np.ndarray, int, int], np.ndarray],
    min_iou: float = 0.3,
    reach: float = 1.0,
    max_area_ratio: float = 2.0,
    stitch_area_ratio: float = 0.0,
    redetect: Callable[[np.ndarray, int], np.ndarray | None] | None = None,
    min_anchors_to_redetect: int = 2,
    max_redetect: int = 1,
    skip_iou: float = 0.0,
    max_skips: int = 1,
    max_detections: int = 0,
    prune_ratio: float = 0.0,
) -> list[Track]:
    """Link per-keyframe candidate masks into tracks.

    ``candidates[k]``: boolean masks found at frame ``keyframes[k]``; ``propagate(mask, src, dst)``
    returns the mask carried from frame ``src`` to frame ``dst`` (boolean). Returns the tracks in
    creation order, each with the candidate index it was anchored on at each keyframe it was found.
    Pairs are matched by IoU first; what is left over gets one position-based chance
    (:func:`associate_by_position`, ``reach`` 0 disables it). A candidate whose area differs from the
    propagated track's by more than ``max_area_ratio`` is not matched to it. With ``stitch_area_ratio``
    > 0, track fragments are then joined end to start (:func:`stitch_tracks`) and where they
    interleave (:func:`merge_interleaved`); with ``prune_ratio`` > 0,
    inner anchors whose size disagrees with both neighbours are dropped (:func:`prune_size_outliers`).

    ``redetect(predicted_mask, frame)``: for up to ``max_redetect`` tracks per keyframe (most anchors
    first) with at least ``min_anchors_to_redetect`` anchors that no candidate matched, a targeted
    re-detection where the track is predicted (SAM-Track's box prompt from the previous frame: a small
    or fast object the whole-frame detector missed); a mask it returns (size-checked like any
    candidate) is appended to ``candidates[k]`` and anchors the track.

    ``skip_iou`` > 0: a keyframe right after one where every track anchored there was re-anchored with
    IoU >= ``skip_iou`` (flow follows every object) is skipped, at most ``max_skips`` in a row, never
    the first or last; ``candidates[k]`` is then not read, so a lazy sequence detects only on keyframes
    in use. ``max_detections`` > 0 (with ``skip_iou`` > 0): a keyframe is also skipped (within
    ``max_skips``) while the detections so far exceed that budget's share of the keyframes so far, so a
    hard clip's detections are spread evenly instead of spent on its first frames.
    """
    tracks: list[Track] = []
    last_mask: list[np.ndarray] = []
    last_frame: list[int] = []
    areas: list[list[float]] = []  # anchor areas per track; their trend is the size reference
    frames_of: list[list[int]] = []  # the frames of those anchors
    skipped: set[int] = set()
    for k, frame in enumerate(keyframes):
        run = next(i for i in range(k + 1) if k - 1 - i not in skipped)  # keyframes skipped just before k
        if skip_iou > 0 and 0 < k < len(keyframes) - 1 and run < max_skips:
            held = [t for t in tracks if k - 1 - run in t.anchors]
            if held and all(len(t.anchors) > 1 and t.match_ious and t.match_ious[-1] >= skip_iou for t in held):
                skipped.add(k)
                continue
            if max_detections and k - len(skipped) >= max_detections * (k + 1) / len(keyframes):
                skipped.add(k)  # over the detection budget's share so far: spread what is left
                continue
        cands = candidates[k]
        predicted = [propagate(m, f, frame) for m, f in zip(last_mask, last_frame)]
        refs = [expected_area(fs, a, frame) for fs, a in zip(frames_of, areas)]
        pairs = associate(predicted, cands, min_iou, max_area_ratio, refs)
        if reach > 0:
            left_t = [i for i in range(len(predicted)) if i not in {p[0] for p in pairs}]
            left_c = [j for j in range(len(cands)) if j not in {p[1] for p in pairs}]
            extra = associate_by_position([predicted[i] for i in left_t], [cands[j] for j in left_c], reach,
                                          max_area_ratio, [refs[i] for i in left_t])
            pairs += [(left_t[a], left_c[b]) for a, b in extra]
        if redetect is not None:
            paired = {p[0] for p in pairs}
            lost = [ti for ti in range(len(predicted)) if ti not in paired and predicted[ti].any()
                    and len(tracks[ti].anchors) >= min_anchors_to_redetect]
            for ti in sorted(lost, key=lambda i: -len(tracks[i].anchors))[:max_redetect]:
                mask = redetect(predicted[ti], frame)
                if mask is not None and mask.any() and _sizes_ok(float(predicted[ti].sum()), float(mask.sum()),
                                                                 max_area_ratio, refs[ti]):
                    cands = candidates[k] = [*cands, mask]
                    pairs.append((ti, len(cands) - 1))
        matched = set()
        iou = iou_matrix(predicted, cands) if pairs else None
        for ti, ci in pairs:
            tracks[ti].anchors[k] = ci
            tracks[ti].match_ious.append(float(iou[ti, ci]))
            last_mask[ti], last_frame[ti] = cands[ci], frame
            areas[ti].append(float(cands[ci].sum()))
            frames_of[ti].append(frame)
            matched.add(ci)
        for ci, mask in enumerate(cands):
            if ci not in matched:
                tracks.append(Track(anchors={k: ci}))
                last_mask.append(mask)
                last_frame.append(frame)
                areas.append([float(mask.sum())])
                frames_of.append([frame])
    if stitch_area_ratio > 0:
        tracks = stitch_tracks(tracks, keyframes, candidates, propagate, reach or 1.0, stitch_area_ratio)
        tracks = merge_interleaved(tracks, keyframes, candidates, propagate, reach or 1.0)
    if prune_ratio > 0:
        tracks = prune_size_outliers(tracks, keyframes, candidates, prune_ratio)
    return tracks


def stitch_tracks(tracks: list[Track], keyframes: list[int], candidates: list[list[np.ndarray]],
                  propagate: Callable[[np.ndarray, int, int], np.ndarray], reach: float = 1.0,
                  max_area_ratio: float = 3.0, max_gap: int = 1) -> list[Track]:
    """Join a track that ends to one that starts up to ``max_gap`` + 1 keyframes later near where the
    first one's last anchor, carried by flow, lands (centroid within ``reach`` x the sum of both
    sqrt(areas)) with a consistent size (within ``max_area_ratio`` of the carried mask, of the last
    anchor, or of the first track's area trend, :func:`expected_area`). Online association breaks a fast
    mover into such fragments when one keyframe segmentation is much larger or smaller than the last
    (merged with its surroundings, or cut): the size gate that keeps a bad region from re-anchoring a
    track also keeps the object's next good one from continuing it. When a fragment *ended* on such a
    bad region, the join is also tried from its second-to-last anchor, and the bad last anchor is
    dropped; the next fragment may then begin on that very keyframe (the object came as two candidates
    there, each fragment took one), and its anchor there is dropped too: flow from both sides fills that
    frame. Pairs are joined closest first (a dropped anchor or a gap costs as much as the reach)."""
    tracks = [Track(dict(t.anchors), list(t.match_ious)) for t in tracks]

    def area(k: int, ci: int) -> float:
        return float(candidates[k][ci].sum())

    while True:
        best = None
        for a, ta in enumerate(tracks):
            own = sorted(ta.anchors)
            for drop in (0, 1)[: len(own)]:
                ka = own[-1 - drop]
                src = candidates[ka][ta.anchors[ka]]
                a0 = float(src.sum())
                kept = own[: len(own) - drop]
                trend_frames = [keyframes[k] for k in kept]
                trend_areas = [area(k, ta.anchors[k]) for k in kept]
                for b, tb in enumerate(tracks):
                    kb = min(tb.anchors)
                    gap = kb - own[-1]  # 0: the next one begins on the (dropped) last anchor's keyframe
                    if a == b or kb <= ka or not (0 < gap <= max_gap + 1 - drop or (drop and gap == 0)):
                        continue
                    ct, at = _centroid_area(propagate(src, keyframes[ka], keyframes[kb]))
                    cc, ac = _centroid_area(candidates[kb][tb.anchors[kb]])
                    trend = expected_area(trend_frames, trend_areas, keyframes[kb])
                    if not at or not (_area_ok(max(at, a0), ac, max_area_ratio)
                                      or _area_ok(trend, ac, max_area_ratio)):
                        continue
                    dist = float(np.linalg.norm(ct - cc))
                    limit = reach * (np.sqrt(max(at, a0)) + np.sqrt(ac))
                    cost = dist + limit * (drop + kb - ka - 1) / 4
                    if dist <= limit and (best is None or cost < best[0]):
                        best = (cost, a, b, drop)
        if best is None:
            return tracks
        _, a, b, drop = best
        if drop:
            shared = max(tracks[a].anchors)
            del tracks[a].anchors[shared]
            if tracks[a].match_ious:
                tracks[a].match_ious.pop()
            if shared in tracks[b].anchors and len(tracks[b].anchors) > 1:
                del tracks[b].anchors[shared]  # neither part there is the object: flow fills that frame
        tracks[a].anchors.update(tracks[b].anchors)
        tracks[a].match_ious += [0.0, *tracks[b].match_ious]
        del tracks[b]


def merge_interleaved(tracks: list[Track], keyframes: list[int], candidates: list[list[np.ndarray]],
                      propagate: Callable[[np.ndarray, int, int], np.ndarray], reach: float = 1.0,
                      ) -> list[Track]:
    """Join two tracks of one object whose anchors interleave in time: a keyframe segmentation that
    lost most of the object (a motorbike in the air cut to its wheel) does not match the track and
    starts another one, which then takes the next few bad segmentations, while the good ones continue
    the first. Two tracks are joined when they never anchor on the same keyframe, their spans overlap,
    and every anchor of each inside the other's span lies where the other's nearest anchor, carried
    by flow, lands (centroid within ``reach`` x the sum of both sqrt(areas)); closest pairs first. The
    bad anchors are then dropped by :func:`prune_size_outliers`."""
    tracks = [Track(dict(t.anchors), list(t.match_ious)) for t in tracks]

    def distances(ta: Track, tb: Track) -> list[float] | None:
        lo, hi = min(ta.anchors), max(ta.anchors)
        out = []
        for kb in (k for k in tb.anchors if lo < k < hi):
            ka = min(ta.anchors, key=lambda k: abs(k - kb))
            ct, at = _centroid_area(propagate(candidates[ka][ta.anchors[ka]], keyframes[ka], keyframes[kb]))
            cc, ac = _centroid_area(candidates[kb][tb.anchors[kb]])
            dist = float(np.linalg.norm(ct - cc)) if at else np.inf
            if dist > reach * (np.sqrt(at) + np.sqrt(ac)):
                return None
            out.append(dist)
        return out

    while True:
        best = None
        for a, ta in enumerate(tracks):
            for b in range(a + 1, len(tracks)):
                tb = tracks[b]
                if ta.anchors.keys() & tb.anchors.keys() or len(ta.anchors) < 2 or len(tb.anchors) < 2:
                    continue
                if max(ta.anchors) < min(tb.anchors) or max(tb.anchors) < min(ta.anchors):
                    continue  # one after the other: stitch_tracks' case
                d_ab, d_ba = distances(ta, tb), distances(tb, ta)
                if d_ab is None or d_ba is None or not d_ab + d_ba:
                    continue
                cost = float(np.mean(d_ab + d_ba))
                if best is None or cost < best[0]:
                    best = (cost, a, b)
        if best is None:
            return tracks
        _, a, b = best
        tracks[a].anchors.update(tracks[b].anchors)
        tracks[a].match_ious += [0.0, *tracks[b].match_ious]
        del tracks[b]


def prune_size_outliers(tracks: list[Track], keyframes: list[int], candidates: list[list[np.ndarray]],
                        max_ratio: float = 2.0) -> list[Track]:
    """Drop a track's inner anchors whose area is off by more than ``max_ratio`` from the geometric
    interpolation of its two neighbouring anchors' areas: a keyframe segmentation that lost half the
    object (or merged with its surroundings) between two that agree. The frame is then filled like any
    frame between anchors (flow from the neighbours) instead of carrying the bad mask into the sample."""
    limit = np.log(max_ratio)
    out = []
    for tr in tracks:
        anchors = dict(tr.anchors)
        log_area = {k: np.log(max(float(candidates[k][ci].sum()), 1.0)) for k, ci in anchors.items()}
        while len(anchors) >= 3:
            ks = sorted(anchors)
            worst, worst_dev = None, limit
            for p, k, n in zip(ks, ks[1:], ks[2:]):
                fp, fk, fn = keyframes[p], keyframes[k], keyframes[n]
                lp, lk, ln = log_area[p], log_area[k], log_area[n]
                if abs(lp - ln) > limit * (fn - fp):
                    continue  # the neighbours disagree: no reference
                dev = abs(lk - (lp + (ln - lp) * (fk - fp) / (fn - fp)))
                if dev > worst_dev:
                    worst, worst_dev = k, dev
            if worst is None:
                break
            del anchors[worst]
        out.append(Track(anchors, list(tr.match_ious)))
    return out


def keyframe_indices(num_frames: int, interval: int) -> list[int]:
    """0, interval, 2*interval, ... and always the last frame."""
    if num_frames < 1:
        return []
    keys = list(range(0, num_frames, max(1, interval)))
    if keys[-1] != num_frames - 1:
        keys.append(num_frames - 1)
    return keys
