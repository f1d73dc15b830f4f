"""Deterministic template captions for the three LayerFlow layers, built from measurements.

fg:    what the object is, its colours, size, where it is and how it moves (alpha centroid track).
bg:    the scene without the object: colour tones, brightness, scene tags, camera motion.
blend: the composed shot in one sentence, object + motion + scene + camera.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import LayerCaptions
from dataset_builder.models.cpu._common import Options, parse_options, resize_frames
from dataset_builder.ops import masks as mops
from dataset_builder.ops.colors import brightness_word, dominant_colors
from dataset_builder.ops.motion import (
    cumulative_homographies,
    describe_camera_motion,
    pairwise_homographies,
    work_scale,
)

_CAMERA = {"static": "a static camera", "panning": "a camera panning {dir}", "zooming": "a camera zooming {dir}",
           "shaky": "a handheld, shaky camera"}
#: Scene tags worth repeating in the bg caption (colour/brightness/camera are measured directly).
_SCENE_WORDS = {"sky": "open sky", "outdoor": "an outdoor setting"}
_LIGHT = {"dark": " dark", "bright": " bright", "evenly lit": ", evenly lit"}
_ARTICLE_LIGHT = {"dark": "a dark", "bright": "a bright", "evenly lit": "an evenly lit"}


class CaptionerOptions(Options):
    work_max_side: int = Field(256, ge=64)
    #: Centroid speed (fraction of the frame diagonal per frame) below which the object "stays".
    still_speed: float = Field(0.004, gt=0)
    fast_speed: float = Field(0.03, gt=0)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


class TemplateCaptioner:
    def __init__(self, spec: BackendSpec):
        self.options = parse_options(CaptionerOptions, spec, "caption/cpu")

    def caption(
        self, frames: np.ndarray, alpha: np.ndarray, background: np.ndarray, label: str, tags: list[str]
    ) -> LayerCaptions:
        o = self.options
        _, h, w = alpha.shape
        subject = label or "object"
        fg_cols = [c for c, _ in dominant_colors(frames, weights=alpha.astype(np.float64), top=2)] if alpha.any() \
            else []
        bg_cols = [c for c, _ in dominant_colors(background, top=2)]
        light = brightness_word(background)

        present = mops.presence(alpha, min_pixels=1)
        area = float(np.median(mops.area_fractions(alpha)[present])) if present.any() else 0.0
        size = "small" if area < 0.05 else "medium-sized" if area < 0.2 else "large"
        cents = mops.centroid_track(alpha)
        valid = cents[~np.isnan(cents[:, 0])]
        where = self._position(valid.mean(0), w, h) if len(valid) else "frame"

        small = resize_frames(background, work_scale(h, w, o.work_max_side))
        pairwise, _ = pairwise_homographies(small, max_side=o.work_max_side)
        cam = describe_camera_motion(cumulative_homographies(pairwise), *small.shape[1:3])
        camera = _CAMERA[cam.kind].format(dir=cam.direction)
        motion = self._motion(valid, w, h)

        colour = f"{_join(fg_cols)} " if fg_cols else ""
        fg = (f"A {size} {colour}{subject} in the {where} of the frame, {motion}, "
              f"covering about {round(100 * area)}% of the view, on a plain backdrop.")
        scene = [_SCENE_WORDS[x] for x in tags if x in _SCENE_WORDS]
        scene_txt = f" with {_join(scene)}" if scene else ""
        bg = (f"An empty{_LIGHT[light]} scene in {_join(bg_cols)} tones{scene_txt}, filmed with {camera}; "
              f"nothing moves in the foreground.")
        blend = (f"A {colour}{subject} {motion} through {_ARTICLE_LIGHT[light]} {_join(bg_cols)} scene, "
                 f"filmed with {camera}.")
        return LayerCaptions(fg=fg, bg=bg, blend=blend)

    @staticmethod
    def _position(c: np.ndarray, w: int, h: int) -> str:
        col = "left" if c[0] < w / 3 else "right" if c[0] > 2 * w / 3 else ""
        row = "upper" if c[1] < h / 3 else "lower" if c[1] > 2 * h / 3 else ""
        if row and not col:
            return {"upper": "top", "lower": "bottom"}[row]  # "in the top of the frame", not "in the upper of"
        return f"{row} {col}".strip() or "centre"

    def _motion(self, cents: np.ndarray, w: int, h: int) -> str:
        """Motion in image coordinates (what the viewer sees) from the alpha centroid track."""
        if len(cents) < 2:
            return "briefly visible"
        diag = float(np.hypot(w, h))
        step = (cents[-1] - cents[0]) / (len(cents) - 1)
        speed = float(np.linalg.norm(step)) / diag
        if speed < self.options.still_speed:
            return "staying in place"
        dx, dy = step
        direction = ("to the right" if dx > 0 else "to the left") if abs(dx) >= abs(dy) else \
            ("downward" if dy > 0 else "upward")
        pace = "quickly" if speed > self.options.fast_speed else "slowly" if speed < 2.5 * self.options.still_speed \
            else "steadily"
        return f"moving {pace} {direction}"
