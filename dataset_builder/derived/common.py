"""Rows, the error-capturing stage wrapper and layer encoding shared by the copy-paste and image-layers DAGs.

A row is one *unit* (a fg/bg pair, or an input image) that commits to a shard atomically:

``meta``    JSON of :class:`UnitState` (sample records so far, rejects)
``fg``      uint8 (K, T, H, W, 3) foreground RGB of the K samples; T == 1 for static samples
``alpha``   uint8 (K, T, H, W)
``bg``      uint8 (K, T, H, W, 3)
``blend``   uint8 (K, T, H, W, 3)
``payload`` bytes: tar fragment of the encoded members (after :class:`EncodeLayersStage`)

Static samples travel as one frame and are repeated only at encode time, so Ray moves 1/T of the data.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np
from pydantic import Field

from dataset_builder.io.layout import JSON_MEMBER
from dataset_builder.io.shard_writer import pack_fragment
from dataset_builder.io.video import encode_alpha, encode_rgb, encode_static_rgb
from dataset_builder.stages.base import RowStage, RowState
from dataset_builder.stages.encode import foreground_rgb
from schemas import LayeredSample

log = logging.getLogger(__name__)

LAYER_COLUMNS = ("fg", "alpha", "bg", "blend")


def stable_id(*parts: Any, n: int = 16) -> str:
    """Order- and process-independent short hash (Python's ``hash`` is salted per process)."""
    return hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:n]


class UnitState(RowState):
    unit_id: str
    #: What to build (pair of sources, image path, ...), set by the driver.
    task: dict[str, Any] = Field(default_factory=dict)
    samples: list[LayeredSample] = Field(default_factory=list)

    @property
    def row_id(self) -> str:
        return self.unit_id

    def reject(self, stage: str, reason: str, detail: str = "", object_id: int = -1) -> None:
        self.reject_row(stage, reason, detail, object_id)

    def reject_unit(self, stage: str, reason: str, detail: str = "") -> None:
        self.reject(stage, reason, detail)
        self.rejected = True


def empty_layers() -> dict[str, np.ndarray]:
    return {"fg": np.zeros((0, 0, 0, 0, 3), np.uint8), "alpha": np.zeros((0, 0, 0, 0), np.uint8),
            "bg": np.zeros((0, 0, 0, 0, 3), np.uint8), "blend": np.zeros((0, 0, 0, 0, 3), np.uint8)}


class UnitStage(RowStage):
    """A stage of the derived pipelines (rows are units); error capture is :class:`RowStage`'s."""

    state_cls = UnitState

    def finish_row(self, state: UnitState, row: dict[str, Any]) -> None:
        if state.rejected or not state.samples:
            row.update(empty_layers())


class EncodeLayersStage(UnitStage):
    """Encode each sample's layers (H.264 RGB, FFV1 alpha) and record into a tar fragment (the same
    payload as the coarse encode stage); drops the raw arrays.

    Applies ``fg_fill`` outside the alpha, and repeats single-frame (static) layers to ``num_frames``.
    """

    def __init__(self, stage: str, crf: int = 18, fg_fill: int = 0, exact_static: bool = True):
        self.stage, self.crf, self.fg_fill, self.exact_static = stage, crf, fg_fill, exact_static

    def prepare(self, row: dict[str, Any]) -> None:
        row["payload"] = b""

    def process(self, state: UnitState, row: dict[str, Any]) -> None:
        if state.samples:
            row["payload"] = self.encode(state, row)

    def on_error(self, state: UnitState, exc: Exception) -> None:
        state.reject_unit(self.stage, "encode_error", f"{type(exc).__name__}: {exc}")

    def finish_row(self, state: UnitState, row: dict[str, Any]) -> None:
        for name in LAYER_COLUMNS:
            row.pop(name, None)
        if state.rejected:
            row["payload"] = b""

    def encode(self, state: UnitState, row: dict[str, Any]) -> bytes:
        samples = {}
        for k, record in enumerate(state.samples):
            layers = {name: row[name][k] for name in LAYER_COLUMNS}
            n, fps = record.num_frames, record.fps
            samples[record.key] = {
                "fg.mp4": self._rgb(foreground_rgb(layers["fg"], layers["alpha"], self.fg_fill), n, fps),
                "alpha.mkv": encode_alpha(_to_length(layers["alpha"], n), fps),
                "bg.mp4": self._rgb(layers["bg"], n, fps),
                "blend.mp4": self._rgb(layers["blend"], n, fps),
                JSON_MEMBER: record.model_dump_json().encode(),
            }
        return pack_fragment(samples)

    def _rgb(self, frames: np.ndarray, num_frames: int, fps: float) -> bytes:
        if self.exact_static and len(frames) == 1 and num_frames > 1:
            return encode_static_rgb(frames[0], num_frames, fps, self.crf)
        return encode_rgb(_to_length(frames, num_frames), fps, self.crf)


def _to_length(frames: np.ndarray, num_frames: int) -> np.ndarray:
    if len(frames) == num_frames:
        return frames
    if len(frames) == 1:
        return np.repeat(frames, num_frames, axis=0)
    raise ValueError(f"layer has {len(frames)} frames, record says {num_frames}")
