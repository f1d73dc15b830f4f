"""Soft alpha and foreground-colour estimation on synthetic ground truth."""

import cv2
import numpy as np
import pytest

from dataset_builder.ops.alpha import (
    _solve_sym3,
    edge_band,
    estimate_foreground,
    finish_layers,
    guided_filter,
    min_alpha,
    reconcile_layers,
    soft_alpha,
)
from dataset_builder.ops.composite import composite


def _scene(seed=0, size=96):
    """Textured orange object with a soft edge over a textured blue-green background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    dist = np.hypot(yy - size / 2, xx - size / 2.3) - size / 4
    alpha = np.clip(0.5 - dist / 3.0, 0, 1)  # ~3 px soft edge
    tex = lambda s: cv2.GaussianBlur(rng.normal(0, 25, (size, size, 3)).astype(np.float32), (0, 0), s)  # noqa: E731
    fg = np.clip(np.array([220, 120, 40], np.float32) + tex(2), 0, 255)
    bg = np.clip(np.array([40, 150, 170], np.float32) + tex(3), 0, 255)
    a8 = np.round(alpha * 255).astype(np.uint8)
    img = composite(fg.astype(np.uint8), bg.astype(np.uint8), a8)
    return img, a8, fg.astype(np.uint8), bg.astype(np.uint8)


def test_sym3_solve_matches_linalg():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(50, 3, 3)).astype(np.float32)
    s = m @ m.transpose(0, 2, 1) + 0.1 * np.eye(3, dtype=np.float32)
    v = rng.normal(size=(50, 3)).astype(np.float32)
    np.testing.assert_allclose(_solve_sym3(s, v), np.linalg.solve(s, v[..., None])[..., 0], rtol=2e-3, atol=2e-3)


def test_band_limited_guided_filter_equals_full_in_band():
    img, a8, _, _ = _scene()
    hard = (a8 >= 128).astype(np.float32)
    band = edge_band(a8, 3)
    full = guided_filter(img, hard, 4, 1e-4)
    part = guided_filter(img, hard, 4, 1e-4, where=band)
    assert np.abs(full - part)[band].max() < 1e-4


def test_soft_alpha_is_hard_core_plus_thin_band():
    img, a8, _, _ = _scene()
    hard = (a8 >= 128).astype(np.uint8) * 255
    out = soft_alpha(img, hard, band=3, radius=4)
    band = edge_band(hard, 3)
    assert set(np.unique(out[~band])) <= {0, 255}
    assert ((out > 0) & (out < 255) & ~band).sum() == 0
    assert np.array_equal(out[~band], hard[~band])
    # It moves toward the true soft edge: closer to the ground-truth alpha than the hard mask is.
    assert np.abs(out.astype(float) - a8)[band].mean() < np.abs(hard.astype(float) - a8)[band].mean()


@pytest.mark.parametrize("known_bg", [True, False])
def test_estimate_foreground_recovers_object_colour_in_band(known_bg):
    img, a8, fg, bg = _scene()
    band = (a8 > 0) & (a8 < 255)
    est = estimate_foreground(img, a8, bg if known_bg else None)
    w = a8[band].astype(float)[:, None] / 255.0  # weight by visibility: what fg-over-anything shows
    err_naive = (np.abs(img[band].astype(float) - fg[band]) * w).mean()
    err_est = (np.abs(est[band].astype(float) - fg[band]) * w).mean()
    assert err_est < 0.5 * err_naive, (err_est, err_naive)
    # Outside the band the observed colour is kept exactly.
    assert np.array_equal(est[a8 == 255], img[a8 == 255])
    if known_bg:  # with the stored bg, fg over bg gives the clip back in the band
        rec = composite(est, bg, a8)
        mse = ((rec[band].astype(float) - img[band]) ** 2).mean()
        assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 35


def test_estimate_foreground_beats_pymatting_baseline_or_matches_it():
    pymatting = pytest.importorskip("pymatting")
    img, a8, fg, _ = _scene(seed=3)
    band = (a8 > 0) & (a8 < 255)
    ours = estimate_foreground(img, a8)
    ref = pymatting.estimate_foreground_ml(img / 255.0, a8 / 255.0)
    ref = np.clip(np.round(ref * 255), 0, 255)
    e_ours = np.abs(ours[band].astype(float) - fg[band]).mean()
    e_ref = np.abs(ref[band] - fg[band]).mean()
    assert e_ours < 1.25 * e_ref + 1.0, (e_ours, e_ref)


def test_rematte_with_known_background_moves_alpha_to_the_true_edge():
    from dataset_builder.ops.alpha import rematte_with_background

    img, a8, _, bg = _scene(seed=4)
    shrunk = cv2.erode((a8 >= 128).astype(np.uint8), np.ones((5, 5), np.uint8)) * 255  # mask 2 px too small
    start = soft_alpha(img, shrunk, band=3)
    out = rematte_with_background(img, start, bg, band=3)
    region = edge_band(start, 3)
    err = lambda x: np.abs(x.astype(float) - a8)[region].mean()  # noqa: E731
    assert err(out) < 0.5 * err(start), (err(out), err(start))
    assert np.array_equal(out[~region], start[~region])
    # Where fg and bg have the same colour the evidence is void and alpha is kept.
    flat = np.full_like(img, 90)
    assert np.array_equal(rematte_with_background(flat, start, flat, band=3), start)


def _ring_scene(size=96, seed=5):
    """Orange disc whose matte misses its outer 2 px, a contact shadow (x0.5) below it outside the matte,
    a textured bg, and an inpainted bg (the true clean bg in a hole grown 6 px beyond the matte, the
    clip elsewhere) carrying small fill noise and one detached blob of fill error."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - 40, xx - 48)
    true_obj = r <= 18
    bg = np.clip(np.array([60, 140, 170], np.float32)
                 + cv2.GaussianBlur(rng.normal(0, 30, (size, size, 3)).astype(np.float32), (0, 0), 2), 0, 255)
    shadow = (np.abs(xx - 48) <= 16) & (yy > 58) & (yy <= 62)
    scene = bg.copy()
    scene[shadow] *= 0.5
    scene[true_obj] = [220, 120, 40]
    frame = scene.astype(np.uint8)
    matte = ((r <= 16) * 255).astype(np.uint8)
    hole = cv2.dilate((matte > 0).astype(np.uint8), np.ones((13, 13), np.uint8)) > 0
    hole |= shadow
    inpainted = np.where(hole[..., None], np.clip(bg + rng.normal(0, 2, bg.shape), 0, 255), frame).astype(np.uint8)
    near_obj = cv2.dilate(true_obj.astype(np.uint8), np.ones((5, 5))).astype(bool)
    blob = (np.hypot(yy - 40, xx - 72) <= 2) & hole & ~near_obj
    inpainted[blob] = np.clip(inpainted[blob].astype(int) + 60, 0, 255)
    return frame, matte, inpainted, bg.astype(np.uint8), true_obj, shadow, hole, blob


