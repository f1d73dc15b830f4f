"""Fixtures: layered shards made by the real builders, a tiny random model, tiny configs.

The dataset is what a user gets from ``make shards`` + ``make copypaste`` + ``make image-layers``, in
miniature and without Ray (deterministic, ~10 s): the coarse pipeline (``run_build(use_ray=False)``) on
two synthetic clips with known ground truth, the copy-paste builder on its shards, and the image-layers
builder on one still.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: Training resolution of the tests; the layout resizes the built clips down to it.
H, W = 32, 48
#: Built clips. The CPU segmentation backends find the object at 64x96; at 32x48 they reject every
#: clip of these synthetic videos (measured), so the builders run at 64x96.
SRC_T, SRC_H, SRC_W = 12, 64, 96
#: Samples the builders produce from the inputs below (the fixture fails if they change).
EXPECTED_KINDS = {"coarse": 2, "copypaste": 2, "static": 1}


@dataclass(frozen=True)
class LayeredData:
    videos: list[Path]  # synthetic source videos; ground truth beside each as .npz
    coarse: Path        # dataset_builder.pipeline output
    copypaste: Path     # dataset_builder.derived copy-paste output
    static: Path        # dataset_builder.derived image-layers output

    @property
    def roots(self) -> list[str]:
        return [str(self.coarse), str(self.copypaste), str(self.static)]


def build_layered_data(root: Path) -> LayeredData:
    from dataset_builder.config import BuildConfig
    from dataset_builder.derived.config import CopyPasteConfig, ImageLayersConfig
    from dataset_builder.derived.pipeline import run_copypaste, run_image_layers
    from dataset_builder.pipeline import run_build
    from dataset_builder.samples.synthetic import make_synthetic_clip, write_synthetic_video

    videos = []
    for seed in (0, 1):
        path = root / "videos" / f"synthetic_{seed}.mp4"
        write_synthetic_video(path, seed=seed, num_frames=SRC_T, height=SRC_H, width=SRC_W, num_objects=1,
                              camera_pan=False)
        videos.append(path)
    frames = {"num_frames": SRC_T, "height": SRC_H, "width": SRC_W}
    coarse = BuildConfig.model_validate({
        "clip": {**frames, "frame_stride": 1, "max_clips_per_video": 1},
        "output": {"dir": str(root / "coarse"), "samples_per_shard": 1}})
    summaries = {"coarse": run_build(coarse, [str(v) for v in videos], use_ray=False)}

    still = make_synthetic_clip(seed=2, num_frames=SRC_T, height=SRC_H, width=SRC_W, camera_pan=False)
    (root / "images").mkdir()
    cv2.imwrite(str(root / "images" / "still.png"), cv2.cvtColor(still.frames[SRC_T // 2], cv2.COLOR_RGB2BGR))
    summaries["copypaste"] = run_copypaste(CopyPasteConfig.model_validate({
        # the copy-paste QA gate is for real data; here any coarse fg will do (training plumbing under test)
        "input": {"fg_shards": [str(root / "coarse")], "bg_shards": [str(root / "coarse")],
                  "coarse_qa": {"min_scores": {}, "max_scores": {}}},
        "frames": frames, "output": {"dir": str(root / "copypaste"), "samples_per_shard": 2}}), use_ray=False)
    summaries["static"] = run_image_layers(ImageLayersConfig.model_validate({
        "input": {"paths": [str(root / "images")]},
        "frames": frames, "output": {"dir": str(root / "static"), "samples_per_shard": 2}}), use_ray=False)
    got = {kind: s["samples_total"] for kind, s in summaries.items()}
    if got != EXPECTED_KINDS:
        raise RuntimeError(f"builders produced {got} samples, expected {EXPECTED_KINDS} (see the rejects/ parts "
                           f"files under {root})")
    return LayeredData(videos, root / "coarse", root / "copypaste", root / "static")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on shared busy cores they lose a lot."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def layered_data(tmp_path_factory) -> LayeredData:
    return build_layered_data(tmp_path_factory.mktemp("layered"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from layerflow_train.config import TinyModelConfig
    from layerflow_train.models.tiny import build_tiny_model_dir

    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_model"), TinyModelConfig(), text_len=8)


@pytest.fixture
def make_config(layered_data, tiny_model_dir, tmp_path):
    from layerflow_train.config import TrainConfig

    def make(stage: int = 1, **over):
        data = {"shards": layered_data.roots, "frames_per_layer": 8, "height": H, "width": W,
                "batch_size": 1, "static": "all" if stage == 2 else "kind"}
        data.update(over.pop("data", {}))
        cfg = {
            "stage": stage, "seed": 0, "log_every": 1,
            "model": {"model_dir": str(tiny_model_dir), "text_len_per_layer": 8, "gradient_checkpointing": False,
                      **over.pop("model", {})},
            "data": data,
            "lora": {"motion_rank": 4, "content_rank": 4, "alpha": 1.0, "every_n_blocks": 1, "block_offset": 0,
                     **over.pop("lora", {})},
            "trainable": {"every_n_blocks": 1, "block_offset": 0, **over.pop("trainable", {})},
            "optim": {"lr": {1: 1e-4, 2: 1e-3, 3: 5e-3}[stage], "max_steps": 3, "warmup_steps": 0,
                      **over.pop("optim", {})},
            "checkpoint": {"output_dir": str(tmp_path / f"out{stage}"), "every_n_steps": 100,
                           **over.pop("checkpoint", {})},
            "ray": {"num_workers": 1, "use_gpu": False, **over.pop("ray", {})},
            "tracking": {"tensorboard": False, **over.pop("tracking", {})},
        }
        cfg.update(over)
        return TrainConfig.model_validate(cfg)

    return make
