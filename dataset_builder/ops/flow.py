"""Dense optical flow (OpenCV DIS) and flow-based mask propagation between keyframes.

Convention: ``flow[y, x] = (dx, dy)`` maps a pixel of the *target* frame to where it was in the
*source* frame, so warping is a backward lookup ``out(x) = src(x + flow(x))`` (``cv2.remap``) with no
holes. ``flows_to_prev[t]`` looks from frame t+1 back into frame t; ``flows_to_next[t]`` from frame t
into t+1.
"""

from __future__ import annotations

import cv2
import numpy as np

PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


def dis_flow(target: np.ndarray, source: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Float32 (H, W, 2) flow from ``target`` into ``source`` (see module convention)."""
    dis = cv2.DISOpticalFlow_create(PRESETS[preset])
    return dis.calc(_gray(target), _gray(source), None)


def clip_flows(frames: np.ndarray, preset: str = "medium") -> tuple[np.ndarray, np.ndarray]:
    """(to_prev, to_next), each (T-1, H, W, 2): to_prev[t] looks from t+1 into t, to_next[t] from t into t+1."""
    gray = [_gray(f) for f in frames]
    dis = cv2.DISOpticalFlow_create(PRESETS[preset])
    to_prev = np.stack([dis.calc(gray[t + 1], gray[t], None) for t in range(len(gray) - 1)])
    to_next = np.stack([dis.calc(gray[t], gray[t + 1], None) for t in range(len(gray) - 1)])
    return to_prev, to_next


def warp(image: np.ndarray, flow: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Backward-warp ``image`` (H, W[, C]) by ``flow`` (H, W, 2); outside the frame reads 0."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], interpolation,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def propagate(mask: np.ndarray, start: int, stop: int, to_prev: np.ndarray, to_next: np.ndarray) -> np.ndarray:
    """Carry a float mask of frame ``start`` to every frame in ``start..stop`` (either direction).

    The per-frame flows are *composed* into one lookup from each frame back into ``start`` and the mask
    is sampled once per frame (warping the warped mask again would blur and shrink it step by step).
    Returns (|stop - start| + 1, H, W) float32 in the order start -> stop."""
    mask = mask.astype(np.float32)
    out = [mask]
    step = 1 if stop >= start else -1
    total = np.zeros(mask.shape + (2,), np.float32)
    for t in range(start, stop, step):
        # forward (t -> t+1): look from t+1 into t; backward (t -> t-1): look from t-1 into t
        flow = to_prev[t] if step > 0 else to_next[t - 1]
        total = flow + warp(total, flow)
        out.append(warp(mask, total))
    return np.stack(out)


def _centroid(mask: np.ndarray) -> np.ndarray | None:
    m = cv2.moments(mask.astype(np.float32))
    return None if m["m00"] <= 1e-6 else np.array([m["m10"] / m["m00"], m["m01"] / m["m00"]], np.float32)


def shift(mask: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Translate a float mask by ``offset`` = (dx, dy) pixels (bilinear, outside reads 0)."""
    if not np.any(offset):
        return mask
    m = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])
    return cv2.warpAffine(mask, m, mask.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _drift_corrected(seq: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``seq`` (frames from one anchor to the next, propagated by flow) with the residual offset between
    where flow put the mask at the far end and where the far anchor really is spread linearly over the
    frames: when flow follows the object the residual is ~0 and nothing changes; when a fast mover
    outran it (the mask stayed with the background) the object still moves from one anchor to the next."""
    end, goal = _centroid(seq[-1] >= 0.5), _centroid(target >= 0.5)
    if end is None or goal is None:
        return seq
    residual = goal - end
    n = len(seq) - 1
    return np.stack([seq[0], *(shift(seq[i], residual * (i / n)) for i in range(1, n + 1))]) if n else seq


def interpolate_anchors(anchors: dict[int, np.ndarray], num_frames: int, to_prev: np.ndarray,
                        to_next: np.ndarray, correct_drift: bool = True) -> np.ndarray:
    """Float (T, H, W) masks from masks known at some frames (``anchors``): between two anchors, the
    forward-warped earlier one and the backward-warped later one are blended by temporal distance
    (each is reliable near its own keyframe), each first drift-corrected towards the other anchor
    (``correct_drift``, see :func:`_drift_corrected`); before the first / after the last anchor, the
    nearest one is propagated."""
    keys = sorted(anchors)
    if not keys:
        raise ValueError("no anchors")
    h, w = anchors[keys[0]].shape
    out = np.zeros((num_frames, h, w), np.float32)
    out[: keys[0] + 1] = propagate(anchors[keys[0]], keys[0], 0, to_prev, to_next)[::-1]
    out[keys[-1]:] = propagate(anchors[keys[-1]], keys[-1], num_frames - 1, to_prev, to_next)
    for a, b in zip(keys, keys[1:]):
        fwd = propagate(anchors[a], a, b, to_prev, to_next)
        bwd = propagate(anchors[b], b, a, to_prev, to_next)
        if correct_drift:
            fwd, bwd = _drift_corrected(fwd, anchors[b]), _drift_corrected(bwd, anchors[a])
        bwd = bwd[::-1]
        wgt = np.linspace(0.0, 1.0, b - a + 1, dtype=np.float32)[:, None, None]
        out[a : b + 1] = (1 - wgt) * fwd + wgt * bwd
    for k in keys:
        out[k] = anchors[k]
    return out
