"""Deterministic synthetic layered clips with exact ground truth (fg, alpha, bg, blend).

A procedural background (multi-scale smoothed noise + gradient + stripes, so motion estimation has
texture to lock onto) is viewed through a window that optionally pans; 1-2 textured shapes with
anti-aliased alpha move across it. Everything derives from ``seed`` so tests and sample shards are
reproducible byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


@dataclass
class SyntheticClip:
    #: Blended clip, uint8 (T, H, W, 3).
    frames: np.ndarray
    #: Straight (non-premultiplied) colour of the union of all objects, 0 where alpha == 0.
    fg: np.ndarray
    #: Union alpha of all objects, uint8 (T, H, W).
    alpha: np.ndarray
    #: Clean background, uint8 (T, H, W, 3).
    bg: np.ndarray
    #: Per-object alpha, uint8 (N, T, H, W), in paint order (later objects are on top).
    object_alphas: np.ndarray
    #: Camera translation of each frame (x, y) in px relative to frame 0 (content moves by minus this).
    camera: np.ndarray
    labels: list[str] = field(default_factory=list)
    fps: float = 8.0


def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    noise = rng.standard_normal((h, w)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), scale)
    return (noise - noise.mean()) / (noise.std() + 1e-6)


def _texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray, stripes: float) -> np.ndarray:
    """Float RGB texture around colour ``base`` (0..255)."""
    lum = 0.5 * _smooth_noise(rng, h, w, 1.5) + 0.8 * _smooth_noise(rng, h, w, 6.0) + _smooth_noise(rng, h, w, 18.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(14, 30)
    lum += stripes * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    tint = np.stack([_smooth_noise(rng, h, w, 25.0) for _ in range(3)], -1)
    img = base[None, None, :] + 22.0 * lum[..., None] + 18.0 * tint
    return img


def _background_canvas(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.uniform(70, 170, 3).astype(np.float32)
    img = _texture(rng, h, w, base, stripes=0.8)
    grad = np.linspace(-30, 30, h, dtype=np.float32)[:, None, None] * rng.uniform(-1, 1, 3)
    return np.clip(img + grad, 0, 255).astype(np.float32)


def _shape_sdf(kind: str, xx: np.ndarray, yy: np.ndarray, rx: float, ry: float, angle: float) -> np.ndarray:
    """Approximate signed distance in px (negative inside) of an ellipse or a rounded box."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * xx + s * yy, -s * xx + c * yy
    if kind == "ellipse":
        r = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
        return (r - 1.0) * min(rx, ry)
    corner = 0.35 * min(rx, ry)
    qx, qy = np.abs(u) - (rx - corner), np.abs(v) - (ry - corner)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0) - corner


def make_synthetic_clip(
    seed: int = 0,
    num_frames: int = 24,
    height: int = 240,
    width: int = 360,
    num_objects: int = 1,
    camera_pan: bool = True,
    fps: float = 8.0,
) -> SyntheticClip:
    """A clip of ``num_objects`` (1-2 typical) textured shapes crossing a textured, optionally panning scene."""
    rng = np.random.default_rng(seed)
    t, h, w = num_frames, height, width
    pan_speed = rng.uniform(1.5, 3.0) * (w / 360.0) if camera_pan else 0.0
    pan_dir = rng.choice([-1.0, 1.0])
    vert = rng.uniform(-0.3, 0.3) if camera_pan else 0.0
    camera = np.stack([pan_dir * pan_speed * np.arange(t), vert * np.arange(t)], 1).astype(np.float32)
    margin = int(np.ceil(np.abs(camera).max())) + 4
    canvas = _background_canvas(rng, h + 2 * margin, w + 2 * margin)

    bg = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        # Window origin moves with the camera: content appears shifted by -camera.
        m = np.float32([[1, 0, margin + camera[i, 0]], [0, 1, margin + camera[i, 1]]])
        bg[i] = np.clip(np.round(cv2.warpAffine(canvas, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)),
                        0, 255).astype(np.uint8)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    premul = np.zeros((t, h, w, 3), np.float32)
    acc = np.zeros((t, h, w), np.float32)
    object_alphas = np.zeros((num_objects, t, h, w), np.uint8)
    labels = []
    for k in range(num_objects):
        kind = ["ellipse", "box"][(k + seed) % 2]
        labels.append(kind)
        # Objects get separate horizontal lanes (they may pass close but never cross each other).
        lane = h / num_objects
        rx, ry = rng.uniform(0.10, 0.16) * w, min(rng.uniform(0.14, 0.22) * h, 0.36 * lane)
        # Distinct from the background: saturated base colour.
        base = rng.uniform(0, 255, 3).astype(np.float32)
        base[rng.integers(3)] = rng.uniform(200, 255)
        base[(np.argmax(base) + 1) % 3] *= 0.3
        tex = _texture(rng, int(2 * ry) + 8, int(2 * rx) + 8, base, stripes=1.5)
        tex = np.clip(tex, 0, 255).astype(np.float32)
        y0 = (k + rng.uniform(0.4, 0.6)) * lane
        x_start, x_end = (0.22 * w, 0.78 * w) if (k + seed) % 2 == 0 else (0.78 * w, 0.22 * w)
        wobble = rng.uniform(0.02, 0.05) * min(h, lane)
        spin = rng.uniform(-0.02, 0.02)
        for i in range(t):
            s = i / max(t - 1, 1)
            cx = x_start + (x_end - x_start) * s
            cy = y0 + wobble * np.sin(2 * np.pi * s)
            ang = spin * i
            sdf = _shape_sdf(kind, xx - cx, yy - cy, rx, ry, ang)
            a = np.clip(0.5 - sdf, 0.0, 1.0)
            # Texture sticks to the object: sample it in object coordinates.
            c, sn = np.cos(ang), np.sin(ang)
            u = c * (xx - cx) + sn * (yy - cy) + tex.shape[1] / 2
            v = -sn * (xx - cx) + c * (yy - cy) + tex.shape[0] / 2
            color = cv2.remap(tex, u.astype(np.float32), v.astype(np.float32), cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
            premul[i] = a[..., None] * color + (1 - a[..., None]) * premul[i]
            acc[i] = a + (1 - a) * acc[i]
            object_alphas[k, i] = np.round(a * 255).astype(np.uint8)

    alpha = np.round(acc * 255).astype(np.uint8)
    a8 = alpha.astype(np.float32)[..., None] / 255.0
    fg_f = np.where(a8 > 0, premul / np.maximum(acc[..., None], 1e-6), 0.0)
    fg = np.clip(np.round(fg_f), 0, 255).astype(np.uint8)
    frames = np.clip(np.round(fg.astype(np.float32) * a8 + bg.astype(np.float32) * (1 - a8)), 0, 255).astype(np.uint8)
    return SyntheticClip(frames=frames, fg=fg, alpha=alpha, bg=bg, object_alphas=object_alphas,
                         camera=camera, labels=labels, fps=fps)


def write_synthetic_video(path: str | Path, crf: int = 18, **kw) -> SyntheticClip:
    """Write the blended clip as H.264 ``path`` (.mp4) and its ground truth as ``path.with_suffix('.npz')``."""
    from dataset_builder.io.video import encode_rgb

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clip = make_synthetic_clip(**kw)
    path.write_bytes(encode_rgb(clip.frames, clip.fps, crf=crf))
    np.savez_compressed(path.with_suffix(".npz"), frames=clip.frames, fg=clip.fg, alpha=clip.alpha, bg=clip.bg,
                        object_alphas=clip.object_alphas, camera=clip.camera, labels=np.array(clip.labels),
                        fps=np.float32(clip.fps))
    return clip
