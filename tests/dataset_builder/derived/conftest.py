"""Synthetic inputs with known layers: coarse shards (moving soft disc over distinct backgrounds),
single images with a known alpha, and MULAN-style layer folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset_builder.io.shard_writer import SampleToWrite, ShardWriter
from dataset_builder.io.video import encode_alpha, encode_rgb
from schemas import Captions, LayeredSample, Provenance

T, H, W = 8, 64, 96


def smooth_background(h: int, w: int, seed: int, t: int = 1) -> np.ndarray:
    """(t, h, w, 3) uint8 low-frequency colour field drifting slowly (codec friendly)."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(40, 215, (4, 6, 3)).astype(np.float32)
    base = cv2.resize(low, (w + t, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.stack([base[:, i:i + w] for i in range(t)]), 0, 255).astype(np.uint8)


def soft_ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float, blur: float = 1.2) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    hard = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.float32)
    return np.rint(cv2.GaussianBlur(hard, (0, 0), blur) * 255).astype(np.uint8)


def synthetic_image(h: int, w: int, seed: int, center=(0.5, 0.5)) -> tuple[np.ndarray, np.ndarray]:
    """A saturated textured ellipse over a smooth background: (image uint8 RGB, ground-truth alpha)."""
    rng = np.random.default_rng(seed)
    bg = smooth_background(h, w, seed)[0].astype(np.float32) * np.array([0.6, 1.0, 0.8], np.float32)
    gt = soft_ellipse(h, w, center[0] * h, center[1] * w, 0.28 * h, 0.18 * w, blur=1.5)
    fg = np.array([220, 60, 40], np.float32) + rng.normal(0, 12, (h, w, 3)).astype(np.float32)
    a = gt.astype(np.float32)[..., None] / 255
    return np.clip(np.rint(fg * a + bg * (1 - a)), 0, 255).astype(np.uint8), gt


def coarse_sample(index: int, source: int, object_id: int = 0) -> tuple[SampleToWrite, dict[str, np.ndarray]]:
    """One coarse sample of ``source`` video: a disc moving right over a source-specific background."""
    bg = smooth_background(H, W, seed=100 + source, t=T)
    alpha = np.stack([soft_ellipse(H, W, 30 + 4 * object_id, 25 + 3 * t + 20 * object_id, 14, 10) for t in range(T)])
    colour = np.array([(230, 40, 40), (40, 200, 60), (50, 80, 230), (220, 200, 40)][index % 4], np.uint8)
    fg = np.where(alpha[..., None] > 0, colour, 0).astype(np.uint8)
    a = alpha.astype(np.float32)[..., None] / 255
    blend = np.rint(fg * a + bg * (1 - a)).astype(np.uint8)
    key = f"coarse{index:03d}_{object_id}"
    record = LayeredSample(
        key=key, clip_id=f"clip{index:03d}", object_id=object_id, label=f"thing{index}", num_frames=T, height=H,
        width=W, fps=8.0, captions=Captions(fg=f"A red thing {index}.", bg=f"A quiet field number {source}.",
                                            blend=f"thing {index} in field {source}"),
        provenance=Provenance(source_uri=f"/videos/source{source}.mp4", start_frame=0, config_hash="test"),
    )
    members = {"fg.mp4": encode_rgb(fg, 8.0), "alpha.mkv": encode_alpha(alpha, 8.0),
               "bg.mp4": encode_rgb(bg, 8.0), "blend.mp4": encode_rgb(blend, 8.0)}
    return SampleToWrite(record, members), {"fg": fg, "alpha": alpha, "bg": bg}


@pytest.fixture(scope="session")
def coarse_dir(tmp_path_factory) -> Path:
    """4 clips from 3 source videos (clips 0 and 1 share source 0, clip 1 has two objects)."""
    out = tmp_path_factory.mktemp("coarse")
    with ShardWriter(out, samples_per_shard=3) as writer:
        writer.add_clip("clip000", [coarse_sample(0, 0)[0]], [])
        writer.add_clip("clip001", [coarse_sample(1, 0, 0)[0], coarse_sample(1, 0, 1)[0]], [])
        writer.add_clip("clip002", [coarse_sample(2, 1)[0]], [])
        writer.add_clip("clip003", [coarse_sample(3, 2)[0]], [])
    return out


def write_mulan(folder: Path, seed: int = 0, instances: int = 2, h: int = H, w: int = W) -> dict[str, np.ndarray]:
    """background.png + layer_1.png.. (RGBA, bottom to top) + captions.json; returns the layers."""
    folder.mkdir(parents=True, exist_ok=True)
    bg = smooth_background(h, w, seed)[0]
    cv2.imwrite(str(folder / "background.png"), bg[..., ::-1])
    layers = {"background": bg}
    rng = np.random.default_rng(seed)
    for k in range(1, instances + 1):
        alpha = soft_ellipse(h, w, h * (0.3 + 0.2 * k), w * (0.25 + 0.25 * k), 0.2 * h, 0.15 * w)
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        rgba = np.dstack([rgb, alpha])
        cv2.imwrite(str(folder / f"layer_{k}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
        layers[f"layer_{k}"] = rgba
    (folder / "captions.json").write_text(
        '{"bg": "a meadow", "blend": "two things on a meadow", "fg": {"layer_1": "a cube", "layer_2": "a ball"},'
        ' "label": {"layer_1": "cube", "layer_2": "ball"}}')
    return layers
