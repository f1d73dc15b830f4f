"""Stage ``caption``: three captions per object - foreground layer, background layer, blended video."""

from __future__ import annotations

from dataset_builder.models.base import caption_objects
from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import BackendStage, ClipState


class CaptionStage(BackendStage):
    stage = "caption"
    kind = BackendKind.CAPTIONER

    def apply(self, state: ClipState, row: dict) -> None:
        tags = [t["label"] for t in state.tags]
        all_captions = caption_objects(self.backend, row["frames"], row["masks"], row["backgrounds"],
                                       [o.label for o in state.objects], tags)
        for obj, captions in zip(state.objects, all_captions):
            for layer in ("fg", "bg", "blend"):
                text = getattr(captions, layer).strip()
                if not text:
                    raise ValueError(f"empty {layer} caption for object {obj.object_id}")
                obj.captions[layer] = text
