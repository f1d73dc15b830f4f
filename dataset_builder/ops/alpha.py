"""Hard mask -> layer alpha and foreground colour.

``soft_alpha`` is the shared matte: a hard core, a hard background and a thin unknown band (trimap
from the mask) in which an edge-aware guided filter (He et al.) decides the fractional alpha. The
colour guided filter solves a 3x3 system per pixel in closed form (cofactors) and only where the band
needs it. ``estimate_foreground`` then gives the band pixels the *object's* colour, un-mixing the
observed colour against a known background and regularising toward the colour of the nearby core, so
fg.mp4 does not carry a halo of the old background. Closed-form matting (pymatting) stays available as
a much slower refinement for small frames.
"""

from __future__ import annotations

import cv2
import numpy as np


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones (``sigma`` > 6) on a downscaled copy (the result is smooth at that scale
    anyway, and a full-resolution kernel that wide costs O(sigma) per pixel)."""
    if sigma <= 6:
        return cv2.GaussianBlur(x, (0, 0), sigma)
    h, w = x.shape[:2]
    f = min(int(sigma // 3), max(1, min(h, w) // 8))
    small = cv2.resize(x, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / f), (w, h), interpolation=cv2.INTER_LINEAR)


def _solve_sym3(s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Solve ``S x = v`` for many symmetric 3x3 ``S`` (N, 3, 3) by cofactors (much faster than linalg)."""
    a, b, c = s[:, 0, 0], s[:, 0, 1], s[:, 0, 2]
    d, e, f = s[:, 1, 1], s[:, 1, 2], s[:, 2, 2]
    c00, c01, c02 = d * f - e * e, c * e - b * f, b * e - c * d
    c11, c12, c22 = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * c00 + b * c01 + c * c02
    x0 = c00 * v[:, 0] + c01 * v[:, 1] + c02 * v[:, 2]
    x1 = c01 * v[:, 0] + c11 * v[:, 1] + c12 * v[:, 2]
    x2 = c02 * v[:, 0] + c12 * v[:, 1] + c22 * v[:, 2]
    return np.stack([x0, x1, x2], -1) / det[:, None]


def guided_filter(
    guide: np.ndarray, src: np.ndarray, radius: int = 4, eps: float = 1e-4, where: np.ndarray | None = None
) -> np.ndarray:
    """Guided filter of float ``src`` (H, W) by ``guide`` (uint8 or 0..1 float, gray or RGB).

    The colour version models ``q = a^T I + b`` per window, so it follows edges between regions of
    equal brightness but different hue (where a gray guide is blind). With ``where`` (bool H, W) the
    output is only valid there (the per-pixel solve runs on ``where`` grown by ``radius``).
    """
    g = guide.astype(np.float32) / (255.0 if guide.dtype == np.uint8 else 1.0)
    p = src.astype(np.float32)
    mean_p = _box(p, radius)
    if g.ndim == 2:
        mean_g = _box(g, radius)
        a = (_box(g * p, radius) - mean_g * mean_p) / (_box(g * g, radius) - mean_g * mean_g + eps)
        b = mean_p - a * mean_g
        return _box(a, radius) * g + _box(b, radius)
    mean_g = _box(g, radius)  # (H, W, 3)
    cov_gp = _box(g * p[..., None], radius) - mean_g * mean_p[..., None]
    need = np.ones(p.shape, bool) if where is None else \
        cv2.dilate(where.astype(np.uint8), np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)) > 0
    ys, xs = np.nonzero(need)
    sigma = np.empty((len(ys), 3, 3), np.float32)
    mg = mean_g[ys, xs]
    for i in range(3):
        for j in range(i, 3):
            gij = _box(g[..., i] * g[..., j], radius)[ys, xs]
            sigma[:, i, j] = sigma[:, j, i] = gij - mg[:, i] * mg[:, j] + (eps if i == j else 0.0)
    a = np.zeros(g.shape, np.float32)
    a[ys, xs] = _solve_sym3(sigma, cov_gp[ys, xs])
    b = mean_p - (a * mean_g).sum(-1)
    if where is not None:
        b = np.where(need, b, mean_p)  # outside ``need`` a = 0, b = mean: a plain box filter
    return (_box(a, radius) * g).sum(-1) + _box(b, radius)


