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
import time
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


class RowState(BaseModel):
    """What every pipeline's row carries: the unit of commit (a clip, a copy-paste pair, an image),
    where it came from, and its rejects so far. The writer needs nothing else."""

    source_uri: str
    source_sha1: str = ""
    #: Units planned for this row's input (0: unknown); resume skips an input once all are committed.
    clips_planned: int = 0
    rejects: list[RejectRecord] = Field(default_factory=list)
    #: Set once the whole unit is rejected; later stages pass it through untouched.
    rejected: bool = False
    #: stage -> (seconds of the stage call that processed this unit / units in it, units in it):
    #: measured by :func:`run_timed`, summed per shard into ``CommitRecord.stage_stats`` by the writer.
    stage_seconds: dict[str, tuple[float, int]] = Field(default_factory=dict)

    @property
    def row_id(self) -> str:
        raise NotImplementedError

    @property
    def input_key(self) -> str:
        """The input's identity for resume (``layout.resume_plan``): its uri."""
        return self.source_uri

    def reject_row(self, stage: str, reason: str, detail: str = "", object_id: int = -1) -> None:
        """Record a reject against this unit (``object_id`` -1: the whole unit) without ending it."""
        self.rejects.append(RejectRecord(source_uri=self.source_uri, clip_id=self.row_id, object_id=object_id,
                                         stage=stage, reason=reason, detail=detail[:2000]))


class ClipState(RowState):
    clip_id: str
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
    backends: dict[str, str] = Field(default_factory=dict)
    #: stage -> model fingerprint + library versions, as measured in the worker (``models.provenance``)
    revisions: dict[str, str] = Field(default_factory=dict)

    @property
    def row_id(self) -> str:
        return self.clip_id

    def reject_clip(self, stage: str, reason: str, detail: str = "") -> None:
        self.reject_row(stage, reason, detail)
        self.rejected = True

    def reject_object(self, obj: ObjectState, stage: str, reason: str, detail: str = "") -> None:
        self.reject_row(stage, reason, detail, object_id=obj.object_id)


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


def run_timed(stage: RowStage, rows: list[dict[str, Any]], states: list[RowState]) -> None:
    """``stage.run(rows, states)``, its wall time shared out over the units that were live on entry (those
    rejected upstream pass through at no cost): what pool sizing by measured cost reads back."""
    live = [state for state in states if not state.rejected]
    start = time.perf_counter()
    stage.run(rows, states)
    if live:
        share = (time.perf_counter() - start) / len(live)
        for state in live:
            state.stage_seconds[stage.stage] = (share, len(live))


