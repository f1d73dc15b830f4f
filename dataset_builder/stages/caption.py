"""Stage ``caption``: three captions per object - foreground layer, background layer, blended video."""

from __future__ import annotations

from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import BackendStage, ClipState


class CaptionStage(BackendStage):
    stage = "caption"
    kind = BackendKind.CAPTIONER

    def apply(self, state: ClipState, row: dict) -> None:
        tags = [t["label"] for t in state.tags]
        for i, obj in enumerate(state.objects):
            captions = self.backend.caption(row["frames"], row["masks"][i], row["backgrounds"][i], obj.label, tags)
            for layer in ("fg", "bg", "blend"):
                text = getattr(captions, layer).strip()
                if not text:
                    raise ValueError(f"empty {layer} caption for object {obj.object_id}")
                obj.captions[layer] = text
