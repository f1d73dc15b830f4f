"""QA scores of ops.qa on synthetic layers."""

import numpy as np

from dataset_builder.ops.qa import color_consistency, qa_scores


def _clip(switch_at=None, t=8, size=64, seed=0):
    """A textured brown blob moving right over a gray-blue bg; from ``switch_at`` on, the alpha follows
    a green blob elsewhere instead (an identity switch)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.empty((t, size, size, 3), np.uint8)
    alpha = np.zeros((t, size, size), np.uint8)
    for i in range(t):
        f = np.clip(rng.normal([110, 120, 140], 8, (size, size, 3)), 0, 255)
        brown = np.hypot(yy - 24, xx - 14 - 3 * i) < 9
        green = np.hypot(yy - 48, xx - 48) < 8
        f[brown] = np.clip(rng.normal([150, 90, 50], 10, (brown.sum(), 3)), 0, 255)
        f[green] = np.clip(rng.normal([60, 160, 60], 10, (green.sum(), 3)), 0, 255)
        frames[i] = f
        alpha[i] = 255 * (green if switch_at is not None and i >= switch_at else brown)
    return frames, alpha


def test_color_consistency_drops_at_an_identity_switch_only():
    same = color_consistency(*_clip())
    switched = color_consistency(*_clip(switch_at=5))
    assert same > 0.8 > 0.3 > switched, (same, switched)
    frames, alpha = _clip()
    alpha[3] = 0  # a frame without the object is not a switch
    assert color_consistency(frames, alpha) > 0.8


def test_alpha_scores_describe_the_matte_not_the_added_shadow_alpha():
    frames, alpha = _clip()
    with_shadow = alpha.copy()
    with_shadow[:, 36:40, :] = np.maximum(with_shadow[:, 36:40, :], 90)  # translucent strip, as reconcile adds
    bg = frames.copy()
    a = qa_scores(frames, frames, bg, with_shadow, matte=alpha)
    b = qa_scores(frames, frames, bg, alpha)
    assert a["qa_edge_band_px"] == b["qa_edge_band_px"] and a["qa_soft_visible_share"] == b["qa_soft_visible_share"]
    assert a["qa_reconciled_share"] > 0.5 and b["qa_reconciled_share"] == 0.0


def test_recompose_psnr_is_the_band_psnr_of_the_whole_frame_composite():
    from dataset_builder.ops.alpha import edge_band
    from dataset_builder.ops.composite import composite
    from dataset_builder.ops.qa import recompose_psnr

    frames, alpha = _clip()
    rng = np.random.default_rng(3)
    alpha = np.where(rng.random(alpha.shape) < 0.2, rng.integers(0, 256, alpha.shape), alpha).astype(np.uint8)
    fg = rng.integers(0, 256, frames.shape, dtype=np.uint8)
    bg = np.clip(frames.astype(int) + rng.integers(-20, 21, frames.shape), 0, 255).astype(np.uint8)
    region = np.stack([edge_band(a, 3) for a in alpha])
    mse = float(((composite(fg, bg, alpha)[region].astype(np.float32) - frames[region]) ** 2).mean())
    assert recompose_psnr(frames, fg, bg, alpha, 3) == float(min(60.0, 10 * np.log10(255.0**2 / mse)))
