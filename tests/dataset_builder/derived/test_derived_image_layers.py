"""Static layered samples from single images (matting + inpainting) and MULAN-style folders (no Ray)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from .conftest import H, W, synthetic_image, write_mulan

from dataset_builder.derived import image_layers as il
from dataset_builder.derived.common import UnitState
from dataset_builder.derived.config import ImageLayersConfig
from dataset_builder.ops.composite import composite


def small_cfg(**overrides) -> ImageLayersConfig:
    data = {"frames": {"num_frames": 4, "height": H, "width": W}, "matting": {"working_size": 96}}
    for key, value in overrides.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return ImageLayersConfig.model_validate(data)


def run_stage(cfg: ImageLayersConfig, task: il.ImageTask) -> tuple[UnitState, dict]:
    stage = il.ImageLayersStage(cfg.model_dump(mode="json"))
    meta = UnitState(unit_id=il.unit_id_for(task, "h"), source_uri=task.path, task=task.model_dump())
    out = stage({"meta": np.array([meta.model_dump_json()], dtype=object)})
    return UnitState.model_validate_json(out["meta"][0]), {k: v[0] for k, v in out.items() if k != "meta"}


def test_discovery_finds_images_and_layer_folders(tmp_path):
    write_mulan(tmp_path / "scenes" / "a")
    (tmp_path / "imgs").mkdir()
    for name in ("x.jpg", "y.PNG", "notes.txt"):
        (tmp_path / "imgs" / name).write_bytes(b"...")
    tasks = il.discover_inputs([str(tmp_path)], [".jpg", ".png"])
    assert [(t.kind, t.path[len(str(tmp_path)) + 1:]) for t in tasks] == [
        ("image", "imgs/x.jpg"), ("image", "imgs/y.PNG"), ("layered", "scenes/a")]
    assert il.discover_inputs([str(tmp_path / "imgs" / "*.jpg")], [".jpg"])[0].path.endswith("x.jpg")
    assert len(il.discover_inputs([str(tmp_path)], [".jpg", ".png"], limit=1)) == 1


def test_mulan_single_instance_uses_given_alpha_exactly(tmp_path):
    layers = write_mulan(tmp_path / "one", instances=1)
    state, row = run_stage(small_cfg(), il.ImageTask(kind="layered", path=str(tmp_path / "one")))
    assert not state.rejected and len(state.samples) == 1
    rec = state.samples[0]
    assert rec.kind == "static" and rec.motion_scale == 1.0 and rec.num_frames == 4
    assert rec.captions.fg == "a cube" and rec.captions.bg == "a meadow" and rec.label == "cube"
    assert row["alpha"].shape == (1, 1, H, W)  # one frame, repeated at encode time
    assert np.array_equal(row["alpha"][0, 0], layers["layer_1"][..., 3])
    assert np.array_equal(row["bg"][0, 0], layers["background"])
    assert np.array_equal(row["blend"][0, 0], composite(layers["layer_1"][..., :3], layers["background"],
                                                        layers["layer_1"][..., 3]))


def test_mulan_each_and_union_modes(tmp_path):
    layers = write_mulan(tmp_path / "two", instances=2)
    l1, l2, bg = layers["layer_1"], layers["layer_2"], layers["background"]
    full = il.composite_over(bg, [l1, l2])
    state, row = run_stage(small_cfg(), il.ImageTask(kind="layered", path=str(tmp_path / "two")))
    assert [s.object_id for s in state.samples] == [0, 1] and [s.label for s in state.samples] == ["cube", "ball"]
    # top instance: alpha as given; its bg is the scene without it
    assert np.array_equal(row["alpha"][1, 0], l2[..., 3])
    assert np.array_equal(row["bg"][1, 0], np.rint(il.composite_over(bg, [l1])).astype(np.uint8))
    # lower instance: alpha occluded by the one above
    expected = np.rint(l1[..., 3] * (1 - l2[..., 3] / 255.0)).astype(np.uint8)
    assert np.abs(row["alpha"][0, 0].astype(int) - expected).max() <= 1
    # every sample recomposes the full image: up to rounding where the layer above is opaque or absent;
    # where soft edges overlap, a straight-alpha uint8 fg can only approximate it (colour clipping)
    crisp = (l2[..., 3] == 0) | (l2[..., 3] == 255)
    assert (~crisp).any() and ((l1[..., 3] > 0) & ~crisp).any()
    for k in range(2):
        err = np.abs(row["blend"][k, 0].astype(float) - full).max(-1)
        assert err[crisp].max() <= 2.5 and err.mean() < 0.5

    state, row = run_stage(small_cfg(layers={"instance_mode": "union"}),
                           il.ImageTask(kind="layered", path=str(tmp_path / "two")))
    assert len(state.samples) == 1 and state.samples[0].captions.fg == "a cube and a ball"
    assert np.array_equal(row["bg"][0, 0], bg)
    assert np.abs(row["blend"][0, 0].astype(float) - full).max() <= 2.5
    union = 1 - (1 - l1[..., 3] / 255.0) * (1 - l2[..., 3] / 255.0)
    assert np.abs(row["alpha"][0, 0] - union * 255).max() <= 0.5


def test_mulan_resizes_layers_to_the_configured_size(tmp_path):
    write_mulan(tmp_path / "big", instances=1, h=2 * H, w=3 * W)
    state, row = run_stage(small_cfg(), il.ImageTask(kind="layered", path=str(tmp_path / "big")))
    assert row["alpha"].shape == (1, 1, H, W) and row["fg"].shape == (1, 1, H, W, 3)
    assert 0.03 < state.samples[0].scores["alpha_coverage"] < 0.3


@pytest.mark.parametrize("factor", [3, 0.5])
def test_mulan_resize_does_not_bleed_transparent_colour_into_edges(tmp_path, factor):
    # A white instance whose transparent pixels are black, over a white background: the resized sample
    # must still composite to white. Straight-colour resampling gives soft edge pixels a dark colour.
    h, w = round(H * factor), round(W * factor)
    folder = tmp_path / "white"
    folder.mkdir()
    cv2.imwrite(str(folder / "background.png"), np.full((h, w, 3), 250, np.uint8))
    layer = np.zeros((h, w, 4), np.uint8)
    layer[h // 4 + 1:3 * h // 4, w // 4 + 1:3 * w // 4] = (250, 250, 250, 255)  # edges off the pixel grid
    cv2.imwrite(str(folder / "layer_1.png"), layer)
    state, row = run_stage(small_cfg(), il.ImageTask(kind="layered", path=str(folder)))
    assert not state.rejected and row["alpha"].shape == (1, 1, H, W)
    alpha, fg = row["alpha"][0, 0], row["fg"][0, 0]
    assert ((alpha > 0) & (alpha < 255)).any()  # resampling made soft edges
    assert (fg[alpha > 0] >= 249).all()
    assert np.abs(row["blend"][0, 0].astype(int) - 250).max() <= 1


def test_single_image_is_matted_and_inpainted(tmp_path):
    image, gt = synthetic_image(H * 2, W * 2, seed=1, center=(0.5, 0.48))
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), image[..., ::-1])
    state, row = run_stage(small_cfg(captions={"label": "vase"}, captioner=None),
                           il.ImageTask(kind="image", path=str(path)))
    assert not state.rejected, state.rejects
    rec = state.samples[0]
    assert rec.captions.fg == "the main vase of the image" and rec.provenance.backends["inpaint"]
    assert rec.provenance.source_sha1 and rec.tags == ["static", "matted"]
    alpha = row["alpha"][0, 0]
    gt_small = cv2.resize(gt, (W, H), interpolation=cv2.INTER_AREA)
    inter, union = ((alpha > 127) & (gt_small > 127)).sum(), ((alpha > 127) | (gt_small > 127)).sum()
    assert inter / union > 0.85
    bg = row["bg"][0, 0].astype(int)
    inside = gt_small > 250
    red = bg[..., 0] - bg[..., 1]
    assert red[inside].mean() < 60  # the red object is gone from the background
    assert rec.scores["recompose_psnr"] > 25  # fg*a + bg*(1-a) reproduces the photo


def test_unreadable_and_objectless_inputs_are_rejected(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    state, row = run_stage(small_cfg(), il.ImageTask(kind="image", path=str(bad)))
    assert state.rejected and not state.samples and row["fg"].size == 0
    assert (state.rejects[0].stage, state.rejects[0].reason) == ("image_layers", "unreadable")

    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.full((H, W, 3), 128, np.uint8))
    state, _ = run_stage(small_cfg(), il.ImageTask(kind="image", path=str(flat)))
    assert state.rejected and state.rejects[0].reason in {"no_object", "object_too_large", "uncertain_saliency"}

    folder = tmp_path / "mulan_bad"
    write_mulan(folder, instances=1)
    cv2.imwrite(str(folder / "layer_2.png"), np.zeros((5, 5, 4), np.uint8))
    state, _ = run_stage(small_cfg(), il.ImageTask(kind="layered", path=str(folder)))
    assert state.rejected and state.rejects[0].reason == "layer_size_mismatch"


def test_cv2_fallback_inpainter_removes_the_hole():
    frame = np.full((1, 32, 32, 3), 90, np.uint8)
    frame[0, 10:20, 10:20] = 250
    mask = np.zeros((1, 32, 32), np.uint8)
    mask[0, 10:20, 10:20] = 255
    out = il.Cv2TeleaInpaintFallback().inpaint(frame, mask)
    assert out.shape == frame.shape and np.abs(out[0, 10:20, 10:20].astype(int) - 90).max() <= 2


@pytest.mark.parametrize("mode", ["each", "union"])
def test_tiny_instances_are_skipped_with_a_reject(tmp_path, mode):
    write_mulan(tmp_path / "m", instances=1)
    cfg = small_cfg(layers={"instance_mode": mode, "min_area": 0.9})
    state, _ = run_stage(cfg, il.ImageTask(kind="layered", path=str(tmp_path / "m")))
    assert state.rejected and not state.samples and state.rejects[0].reason == "instance_too_small"
