"""(Foreground video, alpha video) pairs of video-matting sets, for copy-paste.

Layouts (``VideoMattingSet.layout``):

* ``videomatte``: VideoMatte240K. Any folder under ``root`` holding ``fgr/`` and ``pha/`` (``train/``,
  ``test/``...) pairs ``fgr/<id>.mp4`` with ``pha/<id>.mp4``, or ``fgr/<id>/`` frame folders (the JPEG
  release ``fgr/0000/00000.jpg``) with ``pha/<id>/``.
* ``dirs``: the same with other folder names (``fg_dir`` / ``alpha_dir``, default ``fg`` / ``alpha``).
* ``suffix``: siblings ``<id><fg_suffix>.<ext>`` and ``<id><alpha_suffix>.<ext>`` in one folder.

VideoMatte240K's fgr videos are already un-mixed foreground colour (that is what makes them paste
cleanly), so fg is used as is; the alpha video is read as gray (its first channel).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_builder.derived.sources.base import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    Problem,
    SourceError,
    entries_by_stem,
    folders_under,
    frame_files,
    read_image,
)


@dataclass(frozen=True)
class MattingClipRef:
    clip_id: str
    fg: str
    alpha: str


def _pair_dirs(fg_dir: Path, alpha_dir: Path, set_root: Path) -> tuple[list[MattingClipRef], list[Problem]]:
    fgs = entries_by_stem(fg_dir, VIDEO_EXTS, dirs=True)
    alphas = entries_by_stem(alpha_dir, VIDEO_EXTS, dirs=True)
    refs, problems = [], []
    for stem, fg in fgs.items():
        alpha = alphas.get(stem)
        if alpha is None:
            problems.append(Problem(str(fg), "missing_alpha", f"no {alpha_dir.name}/{stem}[.*] beside {fg}"))
            continue
        refs.append(MattingClipRef(_clip_id(set_root, fg_dir.parent, stem), str(fg), str(alpha)))
    for stem, alpha in alphas.items():
        if stem not in fgs:
            problems.append(Problem(str(alpha), "missing_foreground", f"no {fg_dir.name}/{stem}[.*] beside {alpha}"))
    return refs, problems


def _clip_id(set_root: Path, folder: Path, stem: str) -> str:
    """``<folder relative to the set root>/<stem>``, e.g. ``train/0003``: unique within the set."""
    return (folder.relative_to(set_root) / stem).as_posix()


def discover_video_matting(root: str | Path, layout: str = "videomatte", fg_dir: str = "fgr", alpha_dir: str = "pha",
                           fg_suffix: str = "_fg", alpha_suffix: str = "_alpha"
                           ) -> tuple[list[MattingClipRef], list[Problem]]:
    """All (fg, alpha) pairs under ``root``, plus a Problem per unpaired entry. Sorted, deterministic."""
    root = Path(root)
    if not root.is_dir():
        return [], [Problem(str(root), "source_missing", f"{root}: not a directory")]
    refs: list[MattingClipRef] = []
    problems: list[Problem] = []
    if layout in ("videomatte", "dirs"):
        if layout == "videomatte":
            fg_dir, alpha_dir = "fgr", "pha"
        folders = folders_under(root)
        for folder in folders:
            if (folder / fg_dir).is_dir() and (folder / alpha_dir).is_dir():
                r, p = _pair_dirs(folder / fg_dir, folder / alpha_dir, root)
                refs += r
                problems += p
        if not refs and not problems:
            problems.append(Problem(str(root), "source_empty", f"no {fg_dir}/ + {alpha_dir}/ folders under {root}"))
    elif layout == "suffix":
        for folder in folders_under(root):
            files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_EXTS}
            for stem, fg in files.items():
                if not stem.endswith(fg_suffix):
                    continue
                base = stem[: -len(fg_suffix)]
                alpha = files.get(base + alpha_suffix)
                if alpha is None:
                    problems.append(Problem(str(fg), "missing_alpha", f"no {base}{alpha_suffix}.* beside {fg}"))
                else:
                    refs.append(MattingClipRef(_clip_id(root, folder, base), str(fg), str(alpha)))
            for stem, alpha in files.items():
                if stem.endswith(alpha_suffix) and stem[: -len(alpha_suffix)] + fg_suffix not in files:
                    problems.append(Problem(str(alpha), "missing_foreground", f"no foreground beside {alpha}"))
    else:
        raise ValueError(f"unknown video matting layout {layout!r}")
    return refs, problems


def clip_length(path: str | Path) -> int:
    """Frames in a video (container header) or a frame folder. Raises SourceError if unreadable."""
    from dataset_builder.io.video import probe_video

    path = Path(path)
    if path.is_dir():
        return len(frame_files(path))
    try:
        return probe_video(path).num_frames
    except Exception as exc:  # noqa: BLE001 - any probe failure is this entry's reject reason
        raise SourceError("fg_unreadable", f"{path}: {type(exc).__name__}: {exc}") from exc


def window_starts(length: int, count: int, stride: int, windows: int, first: int = 0) -> list[int]:
    """Start frames of ``windows`` windows of ``count`` frames (every ``stride``-th) spread evenly over
    ``[first, length)``; fewer when the clip is short, none when not even one fits."""
    span = (count - 1) * stride + 1
    last = length - span
    if last < first:
        return []
    if windows == 1 or last == first:
        return [first]
    return sorted({round(first + k * (last - first) / (windows - 1)) for k in range(windows)})


def _read_frames(path: Path, start: int, count: int, stride: int, what: str) -> tuple[np.ndarray, float]:
    from dataset_builder.io.video import decode_frames

    if path.is_dir():
        files = frame_files(path)[start::stride][:count]
        if not files:
            raise SourceError(f"{what}_unreadable", f"{path}: no frames from index {start}")
        frames = [read_image(f, what)[..., :3] for f in files]
        if len({f.shape for f in frames}) > 1:
            raise SourceError("size_mismatch", f"{path}: frames of different sizes")
        return np.stack(frames), 0.0
    if not path.is_file() or path.suffix.lower() not in VIDEO_EXTS + IMAGE_EXTS:
        raise SourceError(f"{what}_unreadable", f"{path}: not a video file or frame folder")
    try:
        return decode_frames(path, start=start, count=count, stride=stride)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this entry's reject reason
        raise SourceError(f"{what}_unreadable", f"{path}: {type(exc).__name__}: {exc}") from exc


def read_matting_clip(fg: str | Path, alpha: str | Path, start: int = 0, count: int = 16, stride: int = 1
                      ) -> tuple[np.ndarray, np.ndarray, float]:
    """(fg uint8 (T, H, W, 3), alpha uint8 (T, H, W), fps) of ``count`` frames from ``start``.

    Raises SourceError: ``fg_unreadable`` / ``alpha_unreadable``, ``size_mismatch`` (fg and alpha
    frames differ in size), ``too_short`` (fewer than ``count`` frames in either).
    """
    fg_frames, fps = _read_frames(Path(fg), start, count, stride, "fg")
    alpha_frames, alpha_fps = _read_frames(Path(alpha), start, count, stride, "alpha")
    if fg_frames.shape[1:3] != alpha_frames.shape[1:3]:
        raise SourceError("size_mismatch", f"fg {fg_frames.shape[1:3]} vs alpha {alpha_frames.shape[1:3]} ({fg})")
    if min(len(fg_frames), len(alpha_frames)) < count:
        raise SourceError("too_short", f"fg {len(fg_frames)}, alpha {len(alpha_frames)} frames < {count} ({fg})")
    return fg_frames, np.ascontiguousarray(alpha_frames[..., 0]), fps or alpha_fps
