"""Stage ``segment_track``: text-prompted segmentation + tracking -> one mask sequence per candidate."""

from __future__ import annotations

import numpy as np

from dataset_builder.config import BackendSpec
from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import BackendStage, ClipState, ObjectState

#: Prompt used when the tagger found no subject: class-agnostic backends still find movers.
FALLBACK_PROMPT = "moving object"


class SegmentTrackStage(BackendStage):
    stage = "segment_track"
    kind = BackendKind.SEGMENTER

    def __init__(self, spec: BackendSpec | dict, max_objects: int = 8):
        super().__init__(spec)
        self.max_objects = max_objects

    def apply(self, state: ClipState, row: dict) -> None:
        prompts = [t["label"] for t in state.tags if t.get("is_subject", True)] or [FALLBACK_PROMPT]
        objects = sorted(self.backend.segment(row["frames"], prompts), key=lambda o: -o.score)
        kept = objects[: self.max_objects]
        state.objects = [
            ObjectState(object_id=i, label=o.label, score=float(o.score),
                        scores={"track": float(o.score), **{k: float(v) for k, v in o.extras.items()}})
            for i, o in enumerate(kept)
        ]
        for dropped_index, obj in enumerate(objects[self.max_objects:], start=len(kept)):
            state.reject_object(ObjectState(object_id=dropped_index, label=obj.label, score=obj.score),
                                self.stage, "over_max_objects", f"score={obj.score:.3f}")
        t, h, w = row["frames"].shape[:3]
        if not kept:
            state.reject_clip(self.stage, "no_objects", f"prompts={prompts}")
            return
        masks = np.stack([np.asarray(o.masks, dtype=np.uint8) for o in kept])
        if masks.shape[1:] != (t, h, w):
            raise ValueError(f"backend returned masks {masks.shape[1:]}, clip is {(t, h, w)}")
        row["masks"] = masks
