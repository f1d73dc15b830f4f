"""Drop near-duplicate mask sequences (e.g. two prompts finding the same object)."""

from __future__ import annotations

from pydantic import Field

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import TrackedObject
from dataset_builder.models.cpu._common import Options, parse_options
from dataset_builder.ops.masks import dedup_sequences


class DedupOptions(Options):
    #: Two sequences with temporal mean IoU above this are the same object; the higher score stays.
    iou_threshold: float = Field(0.7, ge=0.0, le=1.0)
    #: Also the same object when this share of the smaller sequence lies inside the other (None: off).
    containment_threshold: float | None = Field(0.85, ge=0.0, le=1.0)


class IouDedup:
    def __init__(self, spec: BackendSpec):
        self.options = parse_options(DedupOptions, spec, "dedup_masks/iou")

    def dedup(self, objects: list[TrackedObject]) -> tuple[list[int], list[tuple[int, int, float]]]:
        """(kept indices, [(dropped, kept_instead, iou)]), indices into ``objects``."""
        return dedup_sequences([o.masks for o in objects], [o.score for o in objects], self.options.iou_threshold,
                               self.options.containment_threshold)
