"""Stage ``filter_foreground``: keep only objects that are a real foreground layer (not sky, road, lake...)."""

from __future__ import annotations

from dataset_builder.models.base import judge_objects
from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import BackendStage, ClipState, keep_objects


class FilterForegroundStage(BackendStage):
    stage = "filter_foreground"
    kind = BackendKind.FG_JUDGE

    def apply(self, state: ClipState, row: dict) -> None:
        keep = []
        verdicts = judge_objects(self.backend, row["frames"], row["masks"], [o.label for o in state.objects])
        for i, (obj, verdict) in enumerate(zip(state.objects, verdicts)):
            obj.scores["fg_judge"] = float(verdict.score)
            if verdict.is_foreground:
                keep.append(i)
            else:
                state.reject_object(obj, self.stage, verdict.reason, f"score={verdict.score:.3f}")
        keep_objects(state, row, keep, self.stage, "no_foreground")
