"""Flow-guided background propagation on synthetic ground truth (parallax that no homography explains)."""

import cv2
import numpy as np

from dataset_builder.ops.inpaint import complete_flow, dilate_masks, flow_fill, temporal_fill
from dataset_builder.ops.motion import cumulative_homographies, pairwise_homographies

T, H, W = 10, 96, 160


def _parallax_clip():
    """Top half of the scene slides 1 px/frame, bottom half 4 px/frame (two depths, hand-held camera),
    a flat box crosses in front; returns frames, true bg, object mask."""
    rng = np.random.default_rng(7)
    canvas = cv2.GaussianBlur(rng.integers(0, 256, (H, W + 60, 3), dtype=np.uint8), (0, 0), 3.0)
    canvas = cv2.normalize(canvas, None, 0, 255, cv2.NORM_MINMAX)
    bg = np.empty((T, H, W, 3), np.uint8)
    for t in range(T):
        bg[t, : H // 2] = canvas[: H // 2, t * 1: t * 1 + W]
        bg[t, H // 2:] = canvas[H // 2:, t * 4: t * 4 + W]
    frames, masks = bg.copy(), np.zeros((T, H, W), np.uint8)
    for t in range(T):
        x0 = 20 + 9 * t
        masks[t, 30:70, x0: x0 + 30] = 255
        frames[t, 30:70, x0: x0 + 30] = (230, 40, 40)
    return frames, bg, masks


def _psnr(a, b, region):
    mse = ((a[region].astype(float) - b[region]) ** 2).mean()
    return 10 * np.log10(255**2 / max(mse, 1e-9))


def test_completed_flow_follows_the_camera_inside_the_hole():
    flow = np.zeros((40, 60, 2), np.float32)
    base = np.full_like(flow, 2.0)  # the camera moves 2 px; the object inside the hole moves -5
    flow[:] = 2.0
    hole = np.zeros((40, 60), bool)
    hole[10:30, 20:40] = True
    flow[hole] = -5.0
    out = complete_flow(flow, hole, base)
    assert np.allclose(out[hole], 2.0, atol=1e-4) and np.allclose(out[~hole], flow[~hole])


def test_flow_fill_recovers_parallax_background_better_than_homographies():
    frames, bg, masks = _parallax_clip()
    holes = dilate_masks(masks, 3)
    cum = cumulative_homographies(pairwise_homographies(frames)[0])
    by_flow, unseen_f = flow_fill(frames, holes, cum, max_side=160)
    by_hom, _ = temporal_fill(frames, holes, cum)
    inner = holes.copy()
    inner[:, :, :8] = inner[:, :, -8:] = False  # ignore pixels that leave the frame
    seen = inner & ~unseen_f
    assert seen.sum() > 0.8 * inner.sum()
    p_flow, p_hom = _psnr(by_flow, bg, seen), _psnr(by_hom, bg, seen)
    assert p_flow > 24 and p_flow > p_hom + 3, (p_flow, p_hom)
    assert np.array_equal(by_flow[~holes], frames[~holes])  # nothing outside the hole changes


def test_flow_fill_leaves_never_seen_pixels_unseen():
    frames, _, _ = _parallax_clip()
    holes = np.zeros((T, H, W), bool)
    holes[:, 40:60, 70:90] = True  # the same spot in every frame, static camera part: never visible
    frames[:, 40:60, 70:90] = 0
    still = np.repeat(frames[:1], T, axis=0)
    cum = cumulative_homographies(pairwise_homographies(still)[0])
    _, unseen = flow_fill(still, holes, cum, max_side=160)
    assert unseen[:, 45:55, 75:85].all()


def test_shadow_dilation_grows_the_hole_downward_only():
    masks = np.zeros((1, 100, 50), np.uint8)
    masks[0, 20:60, 20:30] = 255
    hole = dilate_masks(masks, 0, shadow=0.25)[0]
    assert hole[60:70, 25].all() and not hole[71:, 25].any() and not hole[:20, 25].any()
    assert not hole[40, 31:].any()


def test_point_sampling_handles_more_points_than_remap_rows():
    from dataset_builder.ops.inpaint import _sample

    img = np.arange(300 * 200, dtype=np.float32).reshape(300, 200)
    ys, xs = np.mgrid[0:300, 0:200]
    pts = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)  # 60000 > 32767
    assert np.array_equal(_sample(img, pts), img.ravel())


def test_median_of_first_matches_nanmedian():
    from dataset_builder.ops.inpaint import median_of_first

    rng = np.random.default_rng(0)
    cands = rng.integers(0, 256, (5, 300, 3)).astype(np.float32)
    count = rng.integers(1, 6, 300)
    padded = np.where(np.arange(5)[:, None, None] < count[None, :, None], cands, np.nan)
    np.testing.assert_allclose(median_of_first(cands, count), np.nanmedian(padded, axis=0))


def test_a_frame_whose_mask_missed_the_object_lends_it_to_no_other_frame():
    """Static camera, a red box moving 2 px a frame; frame 5's mask missed the box's right half. Without
    ``source_reach`` the fills of the other frames borrow it there (a red ghost in their bg); with the
    neighbours' holes excluded as sources they do not."""
    from dataset_builder.ops.inpaint import inpaint_video

    rng = np.random.default_rng(3)
    bg = cv2.GaussianBlur(rng.integers(60, 200, (H, W, 3), dtype=np.uint8), (0, 0), 2.0)
    frames, masks = np.repeat(bg[None], T, 0), np.zeros((T, H, W), np.uint8)
    for t in range(T):
        x0 = 50 + 2 * t
        frames[t, 30:70, x0: x0 + 30] = (230, 40, 40)
        masks[t, 30:70, x0: x0 + (15 if t == 5 else 30)] = 255
    cum = np.repeat(np.eye(3)[None], T, 0)

    def ghost(out):  # red pixels in the bg of every frame but the broken one
        red = (out[..., 0] > 200) & (out[..., 1] < 80) & (out[..., 2] < 80)
        return int(np.delete(red, 5, axis=0).sum())

    plain, _ = inpaint_video(frames, masks, cum, dilate=2, flow_max_side=160)
    reach, _ = inpaint_video(frames, masks, cum, dilate=2, flow_max_side=160, source_reach=1)
    assert ghost(plain) > 50 and ghost(reach) == 0, (ghost(plain), ghost(reach))


def _pan_with_fixed_occluder(t=6, h=60, w=80, shift=3):
    """A camera pans over a textured scene; an occluder hides the same scene patch in every frame, so
    no frame ever sees it. cum maps frame i to frame 0 (scene x = frame x + shift * i)."""
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 255, (h, w + shift * t, 3), dtype=np.uint8)
    frames = np.stack([scene[:, shift * i:shift * i + w] for i in range(t)])
    holes = np.zeros((t, h, w), bool)
    for i in range(t):
        x0 = 40 - shift * i  # scene x 40..55
        holes[i, 20:40, x0:x0 + 16] = True
    cum = np.stack([np.array([[1, 0, shift * i], [0, 1, 0], [0, 0, 1]], np.float64) for i in range(t)])
    return frames, holes, cum, shift


