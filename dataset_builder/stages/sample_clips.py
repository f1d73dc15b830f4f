"""Stage ``clip``: one input video -> its clip rows (probe, plan, one streaming decode, resize).

Committed clip ids are skipped here, before any decoding, which is what makes reruns cheap.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dataset_builder.config import ClipConfig
from dataset_builder.io.video import VideoDecodeError, decode_frames_at, iter_frames, probe_video
from dataset_builder.ops.clips import (
    ClipPlanError,
    choose_stride,
    file_fingerprint,
    make_clip_id,
    make_video_reject_id,
    plan_clips,
    plan_clips_in_shots,
    resize_frames,
)
from dataset_builder.ops.shots import detect_cuts, shots_from_cuts
from dataset_builder.stages.base import (
    ClipState,
    batch_from_rows,
    empty_backgrounds,
    empty_frames,
    empty_masks,
)


class SampleClips:
    stage = "clip"

    def __init__(self, clip: ClipConfig | dict, config_hash: str, skip_clip_ids: frozenset[str] = frozenset()):
        self.cfg = ClipConfig.model_validate(clip)
        self.config_hash = config_hash
        self.skip = skip_clip_ids

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows: list[dict[str, Any]] = []
        for uri in batch["uri"]:
            rows.extend(self.clips_of(str(uri)))
        if not rows:  # everything already committed: keep the schema with zero rows
            return {"meta": np.array([], dtype=object), "frames": np.zeros((0, 0, 0, 0, 3), np.uint8),
                    "masks": np.zeros((0, 0, 0, 0, 0), np.uint8),
                    "backgrounds": np.zeros((0, 0, 0, 0, 0, 3), np.uint8)}
        return batch_from_rows(rows)

    def clips_of(self, uri: str) -> list[dict[str, Any]]:
        cfg = self.cfg
        try:
            info = probe_video(uri)
            stride = choose_stride(info.fps, cfg.target_fps, cfg.frame_stride)
            if cfg.detect_cuts:
                cuts, total = detect_cuts(iter_frames(uri)[1])
                shots = shots_from_cuts(cuts, total)
                plans = plan_clips_in_shots(shots, cfg.num_frames, stride, cfg.max_clips_per_video, cfg.clip_gap)
            else:
                plans = plan_clips(info.num_frames, cfg.num_frames, stride, cfg.max_clips_per_video, cfg.clip_gap)
            fingerprint = file_fingerprint(uri)
        except (VideoDecodeError, ClipPlanError, OSError) as exc:
            return [self._video_reject(uri, "unreadable" if not isinstance(exc, ClipPlanError) else "too_short",
                                       str(exc))]
        ids = [make_clip_id(fingerprint, plan, self.config_hash) for plan in plans]
        todo = [(plan, cid) for plan, cid in zip(plans, ids) if cid not in self.skip]
        if not todo:
            return []
        indices = sorted({i for plan, _ in todo for i in plan.frame_indices()})
        try:
            decoded, fps = decode_frames_at(uri, indices)
        except VideoDecodeError as exc:
            return [self._clip_reject(uri, fingerprint, plan, cid, info.fps, "decode_failed", str(exc))
                    for plan, cid in todo]
        position = {frame_index: k for k, frame_index in enumerate(indices)}
        rows = []
        for plan, cid in todo:
            frames = decoded[[position[i] for i in plan.frame_indices()]]
            frames = resize_frames(frames, cfg.height, cfg.width, cfg.resize_mode)
            state = ClipState(
                clip_id=cid, source_uri=uri, source_sha1=fingerprint, start_frame=plan.start_frame,
                frame_stride=plan.frame_stride, source_fps=info.fps,
                fps=(info.fps / plan.frame_stride) if info.fps else cfg.target_fps,
                num_frames=cfg.num_frames, height=cfg.height, width=cfg.width, config_hash=self.config_hash,
            )
            rows.append(_row(state, frames))
        return rows

    def _video_reject(self, uri: str, reason: str, detail: str) -> dict[str, Any]:
        state = ClipState(clip_id=make_video_reject_id(os.path.abspath(uri), self.config_hash), source_uri=uri,
                          config_hash=self.config_hash)
        state.reject_clip(self.stage, reason, detail)
        return _row(state, empty_frames())

    def _clip_reject(self, uri, fingerprint, plan, cid, source_fps, reason, detail) -> dict[str, Any]:
        state = ClipState(clip_id=cid, source_uri=uri, source_sha1=fingerprint, start_frame=plan.start_frame,
                          frame_stride=plan.frame_stride, source_fps=source_fps, config_hash=self.config_hash)
        state.reject_clip(self.stage, reason, detail)
        return _row(state, empty_frames())


def _row(state: ClipState, frames: np.ndarray) -> dict[str, Any]:
    t, h, w = frames.shape[:3]
    return {"meta": state.model_dump_json(), "frames": frames, "masks": empty_masks(t, h, w),
            "backgrounds": empty_backgrounds(t, h, w)}
