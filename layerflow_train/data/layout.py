"""Pure functions: a decoded clip -> the LayerFlow 4 x T layout (fg, alpha, bg, blend) in [-1, 1].

Alpha is replicated to 3 channels so the RGB VAE encodes it like any layer. A *static* view repeats one
frame for all T frames of every layer (stage 2's "images as static videos").
"""

from __future__ import annotations

import cv2
import numpy as np

from layerflow_train.config import DataConfig
from layerflow_train.data.shards import LayeredClip


def frame_indices(num_frames: int, count: int, stride: int, rng: np.random.Generator | None) -> np.ndarray:
    """``count`` indices with ``stride``; random start if ``rng`` else centred; too-short clips are
    time-stretched (indices repeat) rather than dropped."""
    span = (count - 1) * stride + 1
    if num_frames < span:
        return np.linspace(0, num_frames - 1, count).round().astype(np.int64)
    slack = num_frames - span
    start = int(rng.integers(0, slack + 1)) if rng is not None else slack // 2
    return start + stride * np.arange(count, dtype=np.int64)


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then resize. (T, H, W[, C]) uint8 -> (T, h, w[, C])."""
    h, w = frames.shape[1:3]
    if (h, w) == (height, width):
        return frames
    target = width / height
    if w / h > target:
        cw = round(h * target)
        x0 = (w - cw) // 2
        frames = frames[:, :, x0:x0 + cw]
    else:
        ch = round(w / target)
        y0 = (h - ch) // 2
        frames = frames[:, y0:y0 + ch]
    interp = cv2.INTER_AREA if frames.shape[1] > height else cv2.INTER_LINEAR
    return np.stack([cv2.resize(np.ascontiguousarray(f), (width, height), interpolation=interp) for f in frames])


def build_layout(clip: LayeredClip, cfg: DataConfig, rng: np.random.Generator | None,
                 static: bool) -> tuple[np.ndarray, dict]:
    """-> pixels float32 (4, T, 3, H, W) in [-1, 1] and the view description (for cache keys)."""
    n = len(clip.blend)
    if static:
        f0 = int(rng.integers(0, n)) if rng is not None else n // 2
        idx = np.full(cfg.frames_per_layer, f0, dtype=np.int64)
    else:
        idx = frame_indices(n, cfg.frames_per_layer, cfg.frame_stride, rng)
    alpha3 = np.repeat(clip.alpha[..., None], 3, axis=-1)
    layers = [resize_frames(x[idx], cfg.height, cfg.width) for x in (clip.fg, alpha3, clip.bg, clip.blend)]
    pixels = np.stack(layers).astype(np.float32) / 127.5 - 1.0  # (4, T, H, W, 3)
    view = {"frames": idx.tolist(), "height": cfg.height, "width": cfg.width}
    return np.ascontiguousarray(pixels.transpose(0, 1, 4, 2, 3)), view


def motion_scale_for(record_scale: float | None, static: bool) -> float:
    """Static (frame-duplicated) views always get 1; otherwise the sample json's value (0 for copy-paste),
    and 0 for real videos, whose motion the base model already has."""
    if static:
        return 1.0
    return float(record_scale) if record_scale is not None else 0.0


def is_static(kind: str, mode: str, static_fraction: float, rng: np.random.Generator | None) -> bool:
    if mode == "all" or (mode == "kind" and kind == "static"):
        return True
    if static_fraction > 0:
        r = rng.random() if rng is not None else 1.0
        return bool(r < static_fraction)
    return False
