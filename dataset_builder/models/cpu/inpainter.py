"""Object removal on CPU: flow-guided propagation, then camera-aligned frames, then spatial inpainting
for what no frame ever saw (see ``ops.inpaint``)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from dataset_builder.config import BackendSpec
from dataset_builder.models.cpu._common import Options, parse_options
from dataset_builder.models.cpu.exemplar_inpainter import exemplar_fill
from dataset_builder.ops.inpaint import inpaint_video, ring_structure, spatial_fill
from dataset_builder.ops.motion import cumulative_homographies, pairwise_homographies


class InpainterOptions(Options):
    #: Hole = mask (any alpha > 0) grown by this many px: covers soft edges and mask error.
    dilate: int = Field(6, ge=0)
    #: Extra downward growth, as a fraction of the object's height (contact shadows).
    shadow: float = Field(0.06, ge=0, le=1)
    #: Flow-guided propagation (DIS flow completed in the hole) before the homography fill.
    flow: bool = True
    flow_max_side: int = Field(360, ge=64)
    #: Per hole pixel, median of this many aligned frames that see it (nearest in time first).
    max_candidates: int = Field(5, ge=1)
    #: Frames searched per target frame, nearest first.
    max_sources: int = Field(12, ge=1)
    #: Longer side the homographies are estimated at.
    align_max_side: int = Field(360, ge=64)
    #: What no frame saw: "exemplar" paints it once on up to ``max_references`` frames (patches of the
    #: frame's own background, see models.cpu.exemplar_inpainter) and carries that to the other frames;
    #: the spatial method fills what is left. "none": the spatial method alone (a smooth blur on large
    #: holes: the DAVIS dog's bg showed a blob where the dog walked with the camera).
    painter: Literal["exemplar", "none"] = "exemplar"
    max_references: int = Field(2, ge=1)
    #: Longer side of the exemplar's patch search.
    painter_max_side: int = Field(256, ge=32)
    #: The exemplar paints only holes whose surroundings are a texture (ops.inpaint.ring_structure at
    #: most this); around large-scale structure (a hand-held box: table, room, hand) its patches made
    #: a collage that looked like remnants, and the spatial method's smooth fill is kept.
    painter_max_structure: float = Field(35.0, ge=0)
    spatial_method: Literal["telea", "ns"] = "telea"
    spatial_radius: int = Field(5, ge=1)
    #: Width in px of the fade from the input into the fill at the hole border.
    seam: int = Field(3, ge=0)
    #: A frame lends no pixels where the holes of the ``source_reach`` frames either side are: a mask
    #: that missed part of the object in one frame would lend the object to the others' fill (ghost).
    #: DAVIS dog: true-object pixels left in the bg 12.1 % -> 9.6 % at 1, J and edge PSNR unchanged.
    source_reach: int = Field(1, ge=0)
    #: Borrowed pixels are relit to the frame's exposure (ops.inpaint.exposure_gains): a hand-held
    #: clip's auto-exposure otherwise leaves a lighter or darker ghost of the object in the bg.
    exposure: bool = True


class TemporalSpatialInpainter:
    def __init__(self, spec: BackendSpec):
        self.options = parse_options(InpainterOptions, spec, "inpaint/cpu")
        #: Stats of the last call (hole fraction, share filled from other frames), for scores/logging.
        self.last_stats: dict[str, float] = {}

    def inpaint(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        o = self.options
        if frames.shape[:3] != masks.shape:
            raise ValueError(f"frames {frames.shape} and masks {masks.shape} disagree")
        pairwise, _ = pairwise_homographies(frames, max_side=o.align_max_side)
        cum = cumulative_homographies(pairwise)
        bg, self.last_stats = inpaint_video(
            frames, masks, cum, dilate=o.dilate, shadow=o.shadow, flow=o.flow, flow_max_side=o.flow_max_side,
            max_candidates=o.max_candidates, max_sources=o.max_sources,
            spatial_radius=o.spatial_radius, spatial_method=o.spatial_method, seam=o.seam,
            source_reach=o.source_reach, painter=self._paint if o.painter == "exemplar" else None,
            max_references=o.max_references, exposure=o.exposure,
        )
        return bg

    def _paint(self, frame: np.ndarray, hole: np.ndarray) -> np.ndarray:
        o = self.options
        if ring_structure(frame, hole) <= o.painter_max_structure:
            try:
                return exemplar_fill(frame, hole, work_max_side=o.painter_max_side, seam=0)
            except ValueError:  # no fully known patch to copy (the hole is nearly the frame)
                pass
        return spatial_fill(frame, hole, o.spatial_radius, o.spatial_method)
