"""Model backends behind small Protocols, chosen by name from an explicit registry (see ``registry``)."""

from dataset_builder.models.base import (
    Captioner,
    Deduper,
    FgJudge,
    Inpainter,
    Judgement,
    LayerCaptions,
    SegmenterTracker,
    Tag,
    Tagger,
    TrackedObject,
)
from dataset_builder.models.registry import BackendKind, available_backends, build_backend, register

__all__ = [
    "BackendKind",
    "Captioner",
    "Deduper",
    "FgJudge",
    "Inpainter",
    "Judgement",
    "LayerCaptions",
    "SegmenterTracker",
    "Tag",
    "Tagger",
    "TrackedObject",
    "available_backends",
    "build_backend",
    "register",
]
