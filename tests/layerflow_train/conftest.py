"""Fixtures: layered shards written like the pipeline writes them, a tiny random model, tiny configs."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

H, W, T = 32, 48, 12


def synthetic_layers(seed: int, num_frames: int = T, static: bool = False):
    """A textured panning background and a moving square foreground (uint8 arrays)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W + num_frames * 2]
    base = np.stack([(xx * 5 + yy * 3 + 60 * c + seed * 17) % 256 for c in range(3)], -1).astype(np.uint8)
    color = rng.integers(40, 255, 3)
    fg = np.zeros((num_frames, H, W, 3), np.uint8)
    alpha = np.zeros((num_frames, H, W), np.uint8)
    bg = np.zeros_like(fg)
    for t in range(num_frames):
        tt = 0 if static else t
        bg[t] = base[:, 2 * tt:2 * tt + W]
        y0, x0 = 8 + (tt % 4), 10 + 2 * tt
        alpha[t, y0:y0 + 12, x0:x0 + 14] = 255
        fg[t][alpha[t] > 0] = color
    a = alpha[..., None].astype(np.float32) / 255
    blend = (a * fg + (1 - a) * bg).round().astype(np.uint8)
    return fg, alpha, bg, blend


def write_layered_shards(out_dir, specs, samples_per_shard: int = 2):
    """specs: list of (kind, motion_scale). Writes via ShardWriter exactly as the builder does."""
    from dataset_builder.io.shard_writer import SampleToWrite, ShardWriter
    from dataset_builder.io.video import encode_alpha, encode_rgb
    from schemas import Captions, LayeredSample, Provenance

    with ShardWriter(out_dir, samples_per_shard=samples_per_shard) as writer:
        for i, (kind, motion) in enumerate(specs):
            fg, alpha, bg, blend = synthetic_layers(i, static=(kind == "static"))
            record = LayeredSample(
                key=f"clip{i:03d}_o0", clip_id=f"clip{i:03d}", object_id=0, kind=kind, label="square",
                num_frames=T, height=H, width=W, fps=8.0, motion_scale=motion,
                captions=Captions(fg=f"a square number {i}", bg="a striped wall", blend=f"a square on a wall {i}"),
                provenance=Provenance(source_uri=f"synthetic://{i}", start_frame=0, config_hash="test"))
            members = {"fg.mp4": encode_rgb(fg, 8.0), "alpha.mkv": encode_alpha(alpha, 8.0),
                       "bg.mp4": encode_rgb(bg, 8.0), "blend.mp4": encode_rgb(blend, 8.0)}
            writer.add_clip(record.clip_id, [SampleToWrite(record, members)], [])
    return out_dir


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on shared busy cores they lose a lot."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SPECS = [("coarse", None), ("copypaste", 0.0), ("static", 1.0), ("coarse", None)]


@pytest.fixture(scope="session")
def layered_shards(tmp_path_factory):
    """Dataset root with committed shards (swap for ``dataset_builder.pipeline`` output when available)."""
    return write_layered_shards(tmp_path_factory.mktemp("layered"), SPECS)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from layerflow_train.config import TinyModelConfig
    from layerflow_train.models.tiny import build_tiny_model_dir

    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_model"), TinyModelConfig(), text_len=8)


@pytest.fixture
def make_config(layered_shards, tiny_model_dir, tmp_path):
    from layerflow_train.config import TrainConfig

    def make(stage: int = 1, **over):
        data = {"shards": [str(layered_shards)], "frames_per_layer": 8, "height": H, "width": W,
                "batch_size": 1, "static": "all" if stage == 2 else "kind"}
        data.update(over.pop("data", {}))
        cfg = {
            "stage": stage, "seed": 0, "log_every": 1,
            "model": {"model_dir": str(tiny_model_dir), "text_len_per_layer": 8},
            "data": data,
            "lora": {"rank": 4, "alpha": 4.0, "every_n_blocks": 1, **over.pop("lora", {})},
            "optim": {"lr": {1: 1e-4, 2: 1e-3, 3: 5e-3}[stage], "max_steps": 3, "warmup_steps": 0,
                      **over.pop("optim", {})},
            "checkpoint": {"output_dir": str(tmp_path / f"out{stage}"), "every_n_steps": 100,
                           **over.pop("checkpoint", {})},
            "ray": {"num_workers": 1, "use_gpu": False},
        }
        cfg.update(over)
        return TrainConfig.model_validate(cfg)

    return make
