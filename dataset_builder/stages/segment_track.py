"""Stage ``segment_track``: text-prompted segmentation + tracking -> one mask sequence per candidate."""

from __future__ import annotations

import numpy as np

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import TrackedObject, is_placeholder, segment_clips
from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import BackendStage, ClipState, ObjectState

#: Prompt used when the tagger found no subject: class-agnostic backends still find movers.
FALLBACK_PROMPT = "moving object"


#: A frame whose object area (alpha >= 128) is under this share of the object's median area counts as empty.
EMPTY_AREA_SHARE = 0.05


def empty_alpha_frames(masks: np.ndarray, share: float = EMPTY_AREA_SHARE) -> list[int]:
    """Frames of a (T, H, W) uint8 mask sequence where the object (nearly) vanishes."""
    area = (masks >= 128).reshape(len(masks), -1).sum(1)
    limit = max(1.0, share * float(np.median(area)))
    return [int(i) for i in np.flatnonzero(area < limit)]


def prompts_of(state: ClipState) -> list[str]:
    return [t["label"] for t in state.tags if t.get("is_subject", True)] or [FALLBACK_PROMPT]


class SegmentTrackStage(BackendStage):
    stage = "segment_track"
    kind = BackendKind.SEGMENTER
    batch_method = "segment_clips"

    def __init__(self, spec: BackendSpec | dict, max_objects: int = 8):
        super().__init__(spec)
        self.max_objects = max_objects

    def infer(self, states: list[ClipState], rows: list[dict]) -> list[list[TrackedObject]]:
        """Every clip of the batch: OWLv2 over the keyframes of all of them in one forward (chunked by
        ``max_batch``); SAM2 then tracks each clip in its own inference session, as the official video
        predictor does (a session holds one video's frames and memory bank)."""
        return segment_clips(self.backend, [(row["frames"], prompts_of(state)) for state, row in zip(states, rows)])

    def apply_result(self, state: ClipState, row: dict, found: list[TrackedObject]) -> None:
        prompts = prompts_of(state)
        objects = sorted(found, key=lambda o: -o.score)
        whole = []
        for index, obj in enumerate(objects):
            gap = empty_alpha_frames(np.asarray(obj.masks))
            if gap:
                # The object would vanish from fg and stay whole in bg there: no sample beats that sample.
                state.reject_object(ObjectState(object_id=index, label=obj.label, score=obj.score), self.stage,
                                    "empty_alpha_frame", f"frames={gap[:8]}")
            else:
                whole.append(obj)
        objects = whole
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
        # Detected classes become subject tags (the sample json's tags, captions can name them).
        known = {t["label"] for t in state.tags}
        for o in kept:
            if o.label not in known and not is_placeholder(o.label):
                state.tags.append({"label": o.label, "score": round(float(o.score), 3), "is_subject": True})
                known.add(o.label)
        masks = np.stack([np.asarray(o.masks, dtype=np.uint8) for o in kept])
        if masks.shape[1:] != (t, h, w):
            raise ValueError(f"backend returned masks {masks.shape[1:]}, clip is {(t, h, w)}")
        row["masks"] = masks
