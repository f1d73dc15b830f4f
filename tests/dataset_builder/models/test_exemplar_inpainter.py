"""Exemplar-based single-image fill: continues the texture into the hole (diffusion fills smear it flat),
never touches known pixels, removes the object's colour."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dataset_builder.config import BackendSpec
from dataset_builder.models.cpu.exemplar_inpainter import ExemplarInpainter, exemplar_fill, exemplar_offsets
from dataset_builder.models.registry import BackendKind, build_backend
from dataset_builder.samples.synthetic import make_synthetic_clip


def texture_energy(image: np.ndarray, mask: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F))[mask].mean())


@pytest.fixture(scope="module")
def scene():
    clip = make_synthetic_clip(seed=4, num_frames=1, height=120, width=180, camera_pan=False)
    hole = cv2.dilate((clip.alpha[0] > 0).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    return clip, hole


def test_fill_keeps_texture_where_telea_smears(scene):
    clip, hole = scene
    image, bg = clip.frames[0], clip.bg[0]
    out = exemplar_fill(image, hole, work_max_side=128)
    inner = cv2.erode(hole.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    truth = texture_energy(bg, inner)
    telea = cv2.inpaint(image, hole.astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)
    assert texture_energy(telea, inner) < 0.5 * truth  # the smear this backend exists to avoid
    assert texture_energy(out, inner) > 0.7 * truth
    assert np.array_equal(out[~hole], image[~hole])
    object_colour = clip.fg[0][clip.alpha[0] > 250].mean(0)
    assert np.abs(out[inner].mean(0) - object_colour).sum() > np.abs(out[inner].mean(0) - bg[inner].mean(0)).sum()
    assert np.abs(out.astype(int) - bg)[hole].mean() < 35  # plausible: close to the true background's colours


def test_offsets_point_to_known_pixels(scene):
    clip, hole = scene
    small = cv2.resize(clip.frames[0], (90, 60), interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole.astype(np.uint8), (90, 60), interpolation=cv2.INTER_AREA) > 0
    filled, offsets = exemplar_offsets(small, small_hole, patch=7)
    ys, xs = np.nonzero(small_hole)
    sy, sx = ys + offsets[ys, xs, 0], xs + offsets[ys, xs, 1]
    assert not small_hole[sy, sx].any()  # every filled pixel was copied from outside the hole
    assert np.array_equal(filled[ys, xs], small[sy, sx])
    assert not offsets[~small_hole].any()


def test_backend_from_registry_fills_each_frame(scene):
    clip, hole = scene
    backend = build_backend(BackendKind.INPAINTER, BackendSpec(name="exemplar", options={"work_max_side": 96}))
    assert isinstance(backend, ExemplarInpainter)
    frames = np.stack([clip.frames[0], clip.frames[0]])
    out = backend.inpaint(frames, np.stack([clip.alpha[0], np.zeros_like(clip.alpha[0])]))
    assert out.shape == frames.shape and np.array_equal(out[1], frames[1])  # empty mask: untouched
    with pytest.raises(ValueError, match="disagree"):
        backend.inpaint(frames, clip.alpha[:1])
    with pytest.raises(ValueError, match="invalid options"):
        build_backend(BackendKind.INPAINTER, BackendSpec(name="exemplar", options={"nope": 1}))


def test_video_inpainter_paints_patches_on_texture_and_keeps_the_smooth_fill_on_structure():
    """The cpu inpainter's painter for never-seen pixels: exemplar patches where the hole sits in a
    texture, the spatial (Telea) fill where large-scale structure surrounds it."""
    from dataset_builder.config import BackendSpec
    from dataset_builder.models.cpu.inpainter import TemporalSpatialInpainter
    from dataset_builder.ops.inpaint import spatial_fill

    rng = np.random.default_rng(0)
    hole = np.zeros((80, 120), bool)
    hole[30:50, 50:70] = True
    gravel = rng.integers(90, 170, (80, 120, 3)).astype(np.uint8)
    room = np.full((80, 120, 3), 230, np.uint8)
    room[:40] = 30
    paint = TemporalSpatialInpainter(BackendSpec(name="cpu"))._paint
    assert not np.array_equal(paint(gravel, hole), spatial_fill(gravel, hole))
    np.testing.assert_array_equal(paint(room, hole), spatial_fill(room, hole))
    filled = paint(gravel, hole)[hole].astype(float)
    assert filled.std() > 0.5 * gravel[~hole].astype(float).std()  # texture continued, not a blur
