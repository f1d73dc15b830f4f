"""Flow propagation, keyframe association and re-anchoring on synthetic ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_builder.ops.flow import clip_flows, interpolate_anchors, propagate, warp
from dataset_builder.ops.track import (
    associate,
    associate_by_position,
    iou_matrix,
    keyframe_indices,
    track_keyframes,
)


def _textured(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h // 2, w // 2, 3), dtype=np.uint8)
    import cv2

    return cv2.GaussianBlur(cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC), (3, 3), 0)


def _moving_square(num_frames=8, h=192, w=256, step=4, size=48):
    """Static textured bg, a textured square moving right by ``step`` px a frame; its GT masks."""
    bg, tex = _textured(h, w, 0), _textured(size, size, 1)
    frames, masks = [], []
    for t in range(num_frames):
        f, m = bg.copy(), np.zeros((h, w), bool)
        x0, y0 = 20 + step * t, 60
        f[y0:y0 + size, x0:x0 + size] = tex
        m[y0:y0 + size, x0:x0 + size] = True
        frames.append(f)
        masks.append(m)
    return np.stack(frames), np.stack(masks)


def _iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def test_warp_by_a_constant_flow_shifts_the_image():
    img = np.zeros((20, 30), np.float32)
    img[5:10, 5:10] = 1
    flow = np.zeros((20, 30, 2), np.float32)
    flow[..., 0] = -4  # each target pixel looks 4 px to the left in the source: content moves right
    out = warp(img, flow)
    assert out[5:10, 9:14].min() == 1 and out[5:10, 5:9].max() == 0


def test_propagation_follows_a_moving_square_both_ways():
    frames, gt = _moving_square()
    to_prev, to_next = clip_flows(frames)
    fwd = propagate(gt[0].astype(np.float32), 0, 7, to_prev, to_next) >= 0.5
    bwd = propagate(gt[7].astype(np.float32), 7, 0, to_prev, to_next)[::-1] >= 0.5
    still = _iou(gt[0], gt[7])  # what not following the motion would give (28 px on 48 px)
    assert still < 0.3
    assert _iou(fwd[-1], gt[7]) > still + 0.25 and _iou(bwd[0], gt[0]) > still + 0.25
    assert _iou(fwd[1], gt[1]) > 0.85


def test_interpolation_between_anchors_matches_the_ground_truth():
    frames, gt = _moving_square(num_frames=9)
    to_prev, to_next = clip_flows(frames)
    soft = interpolate_anchors({0: gt[0].astype(np.float32), 8: gt[8].astype(np.float32)}, 9, to_prev, to_next)
    assert soft.shape == (9, *gt.shape[1:])
    ious = [_iou(soft[t] >= 0.5, gt[t]) for t in range(9)]
    assert min(ious) > 0.6, ious
    # blending both anchors beats carrying the first one alone to the far end
    alone = propagate(gt[0].astype(np.float32), 0, 8, to_prev, to_next)[-2] >= 0.5
    assert ious[7] > _iou(alone, gt[7])
    assert np.array_equal(soft[0], gt[0].astype(np.float32))  # anchors are kept as given


def test_interpolate_needs_an_anchor():
    with pytest.raises(ValueError):
        interpolate_anchors({}, 3, np.zeros((2, 4, 4, 2), np.float32), np.zeros((2, 4, 4, 2), np.float32))


def test_iou_matrix_and_optimal_assignment():
    a = np.zeros((10, 10), bool)
    a[:5] = True
    b = ~a
    assert iou_matrix([a, b], [b, a]).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert sorted(associate([a, b], [b, a], 0.5)) == [(0, 1), (1, 0)]
    assert associate([a], [b], 0.5) == []


def _box(h, w, x, y, s):
    m = np.zeros((h, w), bool)
    m[y:y + s, x:x + s] = True
    return m


def test_tracks_keep_their_identity_when_candidate_order_swaps():
    """Two objects; the detector lists them in a different order on every keyframe: tracks must follow
    the objects (IoU re-anchoring), not the list positions."""
    h, w, keys = 60, 120, [0, 2, 4, 6]
    left = [_box(h, w, 10 + 2 * k, 20, 16) for k in keys]
    right = [_box(h, w, 90 - 2 * k, 20, 16) for k in keys]
    cands = [[left[i], right[i]] if i % 2 == 0 else [right[i], left[i]] for i in range(len(keys))]
    tracks = track_keyframes(keys, cands, lambda m, s, d: m, min_iou=0.3)
    assert len(tracks) == 2
    for tr in tracks:
        sides = {("left" if cands[k][ci] is left[k] else "right") for k, ci in tr.anchors.items()}
        assert len(sides) == 1 and len(tr.anchors) == 4


def test_a_lost_fast_mover_is_picked_up_by_position_and_a_far_one_starts_a_new_track():
    h, w = 60, 200
    first, jumped, far = _box(h, w, 10, 20, 16), _box(h, w, 30, 22, 16), _box(h, w, 170, 20, 16)
    identity = lambda m, s, d: m  # noqa: E731  (flow that lost the object: no overlap left)
    assert associate_by_position([first], [jumped]) == [(0, 0)]
    assert associate_by_position([first], [far]) == []
    tracks = track_keyframes([0, 3], [[first], [jumped]], identity, min_iou=0.3)
    assert [t.anchors for t in tracks] == [{0: 0, 1: 0}]
    assert len(track_keyframes([0, 3], [[first], [jumped]], identity, min_iou=0.3, reach=0)) == 2
    assert len(track_keyframes([0, 3], [[first], [far]], identity, min_iou=0.3)) == 2


def test_size_gate_blocks_position_matches_of_very_different_objects():
    small, big = _box(60, 60, 10, 10, 6), _box(60, 60, 12, 12, 30)
    assert associate_by_position([small], [big]) == []


def test_keyframe_indices_include_the_last_frame():
    assert keyframe_indices(16, 5) == [0, 5, 10, 15]
    assert keyframe_indices(16, 2)[-2:] == [14, 15]
    assert keyframe_indices(1, 3) == [0]


def test_a_keyframe_region_twice_the_size_does_not_re_anchor_the_track():
    """A bad keyframe segmentation (object merged with its surroundings) must not replace the track."""
    h, w = 80, 80
    obj, merged = _box(h, w, 20, 20, 16), _box(h, w, 14, 14, 30)
    assert associate([obj], [merged], 0.2) == [(0, 0)]  # IoU alone would accept it
    tracks = track_keyframes([0, 2], [[obj], [merged]], lambda m, s, d: m, min_iou=0.2)
    assert [t.anchors for t in tracks] == [{0: 0}, {1: 0}]
