"""Video object removal without a network: borrow the background from other frames, then paint.

0. Exposure: a hand-held phone's auto-exposure drifts over a clip (opencv-doc cup.mp4: the wall's
   brightness falls 8 % in 2 s), so pixels borrowed from another frame are relit to this frame's
   exposure (per-channel gains from the aligned background, :func:`exposure_gains`); otherwise the
   fill is a lighter or darker ghost of the object's silhouette.
1. Dilate the object mask into the hole (covers soft edges and mask error), and further downward
   (contact shadows fall below an object).
2. Flow-guided propagation, ProPainter's first stage done classically: dense optical flow between
   neighbouring frames (DIS), *completed* inside the hole (the flow there is the object's, not the
   background's: the residual to the camera homography is interpolated from around the hole), then
   each hole pixel is followed along the chained flow, forward and backward, to the nearest frames
   where it is visible, and takes the median of their colours. Follows parallax that one homography
   per frame cannot.
3. What propagation did not reach: map the hole pixels into the other frames with the camera
   homographies and take, per pixel, the median of the first ``max_candidates`` frames that see it
   outside their own hole.
4. What no frame ever saw is painted once, on the frame that misses most (a ``painter``: the
   exemplar fill continues the ground's texture), and carried to the other frames by the camera
   homographies, so the fill stays put in the scene instead of being repainted (and flickering) in
   every frame. What is left is filled spatially (cv2.inpaint, Telea or Navier-Stokes).
5. The fill fades into the input across the outer ring of the hole, so there is no hard seam.
   Pixels outside the dilated hole are returned untouched.
"""

from __future__ import annotations

import cv2
import numpy as np

from collections.abc import Callable

from dataset_builder.ops.alpha import object_window, spread
from dataset_builder.ops.motion import relative_homography, warp, warp_valid, work_scale


def dilate_masks(masks: np.ndarray, radius: int, threshold: int = 1, shadow: float = 0.0) -> np.ndarray:
    """Bool (T,H,W) hole: every pixel with mask >= ``threshold`` grown by ``radius`` px, and by a further
    ``shadow`` x the object's height downward (where a contact shadow lies)."""
    hard = (masks >= threshold).astype(np.uint8)
    if radius > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        hard = np.stack([cv2.dilate(m, k) for m in hard])
    if shadow > 0:
        rows = np.nonzero(hard.any(axis=(0, 2)))[0]
        extra = int(round(shadow * (rows[-1] - rows[0] + 1))) if len(rows) else 0
        if extra > 0:  # a (2e+1, 1) kernel, lower half off: each object pixel also covers ``extra`` rows below
            k = np.ones((2 * extra + 1, 1), np.uint8)
            k[extra + 1:] = 0
            hard = np.stack([cv2.dilate(m, k) for m in hard])
    return hard > 0


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def complete_flow(
    flow: np.ndarray, hole: np.ndarray, base: np.ndarray | None = None, sigma: float = 4.0, margin: int = 8,
    deadzone: float = 0.5, max_residual: float = 2.0,
) -> np.ndarray:
    """Replace ``flow`` inside ``hole`` by the surrounding (background) flow.

    With ``base`` (the camera homography's flow), only the residual ``flow - base`` is interpolated into
    the hole, so a pure camera motion is completed exactly and parallax smoothly. Interpolation is a
    normalised convolution whose Gaussian doubles until every hole pixel has support. Flow within
    ``margin`` px of the hole is not trusted either (dense flow bleeds the object's motion outward), nor
    residuals over ``max_residual`` px (other movers, not background parallax).
    """
    if not hole.any():
        return flow
    base = np.zeros_like(flow) if base is None else base
    resid = flow - base
    mag = np.linalg.norm(resid, axis=-1)
    resid[mag < deadzone] = 0.0  # sub-pixel residuals around the hole are flow noise, not parallax
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    wide = cv2.dilate(hole.astype(np.uint8), k) > 0 if margin > 0 else hole
    valid = (~wide & (mag <= max_residual)).astype(np.float32)
    fill = np.zeros_like(resid)
    if valid.any():  # valid is 0 inside ``wide``, so the spread starts from zero residual there
        fill = spread(resid * valid[..., None], valid, wide, sigma, max_rounds=None, max_sigma=4 * max(flow.shape))
    out = flow.copy()
    out[wide] = base[wide] + fill[wide]
    return out


def _homography_flow(hom: np.ndarray, h: int, w: int) -> np.ndarray:
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    pts = cv2.perspectiveTransform(np.stack([gx, gy], -1).reshape(-1, 1, 2), hom.astype(np.float64))
    return (pts.reshape(h, w, 2) - np.stack([gx, gy], -1)).astype(np.float32)


