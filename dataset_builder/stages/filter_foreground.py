"""Stage ``filter_foreground``: keep only objects that are a real foreground layer (not sky, road, lake...)."""

from __future__ import annotations

from dataset_builder.config import BackendSpec
from dataset_builder.models.registry import BackendKind, build_backend
from dataset_builder.stages.base import ClipStage, ClipState, keep_objects


class FilterForegroundStage(ClipStage):
    stage = "filter_foreground"

    def __init__(self, spec: BackendSpec | dict):
        self.spec = BackendSpec.model_validate(spec)
        self.backend = build_backend(BackendKind.FG_JUDGE, self.spec)

    def process(self, state: ClipState, row: dict) -> None:
        keep = []
        for i, obj in enumerate(state.objects):
            verdict = self.backend.judge(row["frames"], row["masks"][i], obj.label)
            obj.scores["fg_judge"] = float(verdict.score)
            if verdict.is_foreground:
                keep.append(i)
            else:
                state.reject_object(obj, self.stage, verdict.reason, f"score={verdict.score:.3f}")
        state.backends[self.stage] = self.spec.name
        keep_objects(state, row, keep, self.stage, "no_foreground")
