"""Stage ``inpaint``: one background per object, with that object removed from the clip."""

from __future__ import annotations

import numpy as np

from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import BackendStage, ClipState


class InpaintStage(BackendStage):
    stage = "inpaint"
    kind = BackendKind.INPAINTER

    def apply(self, state: ClipState, row: dict) -> None:
        frames = row["frames"]
        backgrounds = [np.asarray(self.backend.inpaint(frames, mask), dtype=np.uint8) for mask in row["masks"]]
        for bg in backgrounds:
            if bg.shape != frames.shape:
                raise ValueError(f"inpainter returned {bg.shape}, clip is {frames.shape}")
        row["backgrounds"] = np.stack(backgrounds)
