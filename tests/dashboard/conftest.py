"""A tiny real dataset (2 shards, 3 samples, 3 rejects) written with the project's own writer."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dataset_builder.io.shard_writer import SampleToWrite, ShardWriter
from dataset_builder.io.video import encode_alpha, encode_rgb
from schemas import Captions, LayeredSample, Provenance, RejectRecord

os.environ.setdefault("HF_HUB_OFFLINE", "1")
T, H, W, FPS = 8, 16, 32, 8.0

#: key -> (label, kind, tags, scores, blend caption)
SAMPLES = {
    "clipa_00": ("dog", "coarse", ["animal", "outdoor"], {"iou": 0.9, "aesthetic": 0.25}, "A dog runs on grass."),
    "clipa_01": ("ball", "coarse", ["toy"], {"iou": 0.4, "aesthetic": 0.25}, "A red ball bounces."),
    "clipb_00": ("dog", "copypaste", ["animal"], {"iou": 0.75}, "A brown dog sits by a river."),
}
REJECTS = [("clipc", "filter_foreground", "too_small"), ("clipd", "filter_foreground", "too_small"),
           ("clipe", "inpaint", "oom")]


def _layers(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bg = np.broadcast_to(rng.integers(40, 200, (1, H, W, 3), dtype=np.uint8), (T, H, W, 3)).copy()
    alpha = np.zeros((T, H, W), np.uint8)
    fg = np.zeros((T, H, W, 3), np.uint8)
    for t in range(T):
        alpha[t, 4:12, 2 + 2 * t:10 + 2 * t] = 255
        fg[t][alpha[t] > 0] = (230, 40, 30)
    a = alpha[..., None].astype(np.float32) / 255
    blend = (fg * a + bg * (1 - a)).astype(np.uint8)
    return fg, alpha, bg, blend


REJECT_F = RejectRecord(source_uri="/videos/clipf.mp4", clip_id="clipf", stage="inpaint", reason="oom")


def _sample(i: int, key: str, label: str, kind: str, tags: list, scores: dict, blend_cap: str) -> SampleToWrite:
    clip_id = key.split("_")[0]
    fg, alpha, bg, blend = _layers(i)
    record = LayeredSample(
        key=key, clip_id=clip_id, object_id=int(key[-1]), kind=kind, label=label, num_frames=T, height=H,
        width=W, fps=FPS, captions=Captions(fg=f"a {label}", bg="a plain wall", blend=blend_cap), tags=tags,
        scores=scores, provenance=Provenance(source_uri=f"/videos/{clip_id}.mp4", start_frame=10 * i,
                                             config_hash="cafe"))
    members = {"fg.mp4": encode_rgb(fg, FPS), "alpha.mkv": encode_alpha(alpha, FPS),
               "bg.mp4": encode_rgb(bg, FPS), "blend.mp4": encode_rgb(blend, FPS)}
    return SampleToWrite(record, members)


def write_samples_for(clip_id: str) -> list[SampleToWrite]:
    """One sample for ``clip_id`` (e.g. a rejected clip that succeeds when retried)."""
    return [_sample(7, f"{clip_id}_00", "cat", "coarse", ["animal"], {"iou": 0.8}, "A cat.")]


def write_tiny_dataset(out) -> dict:
    writer = ShardWriter(out, samples_per_shard=2)
    clips: dict[str, list[SampleToWrite]] = {}
    for i, (key, spec) in enumerate(SAMPLES.items()):
        clips.setdefault(key.split("_")[0], []).append(_sample(i, key, *spec))
    for clip_id, samples in clips.items():
        writer.add_clip(clip_id, samples, [])
    for clip_id, stage, reason in REJECTS:
        writer.add_clip(clip_id, [], [RejectRecord(source_uri=f"/videos/{clip_id}.mp4", clip_id=clip_id,
                                                   stage=stage, reason=reason, detail=f"{reason} in {clip_id}")])
    return writer.close()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "coarse"
    write_tiny_dataset(out)
    return out
