"""Person (selfie) segmentation with MediaPipe's bundled TFLite models, and its pre/post-processing.

The models (Apache-2.0, fetched by ``workflows/fetch_cpu_models.py``) take RGB in 0..1 at 256x256
("square") or 144x256 ("landscape") and return a per-pixel person probability. Frames are letterboxed
(aspect kept, zero padding) into the input of the variant whose aspect is closest, and the output is
cropped back and resized. Interpreter: ``ai-edge-litert`` or ``tflite-runtime``; when neither the files
nor an interpreter are there, :func:`load_selfie_model` returns ``None`` and callers fall back.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal

import cv2
import numpy as np

log = logging.getLogger(__name__)

Variant = Literal["square", "landscape"]
SELFIE_MODELS: dict[Variant, str] = {
    "square": "selfie_segmentation.tflite",
    "landscape": "selfie_segmentation_landscape.tflite",
}
#: Labels a tagger may use for people; any of them in the prompts switches the person mode on.
PERSON_LABELS = frozenset({
    "person", "people", "man", "men", "woman", "women", "child", "children", "kid", "kids", "boy", "girl",
    "baby", "human", "player", "rider", "cyclist", "dancer", "athlete", "skier", "surfer", "pedestrian",
})
_warned: set[str] = set()


def default_model_dir() -> Path:
    env = os.environ.get("LAYERFLOW_CPU_MODELS")
    return Path(env) if env else Path.home() / ".cache" / "layerflow" / "cpu_models"


def person_prompt(prompts: list[str]) -> str | None:
    """The first person-like prompt ("a man" and "People" count), else None."""
    for p in prompts:
        words = p.lower().replace(",", " ").split()
        if any(w in PERSON_LABELS for w in words):
            return p
    return None


def _log_once(key: str, msg: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.info(msg)


def _interpreter_class() -> Any | None:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            return None
    return Interpreter


def load_selfie_model(
    model_dir: Path | None = None, variant: Variant = "landscape", num_threads: int = 1
) -> Any | None:
    """A ready TFLite interpreter for one selfie variant, or None (logged once at INFO) when the model
    file or an interpreter package is missing: the person mode is an optional extra, never a crash."""
    path = (model_dir or default_model_dir()) / SELFIE_MODELS[variant]
    if not path.is_file():
        _log_once(f"file:{path}", f"person segmentation off: {path} missing (run workflows/fetch_cpu_models.py)")
        return None
    cls = _interpreter_class()
    if cls is None:
        _log_once("interp", "person segmentation off: no TFLite interpreter (pip install ai-edge-litert)")
        return None
    try:
        interp = cls(model_path=str(path), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        _log_once(f"load:{path}", f"person segmentation off: cannot load {path}: {exc}")
        return None
    return interp


def pick_variant(height: int, width: int) -> Variant:
    """The variant whose input aspect (1 or 16:9) is closest to the frame's, in log space."""
    aspect = np.log(width / height)
    return "square" if abs(aspect) < abs(aspect - np.log(256 / 144)) else "landscape"


@dataclass(frozen=True)
class Letterbox:
    """Where the scaled frame sits in the model input: rows top..top+height, cols left..left+width."""

    top: int
    left: int
    height: int
    width: int


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Scale ``image`` (H, W[, C]) to fit ``size`` (h, w) keeping its aspect, centre it, zero-pad."""
    th, tw = size
    h, w = image.shape[:2]
    s = min(th / h, tw / w)
    nh, nw = min(th, max(1, round(h * s))), min(tw, max(1, round(w * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(image, (nw, nh), interpolation=interp)
    out = np.zeros((th, tw) + image.shape[2:], image.dtype)
    top, left = (th - nh) // 2, (tw - nw) // 2
    out[top : top + nh, left : left + nw] = scaled
    return out, Letterbox(top, left, nh, nw)


def unletterbox(output: np.ndarray, box: Letterbox, size: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`letterbox` for a model output (h, w): crop the content, resize to ``size`` (H, W)."""
    crop = output[box.top : box.top + box.height, box.left : box.left + box.width]
    return cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def run_selfie(interpreter: Any, frames: np.ndarray, out_size: tuple[int, int] | None = None) -> np.ndarray:
    """Float32 (T, H, W) person probability in 0..1 for uint8 RGB frames (T, H, W, 3).

    ``out_size`` (H, W): resolution of the result (default: the frames'); the model sees at most
    256 px anyway, so callers may ask for their work resolution directly.
    """
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    size = (int(inp["shape"][1]), int(inp["shape"][2]))
    out_size = out_size or frames.shape[1:3]
    probs = np.empty((len(frames),) + tuple(out_size), np.float32)
    for t, frame in enumerate(frames):
        x, box = letterbox(frame, size)
        interpreter.set_tensor(inp["index"], (x.astype(np.float32) / 255.0)[None])
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])[0, ..., 0]
        probs[t] = np.clip(unletterbox(y, box, out_size), 0.0, 1.0)
    return probs


