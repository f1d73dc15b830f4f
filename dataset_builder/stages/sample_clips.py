"""Stage ``clip``: one input-manifest row -> its clip rows (probe, plan, ONE streaming decode, resize).

Each video is decoded once: with ``clip.detect_cuts`` the shot-cut detector and the clip collector
(:class:`~dataset_builder.ops.clips.ShotClipCollector`) see the same frames; without it, clips are
planned from the container's frame count and committed ones are skipped before any decoding. Kept
frames are resized as they are decoded, so a 4000x3000 source costs a few source frames of memory,
not a clip of them (see ``_resizer``). A decode that ends short of the container's frame count is a ``truncated``
reject naming both counts, never a silently shorter video. Manifest rows that are already rejects
(``reason`` set by discovery: duplicates, dangling links, ...) become reject rows here, so every
reject is committed by the same writer as the samples.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dataset_builder.config import ClipConfig, InputConfig
from dataset_builder.io.video import VideoDecodeError, VideoInfo, iter_frames, probe_video
from dataset_builder.ops.clips import (
    ClipPlan,
    ClipPlanError,
    ShotClipCollector,
    choose_stride,
    file_fingerprint,
    make_clip_id,
    make_video_reject_id,
    plan_clips,
    resize_frames,
)
from dataset_builder.ops.shots import ShotCutDetector
from dataset_builder.stages.base import (
    ClipState,
    batch_from_rows,
    empty_backgrounds,
    empty_frames,
    empty_masks,
)


class _Truncated(VideoDecodeError):
    pass


def short_decode_detail(uri: str, decoded: int, expected: int) -> str:
    return f"{uri}: decoded {decoded} of {expected} frames (truncated or corrupt file)"


def decode_is_short(decoded: int, expected: int) -> bool:
    """Container frame counts can be off by a frame or two (edit lists, B-frame tails)."""
    return expected > 0 and decoded < expected - max(2, expected // 50)


class SampleClips:
    stage = "clip"

    def __init__(self, clip: ClipConfig | dict, config_hash: str, skip_clip_ids: frozenset[str] = frozenset(),
                 limits: InputConfig | dict | None = None):
        self.cfg = ClipConfig.model_validate(clip)
        self.limits = InputConfig.model_validate(limits or {})
        self.config_hash = config_hash
        self.skip = skip_clip_ids

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows: list[dict[str, Any]] = []
        n = len(batch["uri"])
        for i in range(n):
            uri = str(batch["uri"][i])
            reason = str(batch["reason"][i]) if "reason" in batch else ""
            if reason:
                rows.extend(self._video_reject(uri, reason, str(batch["detail"][i])))
                continue
            content_hash = str(batch["content_hash"][i]) if "content_hash" in batch else ""
            rows.extend(self.clips_of(uri, content_hash))
        if not rows:  # everything already committed: keep the schema with zero rows
            return {"meta": np.array([], dtype=object), "frames": np.zeros((0, 0, 0, 0, 3), np.uint8),
                    "masks": np.zeros((0, 0, 0, 0, 0), np.uint8),
                    "backgrounds": np.zeros((0, 0, 0, 0, 0, 3), np.uint8)}
        return batch_from_rows(rows)

    def clips_of(self, uri: str, content_hash: str = "") -> list[dict[str, Any]]:
        cfg = self.cfg
        try:
            info = probe_video(uri)
            fingerprint = content_hash or file_fingerprint(uri)
        except (VideoDecodeError, OSError) as exc:
            return self._video_reject(uri, "unreadable", str(exc))
        if problem := self._over_limits(info):
            return self._video_reject(uri, *problem)
        if decode_is_short(info.num_frames, info.expected_frames):  # fewer packets than the header's duration
            return self._video_reject(uri, "truncated", short_decode_detail(uri, info.num_frames,
                                                                           info.expected_frames))
        stride = choose_stride(info.fps, cfg.target_fps, cfg.frame_stride)
        keep = self._resizer(info)
        try:
            if cfg.detect_cuts:
                chosen = self._decode_in_shots(uri, info, stride, keep)
                planned = len(chosen)
            else:
                chosen, planned = self._decode_planned(uri, info, fingerprint, stride, keep)
        except ClipPlanError as exc:
            return self._video_reject(uri, "too_short", str(exc))
        except _Truncated as exc:
            return self._video_reject(uri, "truncated", str(exc))
        except VideoDecodeError as exc:
            return self._video_reject(uri, "decode_failed", str(exc))
        rows = []
        for plan, frames in chosen:
            cid = make_clip_id(fingerprint, plan, self.config_hash)
            if cid in self.skip:
                continue
            state = ClipState(
                clip_id=cid, source_uri=uri, source_sha1=fingerprint, start_frame=plan.start_frame,
                frame_stride=plan.frame_stride, source_fps=info.fps,
                fps=(info.fps / plan.frame_stride) if info.fps else cfg.target_fps,
                num_frames=cfg.num_frames, height=cfg.height, width=cfg.width, config_hash=self.config_hash,
                clips_planned=planned,  # resume skips the input once this many of its clips are committed
            )
            rows.append(_row(state, resize_frames(np.stack(frames), cfg.height, cfg.width, cfg.resize_mode)))
        return rows

    def _over_limits(self, info: VideoInfo) -> tuple[str, str] | None:
        lim = self.limits
        if lim.max_pixels and info.width * info.height > lim.max_pixels:
            return "too_large", (f"{info.path}: {info.width}x{info.height} exceeds input.max_pixels="
                                 f"{lim.max_pixels}")
        if lim.max_duration_s and info.fps > 0 and info.num_frames / info.fps > lim.max_duration_s:
            return "too_long", (f"{info.path}: {info.num_frames / info.fps:.0f} s exceeds input.max_duration_s="
                                f"{lim.max_duration_s:g}")
        return None

    def _resizer(self, info: VideoInfo):
        """Sources over twice the clip's pixels have kept frames resized as they are decoded, so memory
        follows the clip size, not the source's (a 4000x3000 video costs a few source frames). Smaller
        ones keep decoded frames and only the chosen clips are resized: most kept candidate frames are
        never used, and upscaling them all would cost more than the decode."""
        cfg = self.cfg
        if info.width * info.height <= 2 * cfg.width * cfg.height:
            return lambda frame: frame
        return lambda frame: resize_frames(frame[None], cfg.height, cfg.width, cfg.resize_mode)[0]

    def _decode_in_shots(self, uri: str, info: VideoInfo, stride: int, keep) -> list[tuple[ClipPlan, list]]:
        cfg = self.cfg
        detector = ShotCutDetector()
        collector = ShotClipCollector(cfg.num_frames, stride, cfg.max_clips_per_video, cfg.clip_gap, keep=keep)
        decoded = _stream(uri, lambda index, frame: collector.feed(index, frame, detector.feed(frame)),
                          stop_after=None, expected=info.expected_frames)
        if decode_is_short(decoded, info.expected_frames):
            raise _Truncated(short_decode_detail(uri, decoded, info.expected_frames))
        return collector.finish()

    def _decode_planned(self, uri, info: VideoInfo, fingerprint: str, stride: int, keep
                        ) -> tuple[list[tuple[ClipPlan, list]], int]:
        """(decoded clips not yet committed, number of clips planned for the video)."""
        cfg = self.cfg
        plans = plan_clips(info.num_frames, cfg.num_frames, stride, cfg.max_clips_per_video, cfg.clip_gap)
        todo = [p for p in plans if make_clip_id(fingerprint, p, self.config_hash) not in self.skip]
        if not todo:
            return [], len(plans)
        wanted: dict[int, list[list]] = {}
        frames_of = {p: [] for p in todo}
        for plan in todo:
            for index in plan.frame_indices():
                wanted.setdefault(index, []).append(frames_of[plan])

        def take(index, frame):
            if index in wanted:
                kept = keep(frame)
                for frames in wanted[index]:
                    frames.append(kept)

        last = max(wanted)
        decoded = _stream(uri, take, stop_after=last, expected=info.expected_frames)
        if decoded <= last:
            raise _Truncated(short_decode_detail(uri, decoded, info.expected_frames))
        return [(p, frames_of[p]) for p in todo], len(plans)

    def crash_rejects(self, uri: str, reason: str, detail: str) -> list[dict[str, Any]]:
        """The reject row of a video whose decode killed its worker (see ``stages.runtime.CrashGuarded``)."""
        return self._video_reject(uri, reason, detail)

    def _video_reject(self, uri: str, reason: str, detail: str) -> list[dict[str, Any]]:
        """The one reject row of a video that yields no clip; none when already committed."""
        key = uri if "://" in uri else os.path.abspath(uri)
        clip_id = make_video_reject_id(key, self.config_hash)
        if clip_id in self.skip:
            return []
        state = ClipState(clip_id=clip_id, source_uri=uri, config_hash=self.config_hash, clips_planned=1)
        state.reject_clip(self.stage, reason, detail)
        return [_row(state, empty_frames())]


def _stream(uri: str, sink, stop_after: int | None, expected: int) -> int:
    """Decode frames in order into ``sink(index, frame)``; returns the number decoded. A decoder
    error mid-stream is a :class:`_Truncated` naming how far it got."""
    _, frames = iter_frames(uri)
    try:
        return _drain(uri, frames, sink, stop_after, expected)
    finally:
        frames.close()  # releases the decoder now when stopping early


def _drain(uri, frames, sink, stop_after, expected) -> int:
    decoded = 0
    while stop_after is None or decoded <= stop_after:
        try:
            frame = next(frames)
        except StopIteration:
            break
        except Exception as exc:  # decoders raise many types on corrupt data
            if decoded == 0:
                raise VideoDecodeError(f"{uri}: decode failed ({type(exc).__name__}: {exc})") from exc
            raise _Truncated(f"{short_decode_detail(uri, decoded, expected)}: {type(exc).__name__}: {exc}") from exc
        sink(decoded, frame)
        decoded += 1
    if decoded == 0:
        raise VideoDecodeError(f"{uri}: no frame could be decoded")
    return decoded


def _row(state: ClipState, frames: np.ndarray) -> dict[str, Any]:
    t, h, w = frames.shape[:3]
    return {"meta": state.model_dump_json(), "frames": frames, "masks": empty_masks(t, h, w),
            "backgrounds": empty_backgrounds(t, h, w)}
