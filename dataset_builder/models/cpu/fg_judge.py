"""Is a tracked mask a real foreground object? Geometry + motion heuristics with machine-readable reasons.

Checks run in a fixed order and the first failure is the reason, so rejects are easy to aggregate:
``absent``, ``too_small``, ``too_large``, ``unstable``, ``sky_like_band``, ``ground_like_band``,
``touches_borders``, ``static``; accepted masks get ``ok``.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import Judgement
from dataset_builder.ops.person import person_prompt
from dataset_builder.models.cpu._common import Options, parse_options, resize_frames, resize_masks
from dataset_builder.ops import masks as mops
from dataset_builder.ops.motion import cumulative_homographies, pairwise_homographies, work_scale
from dataset_builder.ops.segment import residual_maps

_DILATE = np.ones((7, 7), np.uint8)


class FgJudgeOptions(Options):
    min_presence: float = Field(0.5, ge=0, le=1)
    min_area_fraction: float = Field(0.005, ge=0, le=1)
    max_area_fraction: float = Field(0.6, ge=0, le=1)
    #: 1 - coefficient of variation of the area (``area_trend``: of the area over its log-linear trend, so
    #: an object approaching the camera is not "unstable"); below this the mask flickers.
    min_area_stability: float = Field(0.4, ge=0, le=1)
    area_trend: bool = True
    max_border_touches: int = Field(2, ge=0, le=4)
    #: A band: spans at least this fraction of the width and is at least ``band_aspect`` x wider than tall,
    #: touching the top (sky) or bottom (road, ground, water) edge.
    band_min_width: float = Field(0.8, gt=0, le=1)
    band_aspect: float = Field(2.5, gt=0)
    #: Share of mask pixels that must differ from the camera-aligned other frames (motion residual).
    min_moving_fraction: float = Field(0.15, ge=0, le=1)
    #: People are a foreground layer even when they barely move (a talking head); the ``static`` rule
    #: is for walls, ground and other background regions.
    static_ok_for_people: bool = True
    motion_threshold: float = Field(12.0, gt=0)
    work_max_side: int = Field(256, ge=64)


class HeuristicFgJudge:
    def __init__(self, spec: BackendSpec):
        self.options = parse_options(FgJudgeOptions, spec, "filter_foreground/cpu")

    def judge(self, frames: np.ndarray, masks: np.ndarray, label: str) -> Judgement:
        o = self.options
        hard = mops.binarize(masks)
        present = mops.presence(hard)
        pres = float(present.mean())
        if pres < o.min_presence:
            return Judgement(False, pres, "absent")
        area = float(np.median(mops.area_fractions(hard)[present]))
        if area < o.min_area_fraction:
            return Judgement(False, area / o.min_area_fraction, "too_small")
        if area > o.max_area_fraction:
            return Judgement(False, o.max_area_fraction / area, "too_large")
        stab = (mops.trend_area_stability if o.area_trend else mops.area_stability)(hard)
        if stab < o.min_area_stability:
            return Judgement(False, stab, "unstable")
        band = self._band(hard, present)
        if band:
            return Judgement(False, 0.0, band)
        touches = mops.sequence_border_touches(hard)
        if touches > o.max_border_touches:
            return Judgement(False, 1.0 - touches / 4.0, "touches_borders")
        moving = self._moving_fraction(frames, hard)
        if moving < o.min_moving_fraction and not (o.static_ok_for_people and person_prompt([label])):
            return Judgement(False, moving / max(o.min_moving_fraction, 1e-6), "static")
        score = float(np.clip(pres * (0.5 + 0.5 * stab) * min(1.0, moving / 0.5), 0.0, 1.0))
        return Judgement(True, score, "ok")

    def _band(self, hard: np.ndarray, present: np.ndarray) -> str:
        h, w = hard.shape[1:]
        votes = {"sky_like_band": 0, "ground_like_band": 0}
        for m in hard[present]:
            box = mops.bbox(m)
            x0, y0, x1, y1 = box
            wide = (x1 - x0) >= self.options.band_min_width * w
            flat = (x1 - x0) >= self.options.band_aspect * (y1 - y0)
            if wide and flat and y0 == 0:
                votes["sky_like_band"] += 1
            elif wide and flat and y1 == h:
                votes["ground_like_band"] += 1
        kind, count = max(votes.items(), key=lambda kv: kv[1])
        return kind if count * 2 > int(present.sum()) else ""

    def _moving_fraction(self, frames: np.ndarray, hard: np.ndarray) -> float:
        """Share of mask pixels that differ from the other frames after camera alignment (camera from the
        background: corners on the object are ignored)."""
        _, h, w = hard.shape
        scale = work_scale(h, w, self.options.work_max_side)
        small = resize_frames(frames, scale)
        small_masks = resize_masks(hard.astype(np.uint8) * 255, *small.shape[1:3]) >= 128
        # The camera is estimated from the pixels around the object: a large textured object on a plain
        # background (a box carried over a table) would otherwise carry the alignment and look static.
        near = np.stack([cv2.dilate(m.astype(np.uint8), _DILATE) for m in small_masks]).astype(bool)
        pairwise, _ = pairwise_homographies(small, max_side=self.options.work_max_side, ignore=near)
        res = residual_maps(small, cumulative_homographies(pairwise), num_references=6)
        inside = small_masks.sum()
        return float((small_masks & (res > self.options.motion_threshold)).sum() / max(inside, 1))
