"""Object removal from a single image without learned models: exemplar-based inpainting (Criminisi,
Perez & Toyama 2004), the classical fill that continues texture and edges into the hole instead of
smearing the border inward as diffusion fills (Telea / Navier-Stokes) do on large holes.

Runs at a working resolution (patch search with ``cv2.matchTemplate`` over fully known patches, fill
order by confidence x isophote strength), then transfers the found *source offsets* to full resolution
and copies full-resolution pixels, so the fill keeps the image's own sharpness. A short feather blends
the seam. Frames of a video are filled one by one (no temporal consistency: use the ``cpu`` inpainter
for clips, this one for images).
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from dataset_builder.config import BackendSpec
from dataset_builder.models.cpu._common import Options, parse_options


class ExemplarOptions(Options):
    #: Hole = mask (> 0) grown by this many px at full resolution (soft edges, halo, contact shadow).
    dilate: int = Field(6, ge=0)
    #: Longer side of the working image the patch search runs at.
    work_max_side: int = Field(256, ge=32)
    #: Patch side at working resolution (odd).
    patch: int = Field(9, ge=3)
    #: Width in px (full resolution) of the fade from the input into the fill.
    seam: int = Field(2, ge=0)
    #: Patch search radius around the target patch at working resolution (nearby texture fits best).
    search_radius: int = Field(64, ge=8)


def _odd(n: int) -> int:
    return n if n % 2 else n + 1


def exemplar_offsets(image: np.ndarray, hole: np.ndarray, patch: int = 9, search_radius: int = 64
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Fill ``hole`` (bool) of ``image`` (uint8 RGB) patch by patch. Returns (filled image uint8, offsets
    int32 (H, W, 2)): each pixel's source position minus its own (0 outside the hole)."""
    h, w = hole.shape
    half = _odd(patch) // 2
    known = ~hole
    if known.all():
        return image.copy(), np.zeros((h, w, 2), np.int32)
    if not known.any():
        raise ValueError("nothing known to fill the hole from")
    pad = ((half, half), (half, half))
    img = np.pad(image.astype(np.float32) * known[..., None], (*pad, (0, 0)))
    kn = np.pad(known, pad)
    inside = np.pad(np.ones((h, w), bool), pad)
    conf = kn.astype(np.float32)
    src = np.stack(np.mgrid[0:h + 2 * half, 0:w + 2 * half], -1).astype(np.int32)
    kernel = np.ones((2 * half + 1, 2 * half + 1), np.uint8)
    # sources: patches entirely inside the image and known from the start
    valid = cv2.erode((kn & inside).astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    valid_centres = valid[half:-half, half:-half] if half else valid
    if not valid_centres.any():
        raise ValueError("no fully known patch to copy from")
    gray = cv2.cvtColor(np.pad(image, (*pad, (0, 0)), mode="edge"), cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx, gy = cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    strength = np.hypot(gx, gy) / 255.0 * kn
    size = 2 * half + 1
    while not kn[inside].all():
        front = (cv2.dilate(kn.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~kn & inside
        c = cv2.boxFilter(conf, -1, (size, size), normalize=True, borderType=cv2.BORDER_CONSTANT)
        d = cv2.dilate(strength, kernel)  # isophote strength next to the front: edges are continued first
        priority = np.where(front, c * (0.1 + d), -1.0)
        y, x = np.unravel_index(int(np.argmax(priority)), priority.shape)
        y = min(max(y, half), h + half - 1)
        x = min(max(x, half), w + half - 1)
        win = (slice(y - half, y + half + 1), slice(x - half, x + half + 1))
        template, mask = img[win], kn[win].astype(np.float32)
        if mask.sum() == 0:  # isolated: take the nearest known value
            mask = np.ones_like(mask)
        # search window (centres, in padded coordinates), grown until it holds a usable source
        radius = search_radius
        while True:
            y0, y1 = max(half, y - radius), min(h + half, y + radius + 1)
            x0, x1 = max(half, x - radius), min(w + half, x + radius + 1)
            ok = valid_centres[y0 - half:y1 - half, x0 - half:x1 - half]
            if ok.any() or radius > max(h, w):
                break
            radius *= 2
        region = img[y0 - half:y1 + half, x0 - half:x1 + half]
        cost = cv2.matchTemplate(region, template, cv2.TM_SQDIFF, mask=np.repeat(mask[..., None], 3, -1))
        cost = np.where(ok, cost, np.inf)
        sy, sx = np.unravel_index(int(np.argmin(cost)), cost.shape)
        sy, sx = sy + y0, sx + x0
        todo = ~kn[win] & inside[win]
        source = (slice(sy - half, sy + half + 1), slice(sx - half, sx + half + 1))
        img[win][todo] = img[source][todo]
        src[win][todo] = src[source][todo]
        conf[win][todo] = c[y, x]
        strength[win][todo] = strength[source][todo]
        kn[win] |= todo
    core = (slice(half, half + h), slice(half, half + w))
    offsets = src[core] - np.stack(np.mgrid[half:half + h, half:half + w], -1)
    return np.clip(np.rint(img[core]), 0, 255).astype(np.uint8), offsets.astype(np.int32)


def _vote(image: np.ndarray, hole: np.ndarray, src_y: np.ndarray, src_x: np.ndarray, radius: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """Wexler-style voting: each hole pixel averages the pixels its neighbours' offsets point to, which
    blends the seams between copied patches. Returns (colour float32, weight) (weight 0: no vote)."""
    h, w = hole.shape
    ys, xs = np.nonzero(hole)
    acc = np.zeros((len(ys), 3), np.float32)
    count = np.zeros(len(ys), np.float32)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            ny, nx = np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)
            ty, tx = src_y[ny, nx] - dy, src_x[ny, nx] - dx  # where neighbour's source says *this* pixel is
            inb = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
            ty, tx = np.clip(ty, 0, h - 1), np.clip(tx, 0, w - 1)
            good = inb & ~hole[ty, tx]
            acc[good] += image[ty[good], tx[good]]
            count[good] += 1
    colour = np.zeros((h, w, 3), np.float32)
    weight = np.zeros((h, w), np.float32)
    colour[ys, xs] = acc / np.maximum(count, 1)[:, None]
    weight[ys, xs] = count
    return colour, weight


def exemplar_fill(image: np.ndarray, hole: np.ndarray, patch: int = 9, work_max_side: int = 256,
                  seam: int = 2, search_radius: int = 64) -> np.ndarray:
    """Full-resolution fill of ``hole`` (bool) in ``image`` (uint8 RGB) from a working-resolution search."""
    h, w = hole.shape
    if not hole.any():
        return image.copy()
    scale = min(1.0, work_max_side / max(h, w))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image
    small_hole = cv2.resize(hole.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0 if scale < 1 else hole
    filled_small, offsets = exemplar_offsets(small, small_hole, patch, search_radius)
    sy, sx = small.shape[0] / h, small.shape[1] / w
    off = cv2.resize(offsets.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST) if scale < 1 \
        else offsets.astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    src_y = np.rint(yy + off[..., 0] / sy).astype(np.int32)
    src_x = np.rint(xx + off[..., 1] / sx).astype(np.int32)
    colour, weight = _vote(image, hole, src_y, src_x, radius=max(1, round(0.5 * _odd(patch) / max(sy, sx) / 2)))
    fallback = cv2.resize(filled_small, (w, h), interpolation=cv2.INTER_LINEAR) if scale < 1 else filled_small
    fill = np.where((weight > 0)[..., None], colour, fallback)  # no usable vote: the working-resolution fill
    out = np.where(hole[..., None], fill, image).astype(np.float32)
    if seam > 0:
        dist = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
        weight = np.clip(dist / (seam + 1), 0, 1)[..., None]
        smooth = cv2.GaussianBlur(out, (0, 0), max(0.8, seam / 2))
        out = np.where(hole[..., None] & (weight < 1), smooth * (1 - weight) + out * weight, out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class ExemplarInpainter:
    """Inpainter backend (``inpaint.name: exemplar``) for single images (static layered samples)."""

    def __init__(self, spec: BackendSpec):
        self.options = parse_options(ExemplarOptions, spec, "inpaint/exemplar")

    def inpaint(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        o = self.options
        if frames.shape[:3] != masks.shape:
            raise ValueError(f"frames {frames.shape} and masks {masks.shape} disagree")
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * o.dilate + 1, 2 * o.dilate + 1))
        return np.stack([exemplar_fill(f, cv2.dilate((m > 0).astype(np.uint8), kernel) > 0, o.patch,
                                       o.work_max_side, o.seam, o.search_radius) for f, m in zip(frames, masks)])