def test_min_alpha_is_the_least_alpha_with_a_foreground_colour_in_range():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (500, 1, 3)).astype(np.uint8)
    bg = rng.integers(0, 256, (500, 1, 3)).astype(np.uint8)
    a = min_alpha(img, bg)[:, 0]
    f = bg[:, 0].astype(float) + (img[:, 0].astype(float) - bg[:, 0]) / np.maximum(a, 1e-6)[:, None]
    assert (f >= -1e-3).all() and (f <= 255 + 1e-3).all()  # feasible at a
    f_less = bg[:, 0].astype(float) + (img[:, 0].astype(float) - bg[:, 0]) / np.maximum(0.9 * a, 1e-6)[:, None]
    moved = a > 0.05
    assert ((f_less[moved] < -1e-3) | (f_less[moved] > 255 + 1e-3)).any(1).all()  # infeasible below it


def test_reconcile_layers_recomposes_the_ring_without_putting_the_object_back():
    frame, matte, inpainted, clean, true_obj, shadow, hole, blob = _ring_scene()
    fg = estimate_foreground(frame, matte, inpainted)
    alpha, fg2, bg2 = reconcile_layers(frame, matte, inpainted, fg, tol=10)
    region = hole & (matte < 255)
    before = composite(fg, inpainted, matte)
    after = composite(fg2, bg2, alpha)

    def psnr(rec):
        mse = ((rec[region].astype(float) - frame[region]) ** 2).mean()
        return 10 * np.log10(255**2 / max(mse, 1e-9))

    assert psnr(before) < 25 < 40 < psnr(after), (psnr(before), psnr(after))
    # the missed object edge and the shadow stay out of the bg (it keeps the clean fill there) ...
    missed = true_obj & (matte == 0)
    assert np.abs(bg2[missed].astype(int) - clean[missed]).max() <= 8
    assert np.abs(bg2[shadow].astype(int) - clean[shadow]).max() <= 8
    assert (alpha[missed] > 200).all() and (alpha[shadow] > 0).all()
    # ... while ring pixels that are background get the clip back, detached fill errors included
    assert np.array_equal(bg2[blob], frame[blob]) and (alpha[blob] == 0).all()
    plain = hole & ~cv2.dilate((true_obj | shadow).astype(np.uint8), np.ones((5, 5))).astype(bool) & ~blob
    assert np.array_equal(bg2[plain], frame[plain]) and (alpha[plain] == 0).all()
    # nothing moves outside the hole or inside the opaque core
    assert np.array_equal(alpha[~hole], matte[~hole]) and np.array_equal(bg2[~hole], inpainted[~hole])
    assert np.array_equal(fg2[matte == 255], frame[matte == 255])


