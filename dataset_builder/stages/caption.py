"""Stage ``caption``: three captions per object - foreground layer, background layer, blended video."""

from __future__ import annotations

from dataset_builder.config import BackendSpec
from dataset_builder.models.registry import BackendKind, build_backend
from dataset_builder.stages.base import ClipStage, ClipState


class CaptionStage(ClipStage):
    stage = "caption"

    def __init__(self, spec: BackendSpec | dict):
        self.spec = BackendSpec.model_validate(spec)
        self.backend = build_backend(BackendKind.CAPTIONER, self.spec)

    def process(self, state: ClipState, row: dict) -> None:
        tags = [t["label"] for t in state.tags]
        for i, obj in enumerate(state.objects):
            captions = self.backend.caption(row["frames"], row["masks"][i], row["backgrounds"][i], obj.label, tags)
            for layer in ("fg", "bg", "blend"):
                text = getattr(captions, layer).strip()
                if not text:
                    raise ValueError(f"empty {layer} caption for object {obj.object_id}")
                obj.captions[layer] = text
        state.backends[self.stage] = self.spec.name
