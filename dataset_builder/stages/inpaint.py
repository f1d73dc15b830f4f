"""Stage ``inpaint``: one background per object, with that object removed from the clip."""

from __future__ import annotations

import numpy as np

from dataset_builder.config import BackendSpec
from dataset_builder.models.registry import BackendKind, build_backend
from dataset_builder.stages.base import ClipStage, ClipState


class InpaintStage(ClipStage):
    stage = "inpaint"

    def __init__(self, spec: BackendSpec | dict):
        self.spec = BackendSpec.model_validate(spec)
        self.backend = build_backend(BackendKind.INPAINTER, self.spec)

    def process(self, state: ClipState, row: dict) -> None:
        frames = row["frames"]
        backgrounds = [np.asarray(self.backend.inpaint(frames, mask), dtype=np.uint8) for mask in row["masks"]]
        for bg in backgrounds:
            if bg.shape != frames.shape:
                raise ValueError(f"inpainter returned {bg.shape}, clip is {frames.shape}")
        row["backgrounds"] = np.stack(backgrounds)
        state.backends[self.stage] = self.spec.name
