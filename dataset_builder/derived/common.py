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
import traceback
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from dataset_builder.io.shard_writer import SampleToWrite, pack_fragment, unpack_fragment
from dataset_builder.io.video import encode_alpha, encode_rgb, encode_static_rgb
from dataset_builder.stages.base import batch_from_rows, rows_from_batch
from dataset_builder.stages.encode import foreground_rgb
from schemas import LayeredSample, RejectRecord

log = logging.getLogger(__name__)

LAYER_COLUMNS = ("fg", "alpha", "bg", "blend")


def stable_id(*parts: Any, n: int = 16) -> str:
    """Order- and process-independent short hash (Python's ``hash`` is salted per process)."""
    return hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:n]


class UnitState(BaseModel):
    unit_id: str
    source_uri: str
    #: What to build (pair of sources, image path, ...), set by the driver.
    task: dict[str, Any] = Field(default_factory=dict)
    samples: list[LayeredSample] = Field(default_factory=list)
    rejects: list[RejectRecord] = Field(default_factory=list)
    rejected: bool = False

    def reject(self, stage: str, reason: str, detail: str = "", object_id: int = -1) -> None:
        self.rejects.append(RejectRecord(source_uri=self.source_uri, clip_id=self.unit_id, object_id=object_id,
                                         stage=stage, reason=reason, detail=detail[:2000]))

    def reject_unit(self, stage: str, reason: str, detail: str = "") -> None:
        self.reject(stage, reason, detail)
        self.rejected = True


def empty_layers() -> dict[str, np.ndarray]:
    return {"fg": np.zeros((0, 0, 0, 0, 3), np.uint8), "alpha": np.zeros((0, 0, 0, 0), np.uint8),
            "bg": np.zeros((0, 0, 0, 0, 3), np.uint8), "blend": np.zeros((0, 0, 0, 0, 3), np.uint8)}


class UnitStage:
    """Per-unit logic with error capture: an exception becomes a reject of the unit, never a lost unit.
    Subclasses set ``stage`` (the reject stage name) and implement :meth:`process`."""

    stage: ClassVar[str]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = rows_from_batch(batch)
        for row in rows:
            state = UnitState.model_validate_json(row["meta"])
            if not state.rejected:
                try:
                    self.process(state, row)
                except Exception as exc:  # noqa: BLE001 - the point: every failure becomes a reject
                    log.warning("%s failed on %s: %s", self.stage, state.unit_id, exc)
                    state.reject_unit(self.stage, "error",
                                      f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=3))
            if state.rejected or not state.samples:
                row.update(empty_layers())
            row["meta"] = state.model_dump_json()
        return batch_from_rows(rows)

    def process(self, state: UnitState, row: dict[str, Any]) -> None:
        raise NotImplementedError


class EncodeLayersStage:
    """Encode each sample's layers (H.264 RGB, FFV1 alpha) into a tar fragment; drops the raw arrays.

    Applies ``fg_fill`` outside the alpha, and repeats single-frame (static) layers to ``num_frames``.
    """

    def __init__(self, stage: str, crf: int = 18, fg_fill: int = 0, exact_static: bool = True):
        self.stage, self.crf, self.fg_fill, self.exact_static = stage, crf, fg_fill, exact_static

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for row in rows_from_batch(batch):
            state = UnitState.model_validate_json(row["meta"])
            payload = b""
            if not state.rejected and state.samples:
                try:
                    payload = self.encode(state, row)
                except Exception as exc:  # noqa: BLE001 - recorded as a reject, never fatal
                    state.reject_unit(self.stage, "encode_error", f"{type(exc).__name__}: {exc}")
            out.append({"meta": state.model_dump_json(), "payload": payload})
        return batch_from_rows(out)

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


def samples_from_row(meta: str, payload: bytes) -> tuple[UnitState, list[SampleToWrite]]:
    """Driver side: the unit's records and their encoded members, ready for ``ShardWriter.add_clip``."""
    state = UnitState.model_validate_json(meta)
    if state.rejected or not payload:
        return state, []
    members = unpack_fragment(payload)
    return state, [SampleToWrite(record, members[record.key]) for record in state.samples]