def background_flows(
    frames: np.ndarray, holes: np.ndarray, cum: np.ndarray, max_side: int = 360
) -> tuple[np.ndarray, np.ndarray]:
    """Completed background flows at ``max_side``: ``to_next[t]`` maps frame t pixels into t+1,
    ``to_prev[t]`` frame t+1 pixels into t (DIS optical flow, holes completed around the camera's
    homography flow). Returns them with the scale they were computed at."""
    t, h, w = holes.shape
    scale = min(1.0, max_side / max(h, w))
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    grays = [cv2.resize(_gray(f), (sw, sh), interpolation=cv2.INTER_AREA) for f in frames]
    small_holes = [cv2.resize(m.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0 for m in holes]
    s = np.diag([sw / w, sh / h, 1.0])
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    to_next = np.zeros((t - 1, sh, sw, 2), np.float32)
    to_prev = np.zeros((t - 1, sh, sw, 2), np.float32)
    for i in range(t - 1):
        fwd_h = s @ relative_homography(cum, i, i + 1) @ np.linalg.inv(s)
        to_next[i] = complete_flow(dis.calc(grays[i], grays[i + 1], None), small_holes[i],
                                   _homography_flow(fwd_h, sh, sw))
        to_prev[i] = complete_flow(dis.calc(grays[i + 1], grays[i], None), small_holes[i + 1],
                                   _homography_flow(np.linalg.inv(fwd_h), sh, sw))
    return to_next, to_prev


def _sample(image: np.ndarray, pts: np.ndarray, nearest: bool = False) -> np.ndarray:
    """``image`` at float points (N, 2) (x, y); zeros outside. Points go through ``cv2.remap`` as a
    (N / 1024, 1024) map (remap maps must stay under 32767 rows)."""
    n, cols = len(pts), 1024
    rows = max(1, -(-n // cols))
    grid = np.full((rows * cols, 2), -1.0, np.float32)
    grid[:n] = pts
    mx = np.ascontiguousarray(grid[:, 0].reshape(rows, cols))
    my = np.ascontiguousarray(grid[:, 1].reshape(rows, cols))
    out = cv2.remap(image, mx, my, cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(rows * cols, *image.shape[2:])[:n]


def _map_pixels(ys: np.ndarray, xs: np.ndarray, cum: np.ndarray, src: int, dst: int, size: tuple[int, int],
                margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (ys, xs) of frame ``src`` mapped into frame ``dst`` by the camera homographies: (float32
    (N, 2) x, y points, bool "lies ``margin`` px inside the (h, w) frame")."""
    h, w = size
    pts = np.stack([xs, ys], 1).astype(np.float64).reshape(-1, 1, 2)
    out = cv2.perspectiveTransform(pts, relative_homography(cum, src, dst)).reshape(-1, 2).astype(np.float32)
    inside = (out[:, 0] >= margin) & (out[:, 0] <= w - 1 - margin) & \
             (out[:, 1] >= margin) & (out[:, 1] <= h - 1 - margin)
    return out, inside


def median_of_first(cands: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per-column median of the first ``count[n]`` rows of ``cands`` (K, N, C) (``count >= 1``); what
    ``np.nanmedian`` gives on the NaN-padded stack, by one sort."""
    k = cands.shape[0]
    filled = np.where(np.arange(k)[:, None, None] < count[None, :, None], cands, np.inf)
    srt = np.sort(filled, axis=0)
    lo = np.take_along_axis(srt, ((count - 1) // 2)[None, :, None].repeat(cands.shape[2], 2), 0)[0]
    hi = np.take_along_axis(srt, (count // 2)[None, :, None].repeat(cands.shape[2], 2), 0)[0]
    return (lo + hi) / 2.0


def flow_fill(
    frames: np.ndarray, holes: np.ndarray, cum: np.ndarray, max_candidates: int = 3, max_side: int = 360,
    max_steps: int | None = None, source_holes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill hole pixels from the frames where they are visible, found along completed optical flow.

    Each hole pixel of frame i is followed frame by frame (chaining the completed flows, forward and
    backward); wherever its track leaves the other frame's hole, that frame's colour is a candidate,
    sampled once from the original frame (no blur from repeated resampling). The per-channel median of
    the ``max_candidates`` nearest-in-time candidates is the fill. ``source_holes`` (default ``holes``):
    where a frame may not be read from. Returns (uint8 frames, bool unseen).
    """
    t, h, w = holes.shape
    source_holes = holes if source_holes is None else source_holes
    out, unseen = frames.copy(), holes.copy()
    if t < 2 or not holes.any():
        return out, unseen
    to_next, to_prev = background_flows(frames, holes, cum, max_side)
    sh, sw = to_next.shape[1:3]
    sx, sy = sw / w, sh / h
    steps = max_steps or t - 1
    for i in range(t):
        ys, xs = np.nonzero(holes[i])
        if not len(ys):
            continue
        cands = np.zeros((max_candidates, len(ys), 3), np.float32)
        count = np.zeros(len(ys), np.int32)
        tracks = {d: np.stack([xs * sx, ys * sy], 1).astype(np.float32) for d in (1, -1)}
        alive = {d: np.ones(len(ys), bool) for d in (1, -1)}
        for k in range(1, steps + 1):
            for d in (1, -1):
                j = i + d * k
                if not 0 <= j < t or not alive[d].any():
                    alive[d][:] = False
                    continue
                flows = to_next[j - 1] if d == 1 else to_prev[j]
                pos = tracks[d]
                pos += _sample(flows, pos)
                inside = (pos[:, 0] >= 0) & (pos[:, 0] <= sw - 1) & (pos[:, 1] >= 0) & (pos[:, 1] <= sh - 1)
                alive[d] &= inside
                full = np.stack([pos[:, 0] / sx, pos[:, 1] / sy], 1)
                in_hole = _sample(source_holes[j].astype(np.uint8), full, nearest=True) > 0
                take = alive[d] & ~in_hole & (count < max_candidates)
                if take.any():
                    cands[count[take], np.nonzero(take)[0]] = _sample(frames[j], full[take])
                    count[take] += 1
            if (count >= max_candidates).all() or not (alive[1].any() or alive[-1].any()):
                break
        seen = count > 0
        if seen.any():
            med = median_of_first(cands[:, seen], count[seen])
            out[i, ys[seen], xs[seen]] = np.clip(np.round(med), 0, 255)
            unseen[i, ys[seen], xs[seen]] = False
    return out, unseen


def temporal_fill(
    frames: np.ndarray, holes: np.ndarray, cum: np.ndarray, max_candidates: int = 5, max_sources: int = 12,
    margin: int = 2, source_holes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill holes from aligned other frames (a source pixel counts when it lies ``margin`` px inside
    that frame and outside its hole, ``source_holes`` when given). Returns (filled uint8 frames, bool
    "still unseen")."""
    t, h, w = holes.shape
    source_holes = holes if source_holes is None else source_holes
    out = frames.copy()
    unseen = holes.copy()
    for i in range(t):
        hole = holes[i]
        if not hole.any():
            continue
        ys, xs = np.nonzero(hole)
        sources = sorted((j for j in range(t) if j != i), key=lambda j: (abs(j - i), j))[:max_sources]
        vals = np.zeros((len(sources), len(ys), 3), np.float32)
        ok = np.zeros((len(sources), len(ys)), bool)
        for k, j in enumerate(sources):
            # only the hole's pixels are mapped into frame j (not whole frames warped into frame i)
            src, inside = _map_pixels(ys, xs, cum, i, j, (h, w), margin)
            ok[k] = inside & (_sample(source_holes[j].astype(np.uint8), src, nearest=True) == 0)
            if ok[k].any():
                vals[k, ok[k]] = _sample(frames[j], src[ok[k]])
            if (ok[: k + 1].sum(0) >= max_candidates).all():
                ok, vals = ok[: k + 1], vals[: k + 1]
                break
        take = ok & (np.cumsum(ok, axis=0) <= max_candidates)
        seen = take.any(0)
        if seen.any():
            order = np.argsort(~take[:, seen], axis=0, kind="stable")  # taken candidates first, in order
            cand = np.take_along_axis(vals[:, seen], order[..., None].repeat(3, 2), 0)
            med = median_of_first(cand, take[:, seen].sum(0))
            out[i, ys[seen], xs[seen]] = np.clip(np.round(med), 0, 255).astype(np.uint8)
        unseen[i, ys[seen], xs[seen]] = False
    return out, unseen


def reference_fill(
    frames: np.ndarray, unseen: np.ndarray, cum: np.ndarray, painter: Callable[[np.ndarray, np.ndarray], np.ndarray],
    source_holes: np.ndarray, max_references: int = 2, margin: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint what no frame saw on the frame that misses most (``painter(frame, hole) -> frame``), then
    give every other frame's unseen pixels that frame's colours (mapped by the camera homographies,
    nearest first: the painted area, or where it is valid background outside ``source_holes``);
    repeated on what is left for up to ``max_references`` frames. Returns (frames, still unseen)."""
    t, h, w = unseen.shape
    out, unseen = frames.copy(), unseen.copy()
    for _ in range(max_references):
        counts = unseen.reshape(t, -1).sum(1)
        r = int(np.argmax(counts))
        if counts[r] == 0:
            break
        painted = unseen[r].copy()
        out[r] = painter(out[r], painted)
        unseen[r] = False
        lend = (painted | ~source_holes[r]).astype(np.uint8)
        for i in range(t):
            if i == r or not unseen[i].any():
                continue
            ys, xs = np.nonzero(unseen[i])
            src, ok = _map_pixels(ys, xs, cum, i, r, (h, w), margin)
            ok &= _sample(lend, src, nearest=True) > 0
            if ok.any():
                out[i, ys[ok], xs[ok]] = _sample(out[r], src[ok])
                unseen[i, ys[ok], xs[ok]] = False
    return out, unseen


def ring_structure(frame: np.ndarray, hole: np.ndarray, width: int = 15, sigma: float = 4.0) -> float:
    """How much large-scale structure surrounds ``hole``: the colour spread (mean per-channel std, grey
    levels) of the blurred frame in a ``width``-px ring around it. Gravel, grass or water (a texture)
    read low (DAVIS dog ~15-25); a table edge against a dark room reads high (~60), where copied patches
    make a collage that looks like remnants."""
    size = 2 * width + 1
    ring = (cv2.dilate(hole.astype(np.uint8), np.ones((size, size), np.uint8)) > 0) & ~hole
    if not ring.any():
        return 0.0
    blur = cv2.GaussianBlur(frame.astype(np.float32), (0, 0), sigma)
    return float(blur[ring].std(0).mean())


def spatial_fill(frame: np.ndarray, hole: np.ndarray, radius: int = 5, method: str = "telea") -> np.ndarray:
    if not hole.any():
        return frame.copy()
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    return cv2.cvtColor(cv2.inpaint(bgr, hole.astype(np.uint8), radius, flag), cv2.COLOR_BGR2RGB)


def seam_blend(original: np.ndarray, filled: np.ndarray, hole: np.ndarray, core: np.ndarray, width: int) -> np.ndarray:
    """Fade from ``original`` to ``filled`` over ``width`` px inside ``hole`` but never inside ``core``.

    ``core`` is the undilated object: there the original is the object, so only the fill is valid.
    """
    if width <= 0:
        return np.where(hole[..., None], filled, original)
    dist = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
    wgt = np.clip(dist / float(width), 0.0, 1.0)
    wgt[core] = 1.0
    wgt[~hole] = 0.0
    wgt = wgt[..., None]
    out = wgt * filled.astype(np.float32) + (1.0 - wgt) * original.astype(np.float32)
    return np.where(hole[..., None], np.clip(np.round(out), 0, 255).astype(np.uint8), original)


def source_exclusion(holes: np.ndarray, reach: int) -> np.ndarray:
    """Where each frame may not lend pixels: its own hole and, with ``reach`` > 0, the holes of the
    ``reach`` frames on either side. A mask that missed part of the object in one frame (the object
    is then visible there outside the hole) would otherwise lend the object to every other frame's
    fill, a ghost in the bg; the neighbours' holes usually still cover it."""
    if reach <= 0:
        return holes
    out = holes.copy()
    for d in range(1, reach + 1):
        out[d:] |= holes[:-d]
        out[:-d] |= holes[d:]
    return out


def exposure_gains(
    frames: np.ndarray, holes: np.ndarray, cum: np.ndarray, max_side: int = 160, low: int = 12, high: int = 243,
    min_pixels: int = 200, max_step: float = 0.2,
) -> np.ndarray:
    """(T, 3) float per-channel gain of each frame's exposure relative to frame 0 (auto-exposure, white
    balance): chained from consecutive frames, each step the median colour ratio of the background
    pixels both frames see (aligned by ``cum``, outside both holes, neither under- nor over-exposed).
    A step is 1 where fewer than ``min_pixels`` pixels agree, and clipped to 1 +- ``max_step``."""
    t, h, w = holes.shape
    scale = work_scale(h, w, max_side)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = np.stack([cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    grown = np.stack([cv2.resize(cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)), size[::-1],
                                 interpolation=cv2.INTER_NEAREST) for m in holes]) > 0
    s = np.diag([scale, scale, 1.0])
    gains = np.ones((t, 3))
    for i in range(1, t):
        m = s @ relative_homography(cum, i - 1, i) @ np.linalg.inv(s)  # frame i-1 -> frame i
        prev = warp(small[i - 1], m, size)
        ok = warp_valid(m, size, size) & ~grown[i] & (warp(grown[i - 1].astype(np.uint8), m, size, nearest=True) == 0)
        ok &= ((small[i] > low) & (small[i] < high) & (prev > low) & (prev < high)).all(-1)
        step = np.ones(3)
        if ok.sum() >= min_pixels:
            step = np.exp(np.median(np.log(small[i][ok] / prev[ok]), axis=0))
        gains[i] = gains[i - 1] * np.clip(step, 1 - max_step, 1 + max_step)
    return gains


def _relit(frames: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """``frames`` (uint8) with frame i's colours times ``gains[i]``, rounded and clipped."""
    return np.stack([cv2.multiply(f, (*map(float, g), 0.0)) for f, g in zip(frames, gains)])  # uint8, saturated


def inpaint_video(
    frames: np.ndarray,
    masks: np.ndarray,
    cum: np.ndarray,
    dilate: int = 6,
    shadow: float = 0.0,
    flow: bool = True,
    flow_max_side: int = 360,
    max_candidates: int = 5,
    max_sources: int = 12,
    spatial_radius: int = 5,
    spatial_method: str = "telea",
    seam: int = 3,
    source_reach: int = 0,
    painter: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    max_references: int = 2,
    exposure: bool = True,
) -> tuple[np.ndarray, dict[str, float]]:
    """Remove the masked object from every frame. ``cum``: frame -> frame-0 homographies.
    ``source_reach``: see :func:`source_exclusion`; ``painter``, ``max_references``: see
    :func:`reference_fill` (None: the spatial fill alone); ``exposure``: fill at one exposure, see
    :func:`exposure_gains`.

    Returns (background uint8 (T,H,W,3), stats: hole fraction, share filled along flow, share filled
    temporally in all).
    """
    holes = dilate_masks(masks, dilate, shadow=shadow)
    core = masks >= 128
    sources = source_exclusion(holes, source_reach)
    gains = exposure_gains(frames, holes, cum) if exposure and len(frames) > 1 else None
    work = frames if gains is None else _relit(frames, 1.0 / gains)  # every frame at frame 0's exposure
    if flow:
        filled, unseen = flow_fill(work, holes, cum, max_candidates=min(3, max_candidates), max_side=flow_max_side,
                                   source_holes=sources)
    else:
        filled, unseen = work, holes
    flow_unseen = int(unseen.sum())
    filled, unseen = temporal_fill(filled, unseen, cum, max_candidates, max_sources, source_holes=sources)
    temporal_unseen = int(unseen.sum())
    if painter is not None and temporal_unseen:
        filled, unseen = reference_fill(filled, unseen, cum, painter, sources, max_references)
    if gains is not None:  # back to each frame's own exposure; outside the holes, the input itself
        relit = frames.copy()
        for i, (hole, g) in enumerate(zip(holes, gains)):
            relit[i][hole] = np.clip(np.round(filled[i][hole] * g.astype(np.float32)), 0, 255).astype(np.uint8)
        filled = relit
    out = frames.copy()
    for i in range(len(frames)):
        # Only hole pixels change: Telea and the seam's distance transform run on the hole's box, grown
        # past Telea's radius (the same pixels come out; whole frames cost ~3x more)
        win = object_window(holes[i].astype(np.uint8), margin=spatial_radius + 2)
        if win is None:
            continue
        painted = spatial_fill(filled[i][win], unseen[i][win], spatial_radius, spatial_method)
        out[i][win] = seam_blend(frames[i][win], painted, holes[i][win], core[i][win], seam)
    hole_px = int(holes.sum())
    stats = {
        "hole_fraction": float(holes.mean()),
        "flow_fill_fraction": float(1.0 - flow_unseen / hole_px) if hole_px else 1.0,
        "temporal_fill_fraction": float(1.0 - temporal_unseen / hole_px) if hole_px else 1.0,
        "painted_fraction": float((temporal_unseen - unseen.sum()) / hole_px) if hole_px else 0.0,
    }
    return out, stats


def naive_inpaint(frames: np.ndarray, masks: np.ndarray, dilate: int = 6, radius: int = 5) -> np.ndarray:
    """Per-frame Telea baseline (no temporal information), for evaluation."""
    holes = dilate_masks(masks, dilate)
    return np.stack([spatial_fill(f, m, radius) for f, m in zip(frames, holes)])
