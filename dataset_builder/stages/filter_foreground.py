"""Stage ``filter_foreground``: keep only objects that are a real foreground layer (not sky, road, lake...)."""

from __future__ import annotations

from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import BackendStage, ClipState, keep_objects


class FilterForegroundStage(BackendStage):
    stage = "filter_foreground"
    kind = BackendKind.FG_JUDGE

    def apply(self, state: ClipState, row: dict) -> None:
        keep = []
        for i, obj in enumerate(state.objects):
            verdict = self.backend.judge(row["frames"], row["masks"][i], obj.label)
            obj.scores["fg_judge"] = float(verdict.score)
            if verdict.is_foreground:
                keep.append(i)
            else:
                state.reject_object(obj, self.stage, verdict.reason, f"score={verdict.score:.3f}")
        keep_objects(state, row, keep, self.stage, "no_foreground")
