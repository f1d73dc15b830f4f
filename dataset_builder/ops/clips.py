"""Clip planning and frame geometry: which source frames make each clip, and how they are resized."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class ClipPlan:
    start_frame: int
    frame_stride: int
    num_frames: int

    def frame_indices(self) -> list[int]:
        return [self.start_frame + i * self.frame_stride for i in range(self.num_frames)]


class ClipPlanError(ValueError):
    """The video cannot yield a single clip with the requested settings (e.g. too short)."""


def choose_stride(source_fps: float, target_fps: float, stride: int | Literal["auto"]) -> int:
    if stride != "auto":
        if stride < 1:
            raise ValueError("frame_stride must be >= 1")
        return int(stride)
    if source_fps <= 0 or target_fps <= 0:
        return 1
    return max(1, int(round(source_fps / target_fps)))


def plan_clips(
    total_frames: int,
    num_frames: int,
    stride: int,
    max_clips: int,
    clip_gap: int = 0,
) -> list[ClipPlan]:
    """Evenly spread up to ``max_clips`` non-overlapping clips over the video.

    When the video is too short for the requested stride, the stride is lowered (a slower clip is
    better than none); if even stride 1 is too long, :class:`ClipPlanError` is raised.
    """
    if num_frames < 1 or max_clips < 1:
        raise ValueError("num_frames and max_clips must be >= 1")
    while stride > 1 and (num_frames - 1) * stride + 1 > total_frames:
        stride -= 1
    span = (num_frames - 1) * stride + 1
    if span > total_frames:
        raise ClipPlanError(f"video has {total_frames} frames, a clip needs {span}")
    step = span + clip_gap * stride
    fit = (total_frames - span) // step + 1
    count = min(max_clips, fit)
    if count == 1:
        starts = [(total_frames - span) // 2]
    else:
        # Spread evenly over the free room so clips sample the whole video, not just its start.
        room = total_frames - span - (count - 1) * step
        starts = [i * step + (room * i) // (count - 1) for i in range(count)]
    return [ClipPlan(s, stride, num_frames) for s in starts]


def plan_clips_in_shots(
    shots: list[tuple[int, int]],
    num_frames: int,
    stride: int,
    max_clips: int,
    clip_gap: int = 0,
) -> list[ClipPlan]:
    """Plan clips that never cross a shot boundary, spread over the longest shots first.

    Shots are visited longest first, one clip each per round, until ``max_clips``; raises
    :class:`ClipPlanError` when no shot is long enough for a single clip.
    """
    per_shot: list[list[ClipPlan]] = []
    for start, end in sorted(shots, key=lambda s: s[0] - s[1]):  # longest first, stable by position
        try:
            plans = plan_clips(end - start, num_frames, stride, max_clips, clip_gap)
        except ClipPlanError:
            continue
        per_shot.append([ClipPlan(p.start_frame + start, p.frame_stride, p.num_frames) for p in plans])
    if not per_shot:
        longest = max((e - s for s, e in shots), default=0)
        raise ClipPlanError(f"video has {len(shots)} shot(s), the longest {longest} frames; a clip needs {num_frames}")
    chosen: list[ClipPlan] = []
    for round_index in range(max_clips):
        for plans in per_shot:
            if round_index < len(plans) and len(chosen) < max_clips:
                # take clips from the middle outwards so one-per-shot picks are central
                order = sorted(range(len(plans)), key=lambda i: abs(i - (len(plans) - 1) / 2))
                chosen.append(plans[order[round_index]])
    return sorted(chosen, key=lambda p: p.start_frame)


def resize_frames(
    frames: np.ndarray, height: int, width: int, mode: Literal["crop", "pad", "stretch"] = "crop",
    interpolation: int | None = None,
) -> np.ndarray:
    """Resize (T, H, W[, C]) frames to (height, width): aspect-preserving scale + centre crop/pad."""
    import cv2

    t, h, w = frames.shape[:3]
    if (h, w) == (height, width):
        return frames
    if mode == "stretch":
        scale_h, scale_w = height / h, width / w
    else:
        scale = max(height / h, width / w) if mode == "crop" else min(height / h, width / w)
        scale_h = scale_w = scale
    new_h, new_w = max(1, round(h * scale_h)), max(1, round(w * scale_w))
    if mode == "crop":
        new_h, new_w = max(new_h, height), max(new_w, width)
    if interpolation is None:
        interpolation = cv2.INTER_AREA if new_h * new_w < h * w else cv2.INTER_CUBIC
    resized = np.stack([cv2.resize(f, (new_w, new_h), interpolation=interpolation) for f in frames])
    if mode == "crop":
        top, left = (new_h - height) // 2, (new_w - width) // 2
        return np.ascontiguousarray(resized[:, top:top + height, left:left + width])
    if mode == "pad":
        out = np.zeros((t, height, width) + frames.shape[3:], frames.dtype)
        top, left = (height - new_h) // 2, (width - new_w) // 2
        out[:, top:top + new_h, left:left + new_w] = resized
        return out
    return resized


def file_fingerprint(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Cheap content identity (size + first/last MiB): clip ids survive moving the input files."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha1(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(chunk))
        if size > chunk:
            fh.seek(max(chunk, size - chunk))
            digest.update(fh.read(chunk))
    return digest.hexdigest()


def make_clip_id(source_fingerprint: str, plan: ClipPlan, config_hash: str) -> str:
    key = f"{source_fingerprint}|{plan.start_frame}|{plan.frame_stride}|{plan.num_frames}|{config_hash}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def make_video_reject_id(source_uri: str, config_hash: str) -> str:
    """Id under which a video that yields no clip (unreadable, too short) is committed as rejected."""
    return "v" + hashlib.sha1(f"{source_uri}|{config_hash}".encode()).hexdigest()[:15]
