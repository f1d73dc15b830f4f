"""The in-process (no Ray) path of the derived builders."""

from __future__ import annotations

import json

import cv2

from .conftest import H, T, W, synthetic_image


def test_in_process_builders_match_the_ray_path_contract(tmp_path):
    """use_ray=False runs the same stages: same sample count, kinds and motion scales."""
    import webdataset as wds

    from dataset_builder.derived.config import ImageLayersConfig
    from dataset_builder.derived.pipeline import run_image_layers
    from dataset_builder.io.layout import committed_shards

    image, _ = synthetic_image(H, W, seed=3)
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cfg = ImageLayersConfig.model_validate({"input": {"paths": [str(tmp_path / "imgs")]},
                                            "frames": {"num_frames": T, "height": H, "width": W},
                                            "output": {"dir": str(tmp_path / "out")}})
    summary = run_image_layers(cfg, use_ray=False)
    assert summary["samples_total"] == 1
    (sample,) = wds.WebDataset([str(p) for p in committed_shards(tmp_path / "out")], shardshuffle=False)
    record = json.loads(sample["json"])
    assert record["kind"] == "static" and record["motion_scale"] == 1.0
    assert run_image_layers(cfg, use_ray=False)["samples_written_now"] == 0  # resume


def test_unit_ids_follow_content_not_path_spelling(tmp_path, monkeypatch):
    """The same inputs given by relative and by absolute path resume instead of duplicating."""
    import shutil

    from dataset_builder.derived.config import ImageLayersConfig
    from dataset_builder.derived.image_layers import ImageTask, unit_id_for
    from dataset_builder.derived.pipeline import run_image_layers

    image, _ = synthetic_image(H, W, seed=5)
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    shutil.copy(tmp_path / "imgs" / "a.png", tmp_path / "copy.png")
    assert unit_id_for(ImageTask(kind="image", path=str(tmp_path / "imgs" / "a.png")), "h") == \
        unit_id_for(ImageTask(kind="image", path=str(tmp_path / "copy.png")), "h")
    monkeypatch.chdir(tmp_path)
    frames = {"num_frames": T, "height": H, "width": W}
    out = {"dir": str(tmp_path / "out")}
    first = run_image_layers(ImageLayersConfig.model_validate(
        {"input": {"paths": ["imgs"]}, "frames": frames, "output": out}), use_ray=False)
    again = run_image_layers(ImageLayersConfig.model_validate(
        {"input": {"paths": [str(tmp_path / "imgs")]}, "frames": frames, "output": out}), use_ray=False)
    assert first["samples_written_now"] == 1 and again["samples_written_now"] == 0
    assert again["samples_total"] == 1
