"""Stage ``dedup_masks``: drop candidates whose mask sequence duplicates a better-scored one
(text prompts like "person" and "man" often segment the same object)."""

from __future__ import annotations

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import TrackedObject
from dataset_builder.models.registry import BackendKind, build_backend
from dataset_builder.stages.base import ClipStage, ClipState, keep_objects


class DedupMasksStage(ClipStage):
    stage = "dedup_masks"

    def __init__(self, spec: BackendSpec | dict):
        self.spec = BackendSpec.model_validate(spec)
        self.backend = build_backend(BackendKind.DEDUP, self.spec)

    def process(self, state: ClipState, row: dict) -> None:
        objects = [TrackedObject(o.label, row["masks"][i], o.score) for i, o in enumerate(state.objects)]
        kept, dropped = self.backend.dedup(objects)
        for index, kept_instead, iou in dropped:
            state.reject_object(state.objects[index], self.stage, "duplicate",
                                f"of object {state.objects[kept_instead].object_id}, mask IoU {iou:.3f}")
        state.backends[self.stage] = self.spec.name
        keep_objects(state, row, sorted(kept), self.stage, "no_objects")
