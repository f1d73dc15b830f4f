"""Stage ``tag``: RAM-style tags; subject tags become the prompts of ``segment_track``."""

from __future__ import annotations

from dataclasses import asdict

from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import BackendStage, ClipState


class TagStage(BackendStage):
    stage = "tag"
    kind = BackendKind.TAGGER

    def apply(self, state: ClipState, row: dict) -> None:
        tags = self.backend.tag(row["frames"])
        state.tags = [asdict(tag) for tag in sorted(tags, key=lambda t: -t.score)]