def edge_band(mask: np.ndarray, band: int) -> np.ndarray:
    """Bool pixels within ``band`` px of the boundary of ``mask >= 128`` (either side)."""
    hard = (mask >= 128).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    return cv2.dilate(hard, k) > cv2.erode(hard, k)


def soft_alpha(
    frame: np.ndarray, mask: np.ndarray, band: int = 3, radius: int = 4, eps: float = 1e-4, snap: float = 0.04
) -> np.ndarray:
    """uint8 alpha: hard core, hard background, guided-filter alpha in a ``band``-px band at the edge.

    Fractions within ``snap`` of 0 or 1 become exactly 0 / 255, so the soft band stays thin (long
    faint tails of alpha are where fg would carry background colour).
    """
    hard = mask >= 128
    if band <= 0 or not hard.any() or hard.all():
        return hard.astype(np.uint8) * 255
    unknown = edge_band(mask, band)
    # The filter's value at a band pixel depends on pixels within 2 * radius of it (two box filters):
    # it runs on the band's bounding box grown by more than that (same values, far fewer pixels).
    win = object_window(unknown.astype(np.uint8), margin=2 * radius + 2)
    out = hard.astype(np.float32)
    if win is None:
        return np.round(out * 255).astype(np.uint8)
    sub = unknown[win]
    soft = np.clip(guided_filter(frame[win], out[win], radius, eps, where=sub), 0.0, 1.0)
    soft = np.where(soft < snap, 0.0, np.where(soft > 1.0 - snap, 1.0, soft))
    out[win] = np.where(sub, soft, out[win])
    return np.round(out * 255).astype(np.uint8)


def soft_alpha_sequence(frames: np.ndarray, masks: np.ndarray, **kw) -> np.ndarray:
    return np.stack([soft_alpha(f, m, **kw) for f, m in zip(frames, masks)])


def refine_alpha(frame: np.ndarray, mask: np.ndarray, radius: int = 2, eps: float = 1e-4) -> np.ndarray:
    """uint8 soft alpha from a (hard or soft) uint8 mask, edges following ``frame``, in a ``2 * radius``
    band (the filter can only move the edge, never punch holes or add blobs)."""
    return soft_alpha(frame, mask, band=2 * radius, radius=radius, eps=eps, snap=0.0)


def refine_alpha_sequence(frames: np.ndarray, masks: np.ndarray, radius: int = 2, eps: float = 1e-4) -> np.ndarray:
    return np.stack([refine_alpha(f, m, radius, eps) for f, m in zip(frames, masks)])


def spread(
    values: np.ndarray, weight: np.ndarray, region: np.ndarray, sigma: float, max_rounds: int | None = 6,
    max_sigma: float = float("inf"),
) -> np.ndarray:
    """Normalised convolution: the weighted value of nearby ``weight`` pixels, at each ``region`` pixel
    (elsewhere ``values`` unchanged, as float32); the Gaussian doubles until every region pixel has
    support, at most ``max_rounds`` times and while ``sigma <= max_sigma``."""
    out = values.astype(np.float32).copy()
    todo = region.copy()
    w = weight.astype(np.float32)
    num = values.astype(np.float32) * w[..., None]
    rounds = 0
    while todo.any() and sigma <= max_sigma and (max_rounds is None or rounds < max_rounds):
        wb = smooth(w, sigma)
        nb = smooth(num, sigma)
        ok = todo & (wb > 1e-3)
        out[ok] = nb[ok] / wb[ok][:, None]
        todo &= ~ok
        sigma *= 2.0
        rounds += 1
    return out


