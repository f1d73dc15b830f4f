"""Clip planning and frame geometry: which source frames make each clip, and how they are resized."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
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


def select_in_shots(shots: list[tuple[int, list]], max_clips: int) -> list:
    """Pick up to ``max_clips`` items from ``(shot length, candidates in time order)`` pairs: shots
    longest first (stable by position), one per shot per round, each shot's candidates taken from
    the middle outwards so a one-per-shot pick is central."""
    ranked = [(c, _middle_out(len(c))) for _, c in sorted(shots, key=lambda s: -s[0]) if c]
    chosen: list = []
    for round_index in range(max_clips):
        for cands, order in ranked:
            if round_index < len(cands) and len(chosen) < max_clips:
                chosen.append(cands[order[round_index]])
    return chosen


def _middle_out(n: int) -> list[int]:
    return sorted(range(n), key=lambda i: abs(i - (n - 1) / 2))


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
    per_shot: list[tuple[int, list[ClipPlan]]] = []
    for start, end in shots:
        try:
            plans = plan_clips(end - start, num_frames, stride, max_clips, clip_gap)
        except ClipPlanError:
            continue
        per_shot.append((end - start, [ClipPlan(p.start_frame + start, p.frame_stride, p.num_frames)
                                       for p in plans]))
    if not per_shot:
        longest = max((e - s for s, e in shots), default=0)
        raise ClipPlanError(f"video has {len(shots)} shot(s), the longest {longest} frames; a clip needs {num_frames}")
    return sorted(select_in_shots(per_shot, max_clips), key=lambda p: p.start_frame)


@dataclass
class _Window:
    plan: ClipPlan
    tile: int
    frames: list

    @property
    def last(self) -> int:
        return self.plan.start_frame + (self.plan.num_frames - 1) * self.plan.frame_stride


class ShotClipCollector:
    """Choose clips inside shots while the video is decoded ONCE.

    Feed every decoded frame in order with whether a new shot starts there. Candidate windows tile
    each shot from its first frame (``span + gap`` apart); only frames of retained windows are kept,
    already resized by ``keep`` (e.g. to clip resolution), so memory is bounded by the window caps,
    not by the video's length or resolution:

    - in the running shot at most ``max_windows_per_shot`` windows: when more start, every other one
      is dropped and the tile spacing doubles (they stay spread over the shot);
    - of closed shots only the windows that :func:`select_in_shots` would pick now (picks can only
      shrink as more shots close), i.e. at most ``max_clips``;
    - a shot too short for the stride gets one clip at the largest lower stride that fits (as
      :func:`plan_clips` does: a slower clip is better than none), from windows opened at each
      shot start and dropped as soon as a full-stride window completes.
    """

    def __init__(self, num_frames: int, stride: int, max_clips: int, clip_gap: int = 0,
                 max_windows_per_shot: int | None = None, keep=lambda frame: frame):
        if num_frames < 1 or max_clips < 1 or stride < 1:
            raise ValueError("num_frames, stride and max_clips must be >= 1")
        self.num_frames, self.stride, self.max_clips = num_frames, stride, max_clips
        self.step = (num_frames - 1) * stride + 1 + clip_gap * stride
        self.cap = max(2, max_windows_per_shot or 2 * max_clips)
        self.keep = keep
        #: (length, complete windows) per closed shot; unpicked windows keep their place with frames=None
        self.closed: list[tuple[int, list[_Window]]] = []
        self.shot_start = 0
        self.level = 0
        self.current: list[_Window] = []
        self.fallback: list[_Window] = []
        self.frames_seen = 0

    def feed(self, index: int, frame, new_shot: bool = False) -> None:
        if index != self.frames_seen:
            raise ValueError(f"frames must be fed in order: expected {self.frames_seen}, got {index}")
        if new_shot and index > self.shot_start:
            self._close(index)
            self.shot_start = index
        self.frames_seen += 1
        offset = index - self.shot_start
        if offset == 0:
            self.fallback = [_Window(ClipPlan(index, s, self.num_frames), 0, []) for s in range(self.stride - 1, 0, -1)]
        if offset % self.step == 0 and (offset // self.step) % (1 << self.level) == 0:
            self.current.append(_Window(ClipPlan(index, self.stride, self.num_frames), offset // self.step, []))
            if len(self.current) > self.cap:
                self.level += 1
                self.current = [w for w in self.current if w.tile % (1 << self.level) == 0]
        kept = None
        for window in self.current + self.fallback:
            plan = window.plan
            if len(window.frames) < plan.num_frames and (index - plan.start_frame) % plan.frame_stride == 0:
                kept = self.keep(frame) if kept is None else kept
                window.frames.append(kept)
        if self.fallback and len(self.current[0].frames) == self.num_frames:
            self.fallback = []  # the shot has a full-stride clip

    def _close(self, end: int) -> None:
        complete = [w for w in self.current if w.last < end]
        if not complete:
            complete = [w for w in self.fallback if w.last < end][:1]  # largest stride first
        self.closed.append((end - self.shot_start, complete))
        self.current, self.fallback, self.level = [], [], 0
        picked = {id(w) for w in select_in_shots(self.closed, self.max_clips)}
        for _, windows in self.closed:
            for w in windows:
                if id(w) not in picked:
                    w.frames = None  # never picked again: free its frames

    def finish(self) -> list[tuple[ClipPlan, list]]:
        """Close the last shot; (plan, kept frames) of the chosen clips in time order."""
        if self.frames_seen > self.shot_start:
            self._close(self.frames_seen)
        chosen = select_in_shots(self.closed, self.max_clips)
        if not chosen:
            longest = max((n for n, _ in self.closed), default=0)
            raise ClipPlanError(f"video has {len(self.closed)} shot(s), the longest {longest} frames; "
                                f"a clip needs {self.num_frames}")
        return [(w.plan, w.frames) for w in sorted(chosen, key=lambda w: w.plan.start_frame)]


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
    """Cheap content identity (size + first/last MiB), local path or URI; see :mod:`dataset_builder.io.inputs`."""
    from dataset_builder.io.inputs import fingerprint

    return fingerprint(path, chunk=chunk)


def make_clip_id(source_fingerprint: str, plan: ClipPlan, config_hash: str) -> str:
    key = f"{source_fingerprint}|{plan.start_frame}|{plan.frame_stride}|{plan.num_frames}|{config_hash}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def make_video_reject_id(source_uri: str, config_hash: str) -> str:
    """Id under which a video that yields no clip (unreadable, too short) is committed as rejected."""
    return "v" + hashlib.sha1(f"{source_uri}|{config_hash}".encode()).hexdigest()[:15]
