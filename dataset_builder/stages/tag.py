"""Stage ``tag``: RAM-style tags; subject tags become the prompts of ``segment_track``."""

from __future__ import annotations

from dataclasses import asdict

from dataset_builder.config import BackendSpec
from dataset_builder.models.registry import BackendKind, build_backend
from dataset_builder.stages.base import ClipStage, ClipState


class TagStage(ClipStage):
    stage = "tag"

    def __init__(self, spec: BackendSpec | dict):
        self.spec = BackendSpec.model_validate(spec)
        self.backend = build_backend(BackendKind.TAGGER, self.spec)

    def process(self, state: ClipState, row: dict) -> None:
        tags = self.backend.tag(row["frames"])
        state.tags = [asdict(tag) for tag in sorted(tags, key=lambda t: -t.score)]
        state.backends[self.stage] = self.spec.name
