"""Stage ``caption``: three captions per object - foreground layer, background layer, blended video."""

from __future__ import annotations

from dataset_builder.models.base import LayerCaptions, caption_clips
from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import BackendStage, ClipState


class CaptionStage(BackendStage):
    stage = "caption"
    kind = BackendKind.CAPTIONER
    batch_method = "caption_clips"

    def infer(self, states: list[ClipState], rows: list[dict]) -> list[list[LayerCaptions]]:
        """3 questions per object of every clip of the batch (VLM: padded batched ``generate``)."""
        return caption_clips(self.backend, [
            (row["frames"], row["masks"], row["backgrounds"], [o.label for o in state.objects],
             [t["label"] for t in state.tags])
            for state, row in zip(states, rows)
        ])

    def apply_result(self, state: ClipState, row: dict, all_captions: list[LayerCaptions]) -> None:
        if len(all_captions) != len(state.objects):
            raise RuntimeError(f"captioner returned {len(all_captions)} results for {len(state.objects)} objects")
        for obj, captions in zip(state.objects, all_captions):
            for layer in ("fg", "bg", "blend"):
                text = getattr(captions, layer).strip()
                if not text:
                    raise ValueError(f"empty {layer} caption for object {obj.object_id}")
                obj.captions[layer] = text