def estimate_foreground(
    frame: np.ndarray, alpha: np.ndarray, background: np.ndarray | None = None, reg: float = 0.02,
    sigma: float = 3.0,
) -> np.ndarray:
    """Foreground colour (uint8 H, W, 3) where ``0 < alpha < 255``; the observed colour elsewhere.

    Per band pixel, ``F = argmin |I - a F - (1 - a) B|^2 + reg |F - F0|^2`` with ``F0`` the colour of the
    nearby opaque core (normalised convolution). ``B`` is ``background`` when given (the inpainted
    layer, so fg over the stored bg recomposes the clip), else it is estimated jointly with the same
    prior drawn from nearby alpha = 0 pixels (the two-layer model of pymatting's ``estimate_foreground_ml``,
    in one closed-form step).
    """
    img = frame.astype(np.float32)
    a = alpha.astype(np.float32) / 255.0
    band = (alpha > 0) & (alpha < 255)
    if not band.any():
        return frame.copy()
    core = alpha == 255
    if not core.any():
        core = alpha >= alpha[alpha > 0].max()
    f0 = spread(img, core, band, sigma)
    ab = a[band][:, None]
    i_b, f0_b = img[band], f0[band]
    if background is not None:
        b_b = background.astype(np.float32)[band]
        f_b = (ab * (i_b - (1.0 - ab) * b_b) + reg * f0_b) / (ab * ab + reg)
    else:
        b0_b = spread(img, alpha == 0, band, sigma)[band]
        resid = i_b - ab * f0_b - (1.0 - ab) * b0_b
        f_b = f0_b + ab * resid / (ab * ab + (1.0 - ab) ** 2 + reg)
    out = frame.copy()
    out[band] = np.clip(np.round(f_b), 0, 255).astype(np.uint8)
    return out


def rematte_with_background(
    frame: np.ndarray, alpha: np.ndarray, background: np.ndarray, band: int = 3, contrast: float = 40.0,
    sigma: float = 3.0, snap: float = 0.04,
) -> np.ndarray:
    """Re-estimate alpha in the edge band once the clean background ``B`` is known (after inpainting).

    With ``F0`` the nearby core colour, ``a = <I - B, F0 - B> / |F0 - B|^2`` (difference matting); it is
    trusted in proportion to how far apart ``F0`` and ``B`` are (``contrast``: RMS colour distance, 0..255,
    of full trust), elsewhere the existing alpha stays. Only the band around the current edge changes.
    """
    core = alpha == 255
    if not core.any() or band <= 0:
        return alpha.copy()
    region = edge_band(alpha, band)
    img, bg = frame.astype(np.float32), background.astype(np.float32)
    f0 = spread(img, core, region, sigma)
    d = (f0 - bg)[region]
    n2 = (d * d).sum(-1)
    est = np.clip(((img - bg)[region] * d).sum(-1) / np.maximum(n2, 1e-6), 0.0, 1.0)
    trust = np.clip(n2 / (3.0 * contrast**2), 0.0, 1.0)
    new = trust * est + (1.0 - trust) * alpha[region].astype(np.float32) / 255.0
    new = np.where(new < snap, 0.0, np.where(new > 1.0 - snap, 1.0, new))
    out = alpha.copy()
    out[region] = np.round(new * 255).astype(np.uint8)
    return out


def min_alpha(frame: np.ndarray, background: np.ndarray) -> np.ndarray:
    """float (H, W): the least alpha for which some foreground colour in [0, 255]^3 gives
    ``frame = a F + (1 - a) B`` (per channel: darkening needs F = 0, brightening F = 255)."""
    i, b = frame.astype(np.float32), background.astype(np.float32)
    d = i - b
    need = np.where(d < 0, -d / np.maximum(b, 1e-3), d / np.maximum(255.0 - b, 1e-3))
    return np.clip(need.max(-1), 0.0, 1.0)


