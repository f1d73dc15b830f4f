"""Stage ``tag``: RAM-style tags; subject tags become the prompts of ``segment_track``."""

from __future__ import annotations

from dataclasses import asdict

from dataset_builder.models.base import Tag, tag_clips
from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import BackendStage, ClipState


class TagStage(BackendStage):
    stage = "tag"
    kind = BackendKind.TAGGER
    batch_method = "tag_clips"

    def infer(self, states: list[ClipState], rows: list[dict]) -> list[list[Tag]]:
        """All clips of the batch at once (SigLIP: one image forward over their keyframes)."""
        return tag_clips(self.backend, [row["frames"] for row in rows])

    def apply_result(self, state: ClipState, row: dict, tags: list[Tag]) -> None:
        state.tags = [asdict(tag) for tag in sorted(tags, key=lambda t: -t.score)]