def test_reference_fill_paints_once_and_keeps_the_fill_in_place_in_the_scene():
    from dataset_builder.ops.inpaint import reference_fill

    frames, holes, cum, shift = _pan_with_fixed_occluder()
    calls = []

    def painter(frame, hole):  # a random texture: only a carried fill can agree between frames
        calls.append(int(hole.sum()))
        out = frame.copy()
        out[hole] = np.random.default_rng(len(calls)).integers(0, 255, (int(hole.sum()), 3))
        return out

    out, unseen = reference_fill(frames, holes, cum, painter, source_holes=holes)
    assert len(calls) == 1 and not unseen.any()
    first = out[0, 20:40, 40:56]
    for i in range(1, len(frames)):
        x0 = 40 - shift * i
        np.testing.assert_array_equal(out[i, 20:40, x0:x0 + 16], first)  # same scene point, same colour
    np.testing.assert_array_equal(out[~holes], frames[~holes])  # nothing outside the holes changes


def test_inpaint_video_paints_what_no_frame_saw_only_when_given_a_painter():
    from dataset_builder.ops.inpaint import inpaint_video

    frames, holes, cum, _ = _pan_with_fixed_occluder()
    masks = holes.astype(np.uint8) * 255
    painted = []
    _, stats = inpaint_video(frames, masks, cum, dilate=0, flow=False,
                             painter=lambda f, h: painted.append(1) or f)
    assert painted == [1] and stats["painted_fraction"] > 0.9
    _, stats = inpaint_video(frames, masks, cum, dilate=0, flow=False)
    assert stats["painted_fraction"] == 0.0