def reconcile_layers(
    frame: np.ndarray, alpha: np.ndarray, background: np.ndarray, foreground: np.ndarray, tol: int = 10,
    max_shadow: float = 127 / 255, shadow_chroma: float = 0.15, sigma: float = 3.0, max_edge_px: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make fg over bg give ``frame`` back around the object, without putting the object back in the bg.

    The inpainter removes a hole grown beyond the matte (missed edges, contact shadows), so in that ring
    alpha is 0 while the bg differs from the clip: the layers do not recompose it. Per ring pixel
    (``alpha == 0`` and bg != clip):

    - the clip agrees with the clean bg within ``tol`` (max channel), or the difference is neither the
      object's colour (closer to the nearby opaque core than to the bg) nor a shadow (darker in every
      channel by one factor, within ``shadow_chroma``), or it does not touch the object: it is
      background the fill did not match (water, foliage), so the bg takes the clip's pixel back
      (exact, and nothing a viewer could call the object);
    - it is (a shadow, an edge the mask missed): the bg stays clean and alpha becomes the least
      value that explains the difference (:func:`min_alpha`; for a shadow at most ``max_shadow``, so it
      stays translucent and never counts as object), with the fg colour un-mixed from it,
      ``F = B + (I - B) / a``.

    ``max_edge_px`` > 0: an edge the mask missed is thin; a ring pixel of the object's colour farther
    than this from the matte is background the fill did not match (dark water beside a black swan) and
    goes back into the bg (shadows may reach farther: they stay translucent anyway).

    In the matte's own soft band alpha is raised to that least value where the un-mixed colour would
    leave [0, 255] (the fractional alpha of the matte does not fit the clean bg there). Returns
    (alpha, fg, bg), uint8.
    """
    img, bg = frame.astype(np.float32), background.astype(np.float32)
    diff = np.abs(img - bg).max(-1)
    ring = (alpha == 0) & (diff > 0)
    lift = ring & (diff > tol)
    shadow = np.zeros_like(lift)
    if lift.any() and (alpha == 255).any():  # explained as object colour or as a shadow, else bg texture
        f0 = spread(img, alpha == 255, lift, sigma)
        near_object = ((img - f0) ** 2).sum(-1) < ((img - bg) ** 2).sum(-1)
        ratio = (img + 1.0) / (bg + 1.0)
        shadow = lift & (img <= bg + tol).all(-1) & (ratio.max(-1) - ratio.min(-1) <= shadow_chroma)
        if max_edge_px > 0:
            near_object &= cv2.distanceTransform((alpha == 0).astype(np.uint8), cv2.DIST_L2, 3) <= max_edge_px
        # Object-coloured beyond a missed edge's reach may still be a shadow: a car's dark underbody
        # is the colour of the shadow under it, which otherwise went back into the bg as a dark blob.
        shadow &= ~near_object
        lift &= near_object | shadow
    if lift.any():  # only what touches the object: detached differences are inpainting noise
        _, labels = cv2.connectedComponents((lift | (alpha > 0)).astype(np.uint8), connectivity=8)
        attached = np.zeros(labels.max() + 1, bool)
        attached[labels[alpha > 0]] = True
        attached[0] = False
        lift &= attached[labels]
    back = ring & ~lift
    soft = (alpha > 0) & (alpha < 255)
    amin = min_alpha(frame, background)
    amin[shadow] = np.minimum(amin[shadow], max_shadow)  # a shadow stays translucent, never object
    a = alpha.astype(np.float32) / 255.0
    a_new = a.copy()
    a_new[lift] = amin[lift]
    a_new[soft] = np.maximum(a[soft], amin[soft])
    a8 = np.round(a_new * 255).astype(np.uint8)
    fix = (lift | soft) & (a8 > 0)
    out_bg = background.copy()
    out_bg[back] = frame[back]
    out_fg = foreground.copy()
    if fix.any():
        af = a8[fix].astype(np.float32)[:, None] / 255.0
        unmixed = bg[fix] + (img[fix] - bg[fix]) / af
        raised = fix & (a8 != alpha)  # pixels whose alpha moved: the exact un-mixed colour
        keep = foreground[fix].astype(np.float32)
        resid = np.abs(af * keep + (1.0 - af) * bg[fix] - img[fix]).max(-1)
        use = raised[fix] | (resid > tol)
        out_fg[fix] = np.where(use[:, None], np.clip(np.round(unmixed), 0, 255), keep).astype(np.uint8)
    return a8, out_fg, out_bg


def object_window(alpha: np.ndarray, *others: np.ndarray, margin: int = 16) -> tuple[slice, slice] | None:
    """(rows, cols) slices of the box around ``alpha > 0`` and any bool ``others`` grown by ``margin``;
    None when all are empty. The per-frame layer ops only touch pixels there."""
    region = alpha > 0
    for o in others:
        region = region | o
    ys, xs = np.nonzero(region.any(1)), np.nonzero(region.any(0))
    if not len(ys[0]):
        return None
    h, w = alpha.shape
    return (slice(max(0, ys[0][0] - margin), min(h, ys[0][-1] + margin + 1)),
            slice(max(0, xs[0][0] - margin), min(w, xs[0][-1] + margin + 1)))


def finish_layers(
    frame: np.ndarray, alpha: np.ndarray, background: np.ndarray, reg: float = 0.02, reconcile: bool = True,
    tol: int = 10, max_shadow: float = 127 / 255, max_edge_px: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame's final (alpha, fg, bg): :func:`estimate_foreground` then :func:`reconcile_layers`, run
    in :func:`object_window` of the object and of the inpainted pixels (everything else is untouched:
    fg is the clip there, alpha and bg are as given)."""
    alpha, fg, bg = alpha.copy(), frame.copy(), background.copy()
    win = object_window(alpha, (background != frame).any(-1))
    if win is None:
        return alpha, fg, bg
    f, a, b = frame[win], alpha[win], background[win]
    fg[win] = estimate_foreground(f, a, b, reg=reg)
    if reconcile:
        alpha[win], fg[win], bg[win] = reconcile_layers(f, a, b, fg[win], tol, max_shadow,
                                                         max_edge_px=max_edge_px)
    return alpha, fg, bg


