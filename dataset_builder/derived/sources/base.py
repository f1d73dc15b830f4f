"""Shared pieces of the source readers: the error type that carries a reject reason, file pairing by
stem, and image loading."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm")


class SourceError(ValueError):
    """A malformed source entry. ``reason`` is the reject reason (``missing_alpha``, ``size_mismatch``...)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Problem:
    """A malformed entry found at discovery time; becomes a reject of ``uri`` with ``reason``."""

    uri: str
    reason: str
    detail: str


def natural_key(text: str) -> list:
    """Sort key where ``frame2`` sorts before ``frame10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text.lower())]


def expand_entries(entries: list[str]) -> list[Path]:
    """Existing paths named by ``entries`` (paths or globs), in order, without duplicates."""
    out: list[Path] = []
    for entry in entries:
        path = Path(entry)
        out += [path] if path.exists() else [Path(p) for p in sorted(glob.glob(entry, recursive=True))]
    return list(dict.fromkeys(out))


def folders_under(root: Path) -> list[Path]:
    """``root`` and every folder below it, in natural order (where a reader looks for its layout)."""
    return [root, *sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: natural_key(str(p)))]


def find_child(folder: Path, names: list[str] | tuple[str, ...]) -> Path | None:
    """The first existing sub-folder of ``folder`` among ``names`` (exact case first, then any case)."""
    for name in names:
        if (folder / name).is_dir():
            return folder / name
    lower = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else {}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def entries_by_stem(folder: Path, exts: tuple[str, ...], dirs: bool = False) -> dict[str, Path]:
    """stem -> file with one of ``exts`` (or sub-folder, with ``dirs``) directly in ``folder``."""
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if path.is_file() and path.suffix.lower() in exts:
            out.setdefault(path.stem, path)
        elif dirs and path.is_dir():
            out.setdefault(path.name, path)
    return out


def frame_files(folder: Path) -> list[Path]:
    """Image files of a frame-sequence folder, in natural order."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS),
                  key=lambda p: natural_key(p.name))


def read_image(path: str | Path, what: str = "image") -> np.ndarray:
    """uint8 RGB (H, W, 3), or RGBA (H, W, 4) if the file has alpha. Raises SourceError(``<what>_unreadable``)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SourceError(f"{what}_unreadable", f"{path}: not a readable image")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[..., None], 3, axis=-1))
    if image.shape[2] == 4:
        return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))
    return np.ascontiguousarray(image[..., 2::-1])


def read_alpha(path: str | Path) -> np.ndarray:
    """uint8 (H, W) matte: a gray file, the first channel of an RGB one, or the alpha of an RGBA one
    (matting sets store alpha all three ways)."""
    image = read_image(path, "alpha")
    if image.shape[2] == 4 and (image[..., 3] < 255).any():
        return np.ascontiguousarray(image[..., 3])
    return np.ascontiguousarray(image[..., 0])