def test_finish_layers_in_the_object_window_matches_the_whole_frame_ops():
    frame, matte, inpainted, *_ = _ring_scene(size=160)
    big = lambda x: np.pad(x, ((0, 64), (0, 96)) + ((0, 0),) * (x.ndim - 2), mode="edge")  # noqa: E731
    frame, matte, inpainted = big(frame), big(matte), big(inpainted)
    alpha, fg, bg = finish_layers(frame, matte, inpainted)
    ref = reconcile_layers(frame, matte, inpainted, estimate_foreground(frame, matte, inpainted))
    assert (np.abs(alpha.astype(int) - ref[0]) <= 2).mean() > 0.999
    assert (np.abs(fg.astype(int) - ref[1]).max(-1) <= 4).mean() > 0.999
    assert np.array_equal(bg, ref[2])


def test_object_coloured_background_beyond_a_thin_edge_goes_back_into_the_bg():
    """A dark-water patch the colour of the object touches it in the inpainting ring. Without a width
    limit reconcile_layers calls all of it a missed edge (opaque alpha, the sample's object grows);
    with ``max_edge_px`` only the first pixel next to the matte may be edge, the rest is background:
    alpha 0 and the clip's pixels in the bg (exact recomposition there)."""
    size = 96
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - 48, xx - 48)
    frame = np.full((size, size, 3), (60, 140, 170), np.uint8)
    disc = r <= 16
    patch = (r > 16) & (r <= 24) & (xx > 52)
    frame[disc] = (220, 120, 40)
    frame[patch] = (200, 110, 40)
    matte = (disc * 255).astype(np.uint8)
    hole = cv2.dilate(disc.astype(np.uint8), np.ones((19, 19), np.uint8)) > 0
    inpainted = np.where(hole[..., None], np.uint8([60, 140, 170]), frame).astype(np.uint8)
    fg = estimate_foreground(frame, matte, inpainted)
    far = patch & (cv2.distanceTransform((~disc).astype(np.uint8), cv2.DIST_L2, 3) > 1.5)
    loose, _, _ = reconcile_layers(frame, matte, inpainted, fg, tol=10)
    assert (loose[far] >= 128).mean() > 0.9
    alpha, fg2, bg2 = reconcile_layers(frame, matte, inpainted, fg, tol=10, max_edge_px=1)
    assert (alpha[far] == 0).all() and np.array_equal(bg2[far], frame[far])
    assert np.array_equal(alpha[disc], matte[disc])


def test_a_shadow_the_colour_of_a_dark_object_stays_out_of_the_bg():
    """DAVIS car-shadow: the shadow under a car is as dark as its underbody, so it is "object-coloured";
    beyond a missed edge's reach (``max_edge_px``) it must still count as a shadow (translucent alpha,
    the bg keeps the clean fill), not go back into the bg as a dark blob that moves with the car."""
    size = 96
    yy, xx = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(1)
    road = np.clip(np.array([92, 96, 104], np.float32) + rng.normal(0, 2, (size, size, 3)), 0, 255)
    body = (np.abs(xx - 48) <= 20) & (yy >= 30) & (yy <= 50)
    shadow = (np.abs(xx - 48) <= 18) & (yy > 50) & (yy <= 58)
    scene = road.copy()
    scene[shadow] *= 0.55  # deep enough to be "object-coloured", within the translucent cap
    scene[body] = (36, 37, 42)
    frame = scene.astype(np.uint8)
    matte = (body * 255).astype(np.uint8)
    hole = cv2.dilate(body.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    hole |= cv2.dilate(shadow.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    inpainted = np.where(hole[..., None], road, frame).astype(np.uint8)
    fg = estimate_foreground(frame, matte, inpainted)
    alpha, fg2, bg2 = reconcile_layers(frame, matte, inpainted, fg, tol=10, max_edge_px=1)
    far = shadow & (cv2.distanceTransform((~body).astype(np.uint8), cv2.DIST_L2, 3) > 2)
    assert far.sum() > 100
    assert np.abs(bg2[far].astype(int) - road[far].astype(int)).max() <= 3  # the bg keeps the clean road
    assert (alpha[far] > 0).all() and (alpha[far] < 128).all()  # a translucent shadow, never object
    rec = composite(fg2, bg2, alpha)
    assert np.abs(rec[far].astype(int) - frame[far]).max() <= 3  # the layers still give the clip back
