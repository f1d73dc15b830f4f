"""Single-image foreground matting without learned models (pure functions, no Ray).

Pipeline, all at a small working resolution for speed: spectral-residual saliency blended with a
centre prior -> GrabCut seeded from that prior (border = sure background) -> largest component ->
trimap (eroded / dilated mask) -> closed-form or KNN matting (pymatting) -> alpha upsampled to full size.
It targets the "one salient, roughly central object" case of photo collections; anything else is
rejected by the caller through the area bounds.
"""

from __future__ import annotations

import cv2
import numpy as np


def spectral_residual_saliency(image: np.ndarray, size: int = 64) -> np.ndarray:
    """Hou & Zhang (CVPR 2007) saliency of an RGB uint8 image, float32 in [0, 1] at the image size."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    small = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    spectrum = np.fft.fft2(small)
    log_amp = np.log(np.abs(spectrum) + 1e-6).astype(np.float32)
    residual = log_amp - cv2.blur(log_amp, (3, 3), borderType=cv2.BORDER_REPLICATE)
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), sigmaX=max(1.0, size / 24))
    sal = cv2.resize(sal, (w, h), interpolation=cv2.INTER_LINEAR)
    return _normalise(sal)


def center_prior(height: int, width: int, sigma: float = 0.3) -> np.ndarray:
    """Isotropic Gaussian in normalised coordinates, 1 at the image centre."""
    y = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
    x = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))


def object_prior(image: np.ndarray, center_weight: float = 0.5, saliency: np.ndarray | None = None) -> np.ndarray:
    """Where the object probably is: a saliency map (spectral residual unless one is given, e.g. U^2-Net's),
    pulled towards the centre. float32 [0, 1]."""
    h, w = image.shape[:2]
    sal = spectral_residual_saliency(image) if saliency is None else _normalise(saliency)
    prior = (1 - center_weight) * sal + center_weight * center_prior(h, w)
    return _normalise(prior)


def resolved_saliency(kind: str) -> str:
    """What ``kind`` will run here ("u2net" or "spectral"), cheaply (no model loaded): for config hashes."""
    if kind != "auto":
        return kind
    try:
        import onnxruntime  # noqa: F401

        from dataset_builder.models.cpu.zoo import models_present
    except ImportError:
        return "spectral"
    return "u2net" if models_present(["u2net.onnx"]) else "spectral"


def load_saliency_model(kind: str):
    """A callable uint8 RGB (H, W, 3) -> float (H, W) saliency, or None for the spectral residual.

    ``u2net`` needs the CPU model runtime (``dataset_builder.models.cpu.nets``) and its fetched file and
    raises if either is missing; ``auto`` falls back to None instead."""
    if kind == "spectral":
        return None
    try:
        from dataset_builder.models.cpu.nets import U2Net

        return U2Net(precision="bf16")  # as tuned (max_saliency_uncertainty); int8 is unmeasured here
    except (ImportError, FileNotFoundError):
        if kind == "u2net":
            raise
        return None


def grabcut_from_prior(image: np.ndarray, prior: np.ndarray, iters: int = 5, border: int = 2) -> np.ndarray:
    """Binary object mask (bool) from GrabCut seeded by a soft prior.

    Otsu on the prior gives "probably foreground"; a thin image border is "surely background" so the
    colour models always have background samples.
    """
    prior_u8 = np.round(prior * 255).astype(np.uint8)
    threshold, _ = cv2.threshold(prior_u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    gc = np.where(prior_u8 > threshold, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    gc[:border], gc[-border:], gc[:, :border], gc[:, -border:] = (cv2.GC_BGD,) * 4
    if not (gc == cv2.GC_PR_FGD).any():
        return np.zeros(prior.shape, bool)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means init draws from OpenCV's global RNG: fix it for reproducibility
    cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), gc, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    return (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool mask, with its holes filled."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, bool)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    component = (labels == biggest).astype(np.uint8)
    contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(component)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def remove_thin_structures(mask: np.ndarray, radius: int) -> np.ndarray:
    """Morphological opening: cuts thin bridges (GrabCut leaks along edges and lines) so they don't join the
    object or widen the trimap; blobs thicker than ``2 * radius`` survive unchanged in extent."""
    if radius < 1:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)


def make_trimap(mask: np.ndarray, band: int) -> np.ndarray:
    """float64 trimap for pymatting: 1 sure fg (eroded), 0 sure bg (outside dilation), 0.5 unknown."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    m = mask.astype(np.uint8)
    trimap = np.full(mask.shape, 0.5)
    trimap[cv2.erode(m, kernel) > 0] = 1.0
    trimap[cv2.dilate(m, kernel) == 0] = 0.0
    return trimap


def estimate_alpha(image: np.ndarray, trimap: np.ndarray, method: str = "cf") -> np.ndarray:
    """Soft alpha (float64 [0, 1]) inside the trimap's unknown band."""
    from pymatting import estimate_alpha_cf, estimate_alpha_knn

    if not ((trimap == 1).any() and (trimap == 0).any()):
        return (trimap >= 0.5).astype(np.float64)
    solver = {"cf": estimate_alpha_cf, "knn": estimate_alpha_knn}[method]
    return np.clip(solver(image.astype(np.float64) / 255.0, trimap), 0.0, 1.0)


def saliency_uncertainty(saliency: np.ndarray) -> float:
    """Pixels a saliency map leaves undecided (0.1 < s < 0.9) per pixel it calls object (s > 0.5): a
    learned map is crisp around a real subject (~0.05-0.1) and grey over clutter (~1)."""
    return float(((saliency > 0.1) & (saliency < 0.9)).sum() / max(1, (saliency > 0.5).sum()))


def matte_salient_object(
    image: np.ndarray,
    working_size: int = 192,
    method: str = "cf",
    grabcut_iters: int = 5,
    trimap_band: float = 0.02,
    center_weight: float = 0.5,
    saliency_model=None,
    stats: dict[str, float] | None = None,
) -> np.ndarray:
    """Alpha (uint8 (H, W), 0..255) of the salient/central object of an RGB uint8 image.

    Without ``saliency_model`` (see :func:`load_saliency_model`): GrabCut seeded by spectral residual +
    centre prior. With one (U^2-Net): its map, thresholded at 0.5, is the mask (GrabCut's colour models
    would cut a person back to the face); ``stats["saliency_uncertainty"]`` lets the caller reject a
    map that is unsure (:func:`saliency_uncertainty`)."""
    h, w = image.shape[:2]
    scale = min(1.0, working_size / max(h, w))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image
    if saliency_model is not None:  # the model sees the full image; its map is resized to the working copy
        saliency = _normalise(cv2.resize(np.asarray(saliency_model(image), np.float32), size,
                                         interpolation=cv2.INTER_AREA))
        saliency = _normalise(object_prior(small, center_weight, saliency)) if center_weight > 0 else saliency
        if stats is not None:
            stats["saliency_uncertainty"] = saliency_uncertainty(saliency)
        mask = saliency > 0.5
    else:
        mask = grabcut_from_prior(small, object_prior(small, center_weight), grabcut_iters)
    mask = largest_component(remove_thin_structures(mask, max(1, round(0.015 * max(small.shape[:2])))))
    if not mask.any():
        return np.zeros((h, w), np.uint8)
    band = max(1, round(trimap_band * float(np.hypot(*small.shape[:2]))))
    alpha = estimate_alpha(small, make_trimap(mask, band), method).astype(np.float32)
    if small.shape[:2] != (h, w):
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.rint(alpha * 255), 0, 255).astype(np.uint8)


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Un-mixed foreground colours (uint8 RGB) at soft edges (pymatting multi-level estimation), so that
    fg * a + bg * (1 - a) reproduces the image instead of a halo of background colour."""
    from pymatting import estimate_foreground_ml

    fg = estimate_foreground_ml(image.astype(np.float64) / 255.0, alpha.astype(np.float64) / 255.0)
    return np.clip(np.rint(fg * 255), 0, 255).astype(np.uint8)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
