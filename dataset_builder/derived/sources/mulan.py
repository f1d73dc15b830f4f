"""The official MuLAn release (Tudosiu et al., CVPR 2024; huggingface.co/datasets/mulan-dataset/v1.0):
one annotation pickle per image over a COCO 2017 (train or val) or LAION-Aesthetics base image.

The dataset card documents each pickle as::

    "captioning": {"llava": ..., "blip2": ..., "clip": ...}          # model details
    "background": {"llava": detailed caption, "blip2": COCO-style caption,
                   "original_image_mask": where the base image is kept,
                   "inpainted_delta": additive inpainted content}
    "image":      {"llava": ..., "blip2": ...}                      # captions of the whole image
    "instances":  per instance, back to front: {"blip2"/"llava": captions, "original_image_mask",
                   "inpainted_delta", "instance_alpha"}

and its decomposition script rebuilds every RGBA layer as ``rgb = base * original_image_mask +
inpainted_delta`` with the instance alpha (the background is opaque). Files ship zlib-compressed
(``<id>.p.zl``); plain and gzip pickles are accepted too. Instances may be a list or a dict keyed by
index (sorted naturally). Annotations pair with base images by stem (COCO's zero padding ignored), or
through a CSV of (image, annotation) paths as the release's script takes.

Pickles are untrusted input: they are loaded with an allow-list unpickler (numpy arrays and plain
containers only), so a malicious file is a reject (``unsafe_pickle``), never code execution.
"""

from __future__ import annotations

import csv
import gzip
import io
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataset_builder.derived.sources.base import (
    IMAGE_EXTS,
    Problem,
    SourceError,
    expand_entries,
    natural_key,
    read_image,
)

ANNOTATION_SUFFIXES = (".p.zl", ".pkl.zl", ".pickle.zl", ".zl", ".pkl", ".pickle", ".p")
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in an annotation")