def estimate_foreground_sequence(
    frames: np.ndarray, alphas: np.ndarray, backgrounds: np.ndarray | None = None, **kw
) -> np.ndarray:
    bgs = backgrounds if backgrounds is not None else [None] * len(frames)
    return np.stack([estimate_foreground(f, a, b, **kw) for f, a, b in zip(frames, alphas, bgs)])


def feather(mask: np.ndarray, radius: float = 2.0) -> np.ndarray:
    """Gaussian-softened uint8 alpha (image-agnostic anti-aliasing of a hard mask)."""
    if radius <= 0:
        return mask.copy()
    out = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), radius)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def trimap(mask: np.ndarray, band: int = 5) -> np.ndarray:
    """float64 trimap (0 bg, 0.5 unknown, 1 fg) with an unknown band of ``band`` px each side."""
    hard = (mask >= 128).astype(np.uint8)
    k = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    out = np.full(mask.shape, 0.5)
    out[cv2.erode(hard, k) > 0] = 1.0
    out[cv2.dilate(hard, k) == 0] = 0.0
    return out


def closed_form_alpha(frame: np.ndarray, mask: np.ndarray, band: int = 5) -> np.ndarray:
    """Closed-form matting (Levin et al., via pymatting) on a trimap around the mask; slow, small frames."""
    from pymatting import estimate_alpha_cf  # optional dependency, imported only when asked for

    alpha = estimate_alpha_cf(frame.astype(np.float64) / 255.0, trimap(mask, band))
    return np.clip(np.round(alpha * 255), 0, 255).astype(np.uint8)
