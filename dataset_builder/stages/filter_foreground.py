"""Stage ``filter_foreground``: keep only objects that are a real foreground layer (not sky, road, lake...)."""

from __future__ import annotations

from dataset_builder.models.base import Judgement, judge_clips
from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import BackendStage, ClipState, keep_objects


class FilterForegroundStage(BackendStage):
    stage = "filter_foreground"
    kind = BackendKind.FG_JUDGE
    batch_method = "judge_clips"

    def infer(self, states: list[ClipState], rows: list[dict]) -> list[list[Judgement]]:
        """Every object of every clip of the batch (VLM: one batched forward, chunked by ``max_batch``)."""
        return judge_clips(self.backend, [(row["frames"], row["masks"], [o.label for o in state.objects])
                                          for state, row in zip(states, rows)])

    def apply_result(self, state: ClipState, row: dict, verdicts: list[Judgement]) -> None:
        if len(verdicts) != len(state.objects):
            raise RuntimeError(f"judge returned {len(verdicts)} verdicts for {len(state.objects)} objects")
        keep = []
        for i, (obj, verdict) in enumerate(zip(state.objects, verdicts)):
            obj.scores["fg_judge"] = float(verdict.score)
            if verdict.is_foreground:
                keep.append(i)
            else:
                state.reject_object(obj, self.stage, verdict.reason, f"score={verdict.score:.3f}")
        keep_objects(state, row, keep, self.stage, "no_foreground")