def annotation_stem(path: str | Path) -> str | None:
    """``000000000139.p.zl`` -> ``000000000139``; None if not an annotation file name."""
    name = Path(path).name
    for suffix in ANNOTATION_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def load_annotation(path: str | Path) -> dict[str, Any]:
    """The annotation dict. Raises SourceError ``annotation_unreadable`` / ``unsafe_pickle`` /
    ``corrupt_annotation`` (not a pickle, truncated, bad compression) / ``annotation_schema``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SourceError("annotation_unreadable", f"{path}: {exc}") from exc
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        elif data[:1] == b"\x78":  # zlib header (deflate, any level)
            data = zlib.decompress(data)
        obj = _SafeUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        reason = "unsafe_pickle" if "not allowed" in str(exc) else "corrupt_annotation"
        raise SourceError(reason, f"{path}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - zlib/EOF/value errors of a damaged file
        raise SourceError("corrupt_annotation", f"{path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise SourceError("annotation_schema", f"{path}: top level is {type(obj).__name__}, not a dict")
    return obj


@dataclass
class MulanStack:
    """Layers rebuilt from one annotation: opaque background + RGBA instances, back to front."""

    background: np.ndarray
    instances: list[np.ndarray]
    #: Per-layer captions: "bg", "blend" (the whole image) and "fg" (one per instance, may be "").
    captions: dict[str, Any] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)


def _instances(annotation: dict[str, Any], path: str) -> list[tuple[str, dict]]:
    raw = annotation.get("instances")
    if isinstance(raw, dict):
        if raw and all(isinstance(v, dict) for v in raw.values()):
            return [(str(k), raw[k]) for k in sorted(raw, key=lambda k: natural_key(str(k)))]
        raise SourceError("annotation_schema", f"{path}: 'instances' dict must map indices to instance dicts")
    if isinstance(raw, (list, tuple)) and all(isinstance(v, dict) for v in raw):
        return [(str(i), v) for i, v in enumerate(raw)]
    raise SourceError("annotation_schema", f"{path}: no 'instances' list/dict")


def _array(entry: dict, key: str, hw: tuple[int, int], path: str, what: str) -> np.ndarray:
    if key not in entry:
        raise SourceError("annotation_schema", f"{path}: {what} has no {key!r}")
    arr = np.asarray(entry[key])
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[1:] == hw:  # channel-first
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[:2] != hw:
        raise SourceError("size_mismatch", f"{path}: {what}[{key!r}] is {arr.shape[:2]}, base image is {hw}")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise SourceError("annotation_schema", f"{path}: {what}[{key!r}] has dtype {arr.dtype}")
    return arr.astype(np.float32)


def _unit(mask: np.ndarray) -> np.ndarray:
    """A mask/alpha as float [0, 1]: bool, 0..1 floats and 0..255 integers are all in use."""
    return mask / 255.0 if mask.max(initial=0) > 1.0 else mask


def _layer_rgb(image: np.ndarray, entry: dict, path: str, what: str) -> np.ndarray:
    hw = image.shape[:2]
    mask = _unit(_array(entry, "original_image_mask", hw, path, what))
    delta = _array(entry, "inpainted_delta", hw, path, what)
    if mask.ndim == 2:
        mask = mask[..., None]
    if delta.ndim == 2:
        delta = delta[..., None]
    rgb = image.astype(np.float32) * mask + delta
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)[..., :3]


def _caption(entry: Any, preferred: str) -> str:
    if not isinstance(entry, dict):
        return ""
    for key in (preferred, "blip2", "llava"):
        value = entry.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def decompose(image: np.ndarray, annotation: dict[str, Any], path: str = "", caption_model: str = "blip2"
              ) -> MulanStack:
    """Rebuild the layer stack of one base image (RGB uint8) from its annotation."""
    if not isinstance(annotation.get("background"), dict):
        raise SourceError("annotation_schema", f"{path}: no 'background' dict")
    background = _layer_rgb(image, annotation["background"], path, "background")
    instances, fg_captions, names = [], [], []
    for name, entry in _instances(annotation, path):
        rgb = _layer_rgb(image, entry, path, f"instance {name}")
        alpha = _unit(_array(entry, "instance_alpha", image.shape[:2], path, f"instance {name}"))
        if alpha.ndim == 3:
            alpha = alpha[..., 0]
        instances.append(np.dstack([rgb, np.clip(np.rint(alpha * 255), 0, 255).astype(np.uint8)]))
        fg_captions.append(_caption(entry, caption_model))
        names.append(f"instance_{name}")
    if not instances:
        raise SourceError("annotation_schema", f"{path}: 'instances' is empty")
    captions = {"bg": _caption(annotation["background"], caption_model),
                "blend": _caption(annotation.get("image"), caption_model), "fg": fg_captions}
    return MulanStack(background, instances, captions, names)


def load_stack(image_path: str | Path, annotation_path: str | Path, caption_model: str = "blip2") -> MulanStack:
    annotation = load_annotation(annotation_path)
    image = read_image(image_path, "base_image")[..., :3]
    return decompose(image, annotation, str(annotation_path), caption_model)


# -- discovery ---------------------------------------------------------------------------------------
def _image_index(roots: list[str]) -> dict[str, Path]:
    """stem -> base image under ``roots`` (recursive); COCO ids also by their unpadded number."""
    index: dict[str, Path] = {}
    for root in expand_entries(roots):
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        for path in files:
            index.setdefault(path.stem, path)
            if path.stem.isdigit():
                index.setdefault(str(int(path.stem)), path)
    return index


def read_pairs_csv(path: str | Path, image_column: str, annotation_column: str) -> list[tuple[str, str]]:
    """(image, annotation) paths from a CSV with a header; relative paths are relative to the CSV."""
    base = Path(path).parent
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and (image_column not in rows[0] or annotation_column not in rows[0]):
        raise ValueError(f"{path}: needs columns {image_column!r} and {annotation_column!r}, has {list(rows[0])}")

    def resolve(p: str) -> str:
        return str(Path(p) if Path(p).is_absolute() else base / p)

    return [(resolve(r[image_column]), resolve(r[annotation_column])) for r in rows]


def discover_mulan(annotations: list[str], image_roots: list[str]) -> tuple[list[tuple[str, str]], list[Problem]]:
    """(base image, annotation) pairs for the annotation files under ``annotations`` (files, folders,
    globs), matched by stem to images under ``image_roots``; a Problem per annotation without image."""
    index = _image_index(image_roots)
    pairs, problems = [], []
    files: list[Path] = []
    for entry in annotations:  # a mistyped path must not silently contribute nothing (as the other readers)
        if not expand_entries([entry]):
            problems.append(Problem(str(entry), "source_missing", f"{entry}: no annotation file, folder or match"))
    for entry in expand_entries(annotations):
        files += [entry] if entry.is_file() else sorted(p for p in entry.rglob("*") if annotation_stem(p))
    for ann in sorted(dict.fromkeys(files), key=lambda p: natural_key(str(p))):
        stem = annotation_stem(ann)
        if stem is None:
            continue
        image = index.get(stem) or (index.get(str(int(stem))) if stem.isdigit() else None)
        if image is None:
            problems.append(Problem(str(ann), "missing_base_image",
                                    f"no base image named {stem}.* under {image_roots} for {ann}"))
        else:
            pairs.append((str(image), str(ann)))
    return pairs, problems