def test_ring_structure_tells_texture_from_scene_structure():
    from dataset_builder.ops.inpaint import ring_structure

    rng = np.random.default_rng(0)
    hole = np.zeros((80, 120), bool)
    hole[30:50, 50:70] = True
    gravel = rng.integers(90, 170, (80, 120, 3)).astype(np.uint8)  # fine texture, one tone
    room = np.full((80, 120, 3), 230, np.uint8)
    room[:40] = 30  # a white table against a dark room, the edge through the hole
    assert ring_structure(gravel, hole) < 10 < 60 < ring_structure(room, hole)


def _auto_exposure_clip(t=10, h=72, w=120):
    """A static camera over a smooth textured wall whose brightness falls 1.5 % a frame (a phone's
    auto-exposure), a dark box sliding across; returns frames, true bg, object mask, gains."""
    rng = np.random.default_rng(3)
    wall = cv2.GaussianBlur(rng.integers(120, 230, (h, w, 3), dtype=np.uint8), (0, 0), 4.0).astype(np.float64)
    gains = 0.985 ** np.arange(t)
    bg = np.stack([np.round(wall * g) for g in gains]).astype(np.uint8)
    frames, masks = bg.copy(), np.zeros((t, h, w), np.uint8)
    for i in range(t):
        x0 = 10 + 9 * i
        masks[i, 20:50, x0:x0 + 20] = 255
        frames[i, 20:50, x0:x0 + 20] = (20, 20, 25)
    return frames, bg, masks, gains


def test_exposure_gains_follow_the_auto_exposure_outside_the_object():
    from dataset_builder.ops.inpaint import exposure_gains

    frames, _, masks, gains = _auto_exposure_clip()
    cum = np.repeat(np.eye(3)[None], len(frames), 0)
    est = exposure_gains(frames, masks > 0, cum)
    assert est.shape == (len(frames), 3)
    np.testing.assert_allclose(est, np.repeat(gains[:, None], 3, 1), atol=0.01)


def test_borrowed_pixels_are_relit_to_the_frame_exposure_no_ghost():
    from dataset_builder.ops.inpaint import inpaint_video

    frames, bg, masks, _ = _auto_exposure_clip()
    cum = np.repeat(np.eye(3)[None], len(frames), 0)
    hole, outside = masks > 0, ~dilate_masks(masks, 2)
    errors = {}
    for exposure in (False, True):
        out, stats = inpaint_video(frames, masks, cum, dilate=2, flow=False, exposure=exposure)
        assert stats["temporal_fill_fraction"] > 0.95
        errors[exposure] = np.abs(out[hole].astype(float) - bg[hole]).mean()
        np.testing.assert_array_equal(out[outside], frames[outside])
    # without relighting the fill is up to ~13 % brighter or darker than the wall around it (a ghost)
    assert errors[False] > 4.0 and errors[True] < 1.5, errors
