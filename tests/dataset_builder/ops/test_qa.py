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