def smooth_probs(probs: np.ndarray, sigma: float = 1.0, eps: float = 0.05) -> np.ndarray:
    """Temporal Gaussian smoothing of (T, H, W) probabilities, weighted by each frame's confidence
    ``|2p - 1|``: a frame where the model hesitates (flicker) borrows from its confident neighbours,
    while confident frames barely change. ``sigma`` in frames; 0 returns the input."""
    if sigma <= 0 or len(probs) < 2:
        return probs
    radius = max(1, int(round(2 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    conf = np.abs(2 * probs - 1) + eps
    num = np.zeros_like(probs)
    den = np.zeros_like(probs)
    t_len = len(probs)
    for t in range(t_len):
        for off, k in zip(offsets, kernel):
            s = t + off
            if 0 <= s < t_len:
                w = k * conf[s]
                num[t] += w * probs[s]
                den[t] += w
    return num / den


# -- person masks inside detector boxes (keyframe segmenter) ---------------------------------------
def load_person_net(kind: str, model_dir: Path | None = None, threads: int = 1) -> Callable | None:
    """A callable uint8 RGB (H, W, 3) -> float32 person probability (H, W) for ``kind`` ("modnet",
    "selfie"), or None for "none" or when its file/runtime is missing (warned once: people then get
    U^2-Net like every other object)."""
    if kind == "selfie":
        interp = load_selfie_model(model_dir, "square", threads)
        return None if interp is None else (lambda image: run_selfie(interp, image[None])[0])
    if kind == "modnet":
        from dataset_builder.models.cpu.nets import Modnet
        from dataset_builder.models.cpu.zoo import ModelFileMissing

        try:
            return Modnet(model_dir, threads)
        except (ModelFileMissing, ImportError) as exc:
            if "modnet" not in _warned:
                _warned.add("modnet")
                log.warning("person model off (people segmented by U^2-Net): %s", exc)
    return None


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def merge_person_masks(
    candidates: list[tuple[np.ndarray, str, float]], people: list[tuple[np.ndarray, float]],
    duplicate_iou: float = 0.5, person_label: str = "person",
) -> list[tuple[np.ndarray, str, float]]:
    """Keyframe candidates (mask, label, score) with person-model masks (mask, score) of detected people.

    - a region holding two or more people (half of each person's mask inside it: a crowd U^2-Net
      merged) is replaced by the people, one candidate each, so instances do not merge;
    - a region holding one person keeps its U^2-Net mask (a rider with the horse, a player with the
      racket; measured: giving person-only regions the person model's outline lowered J on DAVIS);
    - a person mask no region explains is a new candidate unless it duplicates one (IoU > ``duplicate_iou``).
    """
    out: list[tuple[np.ndarray, str, float]] = []
    explained: set[int] = set()  # people inside one kept region
    for mask, label, score in candidates:
        inside = [i for i, (p, _) in enumerate(people) if (p & mask).sum() >= 0.5 * max(1, int(p.sum()))]
        if len(inside) >= 2:
            continue  # a merged crowd: its people are added below
        explained.update(inside)
        out.append((mask, label, score))
    for i, (p, s) in enumerate(people):
        if i not in explained and not any(_iou(p, o[0]) > duplicate_iou for o in out):
            out.append((p, person_label, s))
    return out
