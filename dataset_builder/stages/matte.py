"""Stage ``matte``: every profile's masks become layer alpha - a hard core plus a thin soft band.

Backend-agnostic on purpose (CPU motion masks, SAM2 logits, person-model probabilities all pass
through it), so the paper and CPU profiles get one post-processing, not two. Runs before inpainting,
so the hole the inpainter removes is the final alpha's.
"""

from __future__ import annotations

import numpy as np

from dataset_builder.config import PostprocessConfig
from dataset_builder.ops.alpha import soft_alpha_sequence
from dataset_builder.stages.base import ClipStage, ClipState


class MatteStage(ClipStage):
    stage = "matte"

    def __init__(self, postprocess: PostprocessConfig | dict | None = None):
        self.cfg = PostprocessConfig.model_validate(postprocess or {})

    def process(self, state: ClipState, row: dict) -> None:
        c = self.cfg
        frames = row["frames"]
        row["masks"] = np.stack([
            soft_alpha_sequence(frames, m, band=c.alpha_band, radius=c.guided_radius, eps=c.guided_eps,
                                snap=c.alpha_snap)
            for m in row["masks"]
        ]) if len(row["masks"]) else row["masks"]
