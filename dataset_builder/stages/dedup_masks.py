"""Stage ``dedup_masks``: drop candidates whose mask sequence duplicates a better-scored one
(text prompts like "person" and "man" often segment the same object)."""

from __future__ import annotations

from dataset_builder.models.base import TrackedObject
from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import BackendStage, ClipState, keep_objects


class DedupMasksStage(BackendStage):
    stage = "dedup_masks"
    kind = BackendKind.DEDUP

    def apply(self, state: ClipState, row: dict) -> None:
        objects = [TrackedObject(o.label, row["masks"][i], o.score) for i, o in enumerate(state.objects)]
        kept, dropped = self.backend.dedup(objects)
        for index, kept_instead, iou in dropped:
            state.reject_object(state.objects[index], self.stage, "duplicate",
                                f"of object {state.objects[kept_instead].object_id}, mask IoU {iou:.3f}")
        keep_objects(state, row, sorted(kept), self.stage, "no_objects")
