import numpy as np
import pytest

from dataset_builder.ops import masks as mops
from dataset_builder.ops.alpha import feather, guided_filter, refine_alpha, trimap
from dataset_builder.ops.colors import color_names, dominant_colors
from dataset_builder.ops.composite import composite, extract_foreground, premultiply, unpremultiply


def _box(t=4, h=20, w=30, y=5, x=5, bh=6, bw=8, dx=0):
    m = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        m[i, y : y + bh, x + i * dx : x + i * dx + bw] = 255
    return m


def test_iou_values():
    a = _box(t=1)[0]
    b = np.roll(a, 4, axis=1)  # 8-wide box shifted by 4: inter 6*4, union 6*12
    assert mops.mask_iou(a, b) == pytest.approx(24 / 72)
    assert mops.mask_iou(a, a) == 1.0
    assert mops.mask_iou(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_temporal_iou_ignores_frames_where_both_empty():
    a, b = _box(t=3), _box(t=3)
    a[2], b[2] = 0, 0
    b[1] = 0
    assert mops.temporal_iou(a, b) == pytest.approx(0.5)  # frames 0 (1.0) and 1 (0.0)


def test_dedup_keeps_higher_score_and_reports_iou():
    base = _box()
    near = base.copy()
    near[:, 5:11, 13] = 255  # one extra column: IoU 48/54
    other = _box(x=18)
    kept, dropped = mops.dedup_sequences([base, near, other], [0.5, 0.9, 0.1], 0.7)
    assert kept == [1, 2]
    assert dropped[0][:2] == (0, 1) and dropped[0][2] == pytest.approx(48 / 54)


def test_border_touches_and_tracks():
    m = np.zeros((10, 10), np.uint8)
    m[0:3, :] = 255  # top band: top, left, right
    assert mops.border_touches(m) == 3
    seq = _box(dx=2)
    cents = mops.centroid_track(seq)
    np.testing.assert_allclose(np.diff(cents[:, 0]), 2.0)
    assert mops.bbox(seq[0]) == (5, 5, 13, 11)
    assert mops.stability(seq) == pytest.approx(6 * 6 / (6 * 10))
    assert mops.area_stability(seq) == 1.0
    assert np.isnan(mops.centroid_track(np.zeros((1, 4, 4), np.uint8))).all()


def test_composite_round_trip():
    rng = np.random.default_rng(0)
    fg = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    bg = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (2, 8, 8), dtype=np.uint8)
    alpha[0, 0, 0], alpha[0, 0, 1] = 0, 255
    out = composite(fg, bg, alpha)
    assert (out[0, 0, 0] == bg[0, 0, 0]).all() and (out[0, 0, 1] == fg[0, 0, 1]).all()
    hi = alpha >= 128
    # Un-mixing with the true bg recovers fg up to uint8 rounding amplified by 1/alpha.
    rec = extract_foreground(out, alpha, bg, fill=7)
    assert np.abs(rec[hi].astype(int) - fg[hi]).max() <= 2
    assert (extract_foreground(out, alpha * 0, fill=7) == 7).all()
    back = unpremultiply(premultiply(fg, alpha), alpha)
    assert np.abs(back[hi].astype(int) - fg[hi]).max() <= 1


@pytest.mark.parametrize("fg_colour", [(200, 190, 180), (200, 60, 40)])  # 2nd: same brightness as bg
def test_guided_filter_moves_upscaled_mask_towards_image_edge(fg_colour):
    import cv2

    yy, xx = np.mgrid[0:80, 0:80]
    truth = (((yy - 40) ** 2 + (xx - 37.3) ** 2) < 24**2).astype(np.uint8) * 255
    img = np.where(truth[..., None] > 0, np.array(fg_colour, np.uint8), np.array([40, 90, 160], np.uint8))
    img = cv2.GaussianBlur(img.astype(np.uint8), (0, 0), 0.7)
    small = (cv2.resize(truth, (20, 20), interpolation=cv2.INTER_AREA) >= 128).astype(np.uint8) * 255
    mask = cv2.resize(small, (80, 80), interpolation=cv2.INTER_LINEAR)  # blocky 4x upscale
    ref = refine_alpha(img, mask, radius=4, eps=1e-4)
    err_mask, err_ref = np.abs(mask - truth.astype(float)).mean(), np.abs(ref - truth.astype(float)).mean()
    assert err_ref < 0.97 * err_mask
    assert ref[40, 30:45].min() == 255 and ref[:5].max() == 0  # interior and far background stay hard
    assert guided_filter(img, mask / 255.0).shape == mask.shape
    assert guided_filter(img[..., 0], mask / 255.0).shape == mask.shape


def test_feather_and_trimap():
    mask = np.zeros((40, 40), np.uint8)
    mask[:, 17:] = 255
    soft = feather(mask, 2.0)
    assert 0 < soft[20, 17] < 255 and soft[20, 0] == 0 and soft[20, 39] == 255
    tri = trimap(mask, 2)
    assert tri[0, 0] == 0 and tri[0, 30] == 1 and tri[0, 17] == 0.5


def test_color_names_and_dominant():
    px = np.array([[255, 0, 0], [0, 200, 0], [0, 0, 255], [250, 250, 250], [10, 10, 10], [128, 128, 128],
                   [255, 220, 0], [120, 60, 10]], np.uint8)
    assert list(color_names(px)) == ["red", "green", "blue", "white", "black", "gray", "yellow", "brown"]
    img = np.zeros((10, 10, 3), np.uint8)
    img[:7] = (0, 0, 255)
    img[7:] = (0, 200, 0)
    dom = dominant_colors(img)
    assert dom[0][0] == "blue" and dom[0][1] == pytest.approx(0.7) and dom[1][0] == "green"
    w = np.zeros((10, 10))
    w[9] = 1
    assert dominant_colors(img, weights=w)[0] == ("green", 1.0)


def test_trend_area_stability_accepts_steady_growth_and_catches_flicker():
    t, h, w = 16, 120, 120
    growing = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        s = int(round(12 * 1.07 ** i))  # side x2.6, area x7.6 over the clip
        growing[i, :s, :s] = 255
    assert mops.area_stability(growing) < 0.5  # plain CV calls the approach unstable
    assert mops.trend_area_stability(growing) > 0.9
    flicker = growing.copy()
    flicker[::2] = 0
    flicker[::2, :4, :4] = 255
    assert mops.trend_area_stability(flicker) < 0.3
    swollen = np.zeros((t, h, w), np.uint8)
    swollen[:, :30, :30] = 255
    swollen[6:9, :60, :60] = 255  # merged with its surroundings for three frames
    assert mops.trend_area_stability(swollen) < 0.6