class RowStage:
    """The one error-capturing stage wrapper of every pipeline: the row state is parsed once per row,
    an exception in :meth:`process` becomes a reject of that unit (never a lost unit, never a failed
    batch), and :meth:`finish_row` lets a stage drop what a rejected row no longer needs.

    Subclasses set ``stage`` (the reject stage name) and ``state_cls``, and implement :meth:`process`,
    which mutates ``state`` and ``row``. :class:`~dataset_builder.stages.chain.StageChain` calls
    :meth:`run` directly so fused stages share one parse. :meth:`process_rows` is the batch-level hook:
    it receives every live (not yet rejected) row of the Ray batch at once; by default it processes
    them one by one (:class:`BackendStage` hands them to its model together).
    """

    stage: ClassVar[str]
    state_cls: ClassVar[type[RowState]]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = rows_from_batch(batch)
        states = [self.state_cls.model_validate_json(row["meta"]) for row in rows]
        run_timed(self, rows, states)
        for row, state in zip(rows, states):
            row["meta"] = state.model_dump_json()
        return batch_from_rows(rows)

    def run(self, rows: list[dict[str, Any]], states: list[RowState]) -> None:
        for row in rows:
            self.prepare(row)
        live = [i for i, state in enumerate(states) if not state.rejected]
        if live:
            self.process_rows([states[i] for i in live], [rows[i] for i in live])
        for row, state in zip(rows, states):
            self.finish_row(state, row)

    def process_rows(self, states: list[RowState], rows: list[dict[str, Any]]) -> None:
        """All live rows of the batch (the batch-level hook); default: :meth:`process` per row."""
        for state, row in zip(states, rows):
            self.guarded(state, self.process, state, row)

    def guarded(self, state: RowState, fn, *args) -> None:
        """``fn(*args)``; an exception becomes a reject of ``state`` (the single error path)."""
        try:
            fn(*args)
        except Exception as exc:  # the point: every failure is recorded, none is fatal
            log.warning("stage %s failed on %s: %s", self.stage, state.row_id, exc)
            self.on_error(state, exc)

    def on_error(self, state: RowState, exc: Exception) -> None:
        reason = "oom" if is_oom(exc) else "error"  # OOM left after the backend's batch back-off
        state.reject_row(self.stage, reason, f"{type(exc).__name__}: {exc}\n" + traceback.format_exc(limit=3))
        state.rejected = True

    def prepare(self, row: dict[str, Any]) -> None:
        """Called on every row, rejected or not (e.g. to add a column all rows must have)."""

    def process(self, state, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def finish_row(self, state, row: dict[str, Any]) -> None:
        """Called on every row after :meth:`process` (or its failure)."""


class ClipStage(RowStage):
    """A stage of the coarse pipeline (rows are clips, see the module docstring)."""

    state_cls = ClipState

    def finish_row(self, state: ClipState, row: dict[str, Any]) -> None:
        if state.rejected:
            drop_heavy(row)


class BackendStage(ClipStage):
    """A stage driven by one model backend: built once per actor from its :class:`BackendSpec` through the
    registry, and recorded in each processed clip's provenance.

    A stage either implements :meth:`apply` (one clip at a time) or splits its work in two:
    :meth:`infer` - the model call for several clips at once, which reads the rows and mutates nothing -
    and :meth:`apply_result` - one clip's result written into its state and row. When its backend has
    ``batch_method``, such a stage hands all live clips of a Ray batch to it in one :meth:`infer` (the
    backend batches across clips up to its ``max_batch``). If that call raises, nothing was changed yet:
    the clips are re-run one by one, so the failing clip becomes the one reject (stage + reason) and its
    batch-mates still succeed; an OOM that the backend's own batch halving could not absorb ends the same
    way, as an ``oom`` reject of the clip that does not fit alone. ``batch_fallbacks`` counts those re-runs.
    """

    kind: ClassVar[BackendKind]
    #: The backend method that takes several clips at once (``models.base``'s helpers of that name); a
    #: backend without it (every CPU backend) is run clip by clip, so a failure costs no re-run.
    batch_method: ClassVar[str | None] = None

    def __init__(self, spec: BackendSpec | dict):
        from dataset_builder.models.provenance import backend_revision

        self.spec = BackendSpec.model_validate(spec)
        self.backend = build_backend(self.kind, self.spec)
        self.revision = backend_revision(self.kind.value, self.spec)
        self.batch_fallbacks = 0

    @property
    def batches_clips(self) -> bool:
        return self.batch_method is not None and hasattr(self.backend, self.batch_method)

    def process_rows(self, states: list[ClipState], rows: list[dict[str, Any]]) -> None:
        if len(rows) > 1 and self.batches_clips:
            try:
                results = self.infer(states, rows)
                if len(results) != len(rows):
                    raise RuntimeError(f"{self.stage}: {len(results)} results for {len(rows)} clips")
            except Exception as exc:
                self.batch_fallbacks += 1
                log.warning("stage %s: batch of %d clips failed (%s: %s); re-running them one by one",
                            self.stage, len(rows), type(exc).__name__, exc)
            else:
                for state, row, result in zip(states, rows, results):
                    self.guarded(state, self.commit, state, row, result)
                return
        super().process_rows(states, rows)

    def process(self, state: ClipState, row: dict[str, Any]) -> None:
        if type(self).infer is not BackendStage.infer:  # an infer/apply_result stage, one clip
            self.commit(state, row, self.infer([state], [row])[0])
        else:
            self.apply(state, row)
            self.record(state)

    def commit(self, state: ClipState, row: dict[str, Any], result: Any) -> None:
        self.apply_result(state, row, result)
        self.record(state)

    def record(self, state: ClipState) -> None:
        state.backends[self.stage] = self.spec.name
        state.revisions[self.stage] = self.revision

    def apply(self, state: ClipState, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def infer(self, states: list[ClipState], rows: list[dict[str, Any]]) -> list[Any]:
        """The model's results for several clips, one per clip; must not mutate ``states``/``rows``."""
        raise NotImplementedError

    def apply_result(self, state: ClipState, row: dict[str, Any], result: Any) -> None:
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
