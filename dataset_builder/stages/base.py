"""Clip rows as they flow through the Ray Data DAG, and the shared stage wrapper.

A row is one clip with all its candidate objects, so mask dedup stays local and a clip commits to a
shard atomically (no shuffle needed). Columns:

``meta``        JSON of :class:`ClipState` (ids, tags, per-object state, rejects so far)
``frames``      uint8 (T, H, W, 3), the blended clip; (0, 0, 0, 3) once the clip is rejected
``masks``       uint8 (K, T, H, W) alpha of the K surviving objects, aligned with ``ClipState.objects``
``backgrounds`` uint8 (K, T, H, W, 3) object-removed backgrounds (after inpaint)
``foregrounds`` uint8 (K, T, H, W, 3) fg colour with the soft band un-mixed (after layer_qa)
``payload``     bytes, a tar fragment of the encoded samples (after encode; heavy columns dropped)

Rejects travel inside the row and are committed together with the clip's samples by the writer, so a
crash can never record a reject without its clip (or the reverse).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from dataset_builder.config import BackendSpec
from dataset_builder.models.hf.batching import is_oom
from dataset_builder.models.registry import BackendKind, build_backend
from schemas import RejectRecord

log = logging.getLogger(__name__)

HEAVY_COLUMNS = ("frames", "masks", "backgrounds", "foregrounds")


class ObjectState(BaseModel):
    object_id: int
    label: str
    score: float
    scores: dict[str, float] = Field(default_factory=dict)
    captions: dict[str, str] = Field(default_factory=dict)


class ClipState(BaseModel):
    clip_id: str
    source_uri: str
    source_sha1: str = ""
    start_frame: int = 0
    frame_stride: int = 1
    source_fps: float = 0.0
    fps: float = 0.0
    num_frames: int = 0
    height: int = 0
    width: int = 0
    config_hash: str = ""
    tags: list[dict[str, Any]] = Field(default_factory=list)
    objects: list[ObjectState] = Field(default_factory=list)
    rejects: list[RejectRecord] = Field(default_factory=list)
    backends: dict[str, str] = Field(default_factory=dict)
    #: stage -> model fingerprint + library versions, as measured in the worker (``models.provenance``)
    revisions: dict[str, str] = Field(default_factory=dict)
    #: Set once the whole clip is rejected; later stages pass it through untouched.
    rejected: bool = False

    def reject_clip(self, stage: str, reason: str, detail: str = "") -> None:
        self.rejects.append(
            RejectRecord(source_uri=self.source_uri, clip_id=self.clip_id, stage=stage, reason=reason,
                         detail=detail[:2000])
        )
        self.rejected = True

    def reject_object(self, obj: ObjectState, stage: str, reason: str, detail: str = "") -> None:
        self.rejects.append(
            RejectRecord(source_uri=self.source_uri, clip_id=self.clip_id, object_id=obj.object_id,
                         stage=stage, reason=reason, detail=detail[:2000])
        )


def empty_frames() -> np.ndarray:
    return np.zeros((0, 0, 0, 3), np.uint8)


def empty_masks(num_frames: int = 0, height: int = 0, width: int = 0) -> np.ndarray:
    return np.zeros((0, num_frames, height, width), np.uint8)


def empty_backgrounds(num_frames: int = 0, height: int = 0, width: int = 0) -> np.ndarray:
    return np.zeros((0, num_frames, height, width, 3), np.uint8)


def rows_from_batch(batch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    keys = list(batch)
    n = len(batch[keys[0]]) if keys else 0
    return [{k: batch[k][i] for k in keys} for i in range(n)]


def batch_from_rows(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Inverse of :func:`rows_from_batch`; arrays of differing shapes become a ragged object column."""
    if not rows:
        return {}
    out: dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        if isinstance(values[0], np.ndarray):
            if len({(v.shape, v.dtype) for v in values}) == 1:
                out[key] = np.stack(values)
            else:
                column = np.empty(len(values), dtype=object)
                column[:] = values
                out[key] = column
        elif isinstance(values[0], (bytes, bytearray)):
            column = np.empty(len(values), dtype=object)
            column[:] = values
            out[key] = column
        else:
            out[key] = np.array(values)
    return out


def drop_heavy(row: dict[str, Any]) -> None:
    """Free a rejected clip's arrays (keeping the columns, so batches stay uniform)."""
    row["frames"] = empty_frames()
    row["masks"] = empty_masks()
    row["backgrounds"] = empty_backgrounds()
    if "foregrounds" in row:  # only exists from layer_qa on; every row of a batch has it or none does
        row["foregrounds"] = empty_backgrounds()


class ClipStage:
    """Wraps per-clip logic with error capture: an exception becomes a reject row, never a lost clip.

    Subclasses set ``stage`` and implement :meth:`process`, which mutates ``state`` and ``row``.
    """

    stage: ClassVar[str]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = rows_from_batch(batch)
        for row in rows:
            self.prepare(row)
            state = ClipState.model_validate_json(row["meta"])
            if not state.rejected:
                try:
                    self.process(state, row)
                except Exception as exc:  # the point: every failure is recorded, none is fatal
                    log.warning("stage %s failed on %s: %s", self.stage, state.clip_id, exc)
                    reason = "oom" if is_oom(exc) else "error"  # OOM left after the backend's batch back-off
                    state.reject_clip(self.stage, reason, f"{type(exc).__name__}: {exc}\n"
                                      + traceback.format_exc(limit=3))
                if state.rejected:
                    drop_heavy(row)
            row["meta"] = state.model_dump_json()
        return batch_from_rows(rows)

    def prepare(self, row: dict[str, Any]) -> None:
        """Called on every row, rejected or not (e.g. to add a column all rows must have)."""

    def process(self, state: ClipState, row: dict[str, Any]) -> None:
        raise NotImplementedError


class BackendStage(ClipStage):
    """A stage driven by one model backend: built once per actor from its :class:`BackendSpec` through the
    registry, and recorded in each processed clip's provenance."""

    kind: ClassVar[BackendKind]

    def __init__(self, spec: BackendSpec | dict):
        from dataset_builder.models.provenance import backend_revision

        self.spec = BackendSpec.model_validate(spec)
        self.backend = build_backend(self.kind, self.spec)
        self.revision = backend_revision(self.kind.value, self.spec)

    def process(self, state: ClipState, row: dict[str, Any]) -> None:
        self.apply(state, row)
        state.backends[self.stage] = self.spec.name
        state.revisions[self.stage] = self.revision

    def apply(self, state: ClipState, row: dict[str, Any]) -> None:
        raise NotImplementedError


def keep_objects(state: ClipState, row: dict[str, Any], keep: list[int], stage: str, reason_if_empty: str) -> None:
    """Keep only objects at indices ``keep`` (masks and backgrounds stay aligned); reject the clip if
    none is left."""
    state.objects = [state.objects[i] for i in keep]
    for column in ("masks", "backgrounds", "foregrounds"):
        array = row.get(column)
        if array is not None and len(array) > 0:
            row[column] = array[keep] if keep else array[:0]
    if not state.objects:
        state.reject_clip(stage, reason_if_empty)
