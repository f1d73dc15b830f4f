"""Image-matting sets (image + alpha), for static layered samples.

Any folder under ``root`` holding an alpha folder (``alpha``, ``mask``, ``GT``, ``matte``...) beside an
image folder or a foreground folder is one split:

* ``image`` + ``alpha`` (natural photos and their matte): AM-2k ``original/`` + ``mask/``, P3M-10k
  ``blurred_image/`` (P3M-500-NP: ``original_image/``) + ``mask/``, or plain ``image/`` + ``alpha/``.
  The background is the photo with the subject inpainted out; fg colour is estimated from the photo
  in the soft band.
* ``fg`` + ``alpha`` [+ ``bg``] (extracted foregrounds, composited onto other backgrounds, as
  Distinctions-646 ``FG/`` + ``GT/`` and Composition-1k do): the background is a real image, the one
  with the same stem in ``bg/`` if any, else one drawn deterministically from ``bg/`` or from the
  configured background folders. No background at all is a reject (``no_background``).

Entries pair by file stem; an image without alpha is ``missing_alpha``, an alpha without image
``missing_image``, an alpha folder without an image/fg folder beside it ``unknown_layout``; a size
mismatch between image and alpha is ``size_mismatch`` when loaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_builder.derived.sources.base import (
    IMAGE_EXTS,
    Problem,
    SourceError,
    entries_by_stem,
    folders_under,
    find_child,
    natural_key,
    read_alpha,
    read_image,
)

IMAGE_DIRS = ("image", "images", "original", "original_image", "blurred_image", "merged", "im", "img")
FG_DIRS = ("fg", "foreground")
ALPHA_DIRS = ("alpha", "alphas", "mask", "masks", "matte", "mattes", "gt", "pha")
BG_DIRS = ("bg", "background", "backgrounds")


@dataclass(frozen=True)
class MattingImageRef:
    item_id: str
    #: "image": a photo to be decomposed; "fg": an extracted foreground to composite over ``bg``.
    kind: str
    image: str
    alpha: str
    bg: str = ""


def _pick(pool: list[Path], key: str) -> Path:
    return pool[int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % len(pool)]


def discover_image_matting(root: str | Path, backgrounds: list[Path] | None = None,
                           image_dirs=IMAGE_DIRS, fg_dirs=FG_DIRS, alpha_dirs=ALPHA_DIRS, bg_dirs=BG_DIRS
                           ) -> tuple[list[MattingImageRef], list[Problem]]:
    """Every (image|fg, alpha[, bg]) entry under ``root`` plus a Problem per malformed one."""
    root = Path(root)
    if not root.is_dir():
        return [], [Problem(str(root), "source_missing", f"{root}: not a directory")]
    refs: list[MattingImageRef] = []
    problems: list[Problem] = []
    pool_extra = sorted(backgrounds or [], key=lambda p: natural_key(str(p)))
    folders = folders_under(root)
    for folder in folders:
        alpha_dir = find_child(folder, alpha_dirs)
        image_dir, fg_dir = find_child(folder, image_dirs), find_child(folder, fg_dirs)
        if alpha_dir is None:
            continue
        if image_dir is None and fg_dir is None:  # a split we cannot read must not vanish silently
            problems.append(Problem(str(alpha_dir), "unknown_layout",
                                    f"{alpha_dir} has no image or foreground folder beside it "
                                    f"(looked for {list(image_dirs) + list(fg_dirs)})"))
            continue
        alphas = entries_by_stem(alpha_dir, IMAGE_EXTS)
        bg_dir = find_child(folder, bg_dirs)
        bgs = entries_by_stem(bg_dir, IMAGE_EXTS) if bg_dir else {}
        pool = list(bgs.values()) or pool_extra
        prefix = folder.relative_to(root).as_posix()
        # A split with both (Composition-1k: merged/ + fg/ + bg/) is read as fg + real bg, never inpainted.
        kind, source = ("fg", fg_dir) if fg_dir is not None else ("image", image_dir)
        sources = entries_by_stem(source, IMAGE_EXTS)
        for stem, path in alphas.items():
            if stem not in sources:
                problems.append(Problem(str(path), "missing_image", f"no {source.name}/{stem}.* for {path}"))
        for stem, path in sources.items():
            item_id = f"{prefix}/{stem}" if prefix != "." else stem
            alpha = alphas.get(stem)
            if alpha is None:
                problems.append(Problem(str(path), "missing_alpha", f"no {alpha_dir.name}/{stem}.* for {path}"))
                continue
            bg = ""
            if kind == "fg":
                if not pool:
                    problems.append(Problem(str(path), "no_background",
                                            f"{path}: a foreground needs a bg/ folder or configured backgrounds"))
                    continue
                bg = str(bgs.get(stem) or _pick(pool, item_id))
            refs.append(MattingImageRef(item_id, kind, str(path), str(alpha), bg))
    if not refs and not problems:
        problems.append(Problem(str(root), "source_empty", f"no image/fg + alpha folders under {root}"))
    return refs, problems


def load_matting_image(ref: MattingImageRef) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(image or fg RGB uint8, alpha uint8, bg RGB uint8 or None). Raises SourceError on malformed data."""
    image = read_image(ref.image, "image")[..., :3]
    alpha = read_alpha(ref.alpha)
    if image.shape[:2] != alpha.shape:
        raise SourceError("size_mismatch", f"image {image.shape[:2]} vs alpha {alpha.shape} ({ref.image})")
    if not (alpha > 0).any():
        raise SourceError("empty_alpha", f"{ref.alpha}: alpha is zero everywhere")
    bg = read_image(ref.bg, "bg")[..., :3] if ref.bg else None
    return image, alpha, bg
