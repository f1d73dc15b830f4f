"""Deterministic template captions for the three LayerFlow layers, built from measurements.

fg:    what the object is (its class label), its colours, size, where it is and how it moves.
bg:    the scene without the object: what else stays in it (the clip's other objects and detected
       people, by class), colour tones, brightness, scene tags, camera motion. It never calls a scene
       empty: with nothing detected it just does not mention other content.
blend: the composed shot in one sentence, object + motion + scene + camera.

Camera motion is estimated once per clip, on the blend around the objects, and shared by all its objects
(:meth:`TemplateCaptioner.caption_objects`). Placeholder labels ("moving object") never reach a
caption: an object without a class is "object".
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import LayerCaptions, is_placeholder
from dataset_builder.models.cpu._common import Options, parse_options, resize_frames
from dataset_builder.models.cpu.classes import GROUP_OF_PEOPLE, part_of
from dataset_builder.ops import masks as mops
from dataset_builder.ops.colors import brightness_word, dominant_colors
from dataset_builder.ops.motion import (
    cumulative_homographies,
    describe_camera_motion,
    pairwise_homographies,
    work_scale,
)

_DILATE = np.ones((7, 7), np.uint8)
_CAMERA = {"static": "a static camera", "panning": "a camera panning {dir}", "zooming": "a camera zooming {dir}",
           "shaky": "a handheld, shaky camera"}
#: Scene tags worth repeating in the bg caption (colour/brightness/camera are measured directly).
_SCENE_WORDS = {"sky": "open sky", "outdoor": "an outdoor setting"}
_ARTICLE_LIGHT = {"dark": "a dark", "bright": "a bright", "evenly lit": "an evenly lit"}
#: Scene tags that are not content (measured directly or not objects).
_NOT_CONTENT = {"sky", "outdoor", "indoor", "dark", "bright", "evenly lit"}


class CaptionerOptions(Options):
    work_max_side: int = Field(256, ge=64)
    #: Centroid speed (fraction of the frame diagonal per frame) below which the object "stays".
    still_speed: float = Field(0.004, gt=0)
    fast_speed: float = Field(0.03, gt=0)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def class_name(label: str) -> str:
    """The noun a caption uses for a label: the class, or "object" for placeholders."""
    return "object" if is_placeholder(label) else label.strip()


def _plural(noun: str) -> str:
    if noun == "person":
        return "people"
    return noun + ("es" if noun.endswith(("s", "sh", "ch", "x")) else "s")


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def describe_others(labels: list[str]) -> str:
    """'a person and two dogs' from the classes of what stays in the bg ('' if nothing)."""
    counts: dict[str, int] = {}
    for label in labels:
        noun = class_name(label)
        counts[noun] = counts.get(noun, 0) + 1
    words = {1: "", 2: "two ", 3: "three ", 4: "four "}
    parts = [_article(n) if c == 1 else f"{words.get(c, 'several ')}{_plural(n)}" for n, c in counts.items()]
    return _join(parts) if parts else ""


def bg_content(index: int, labels: list[str], tags: list[str]) -> list[str]:
    """Classes left in object ``index``'s background: the clip's other objects, plus tagged subjects
    (e.g. people the tagger saw) that no object accounts for. An unlabelled object might be such a
    subject, so then tags add nothing (a caption must not invent content); nor does a tag that may be
    one of the objects or part of it (:func:`~dataset_builder.models.cpu.classes.part_of`: "horse" for
    an "animal", the rider "person" of a "vehicle"). A tagged group of people stays in the bg of each
    of its people and stands for the other people in it."""
    others = [class_name(lbl) for j, lbl in enumerate(labels) if j != index]
    seen = {class_name(lbl) for lbl in labels}
    if "object" in seen:
        return others
    extra = [class_name(t) for t in tags if not t.endswith(("camera", "tones")) and t not in _NOT_CONTENT
             and class_name(t) != "object" and not any(part_of(class_name(t), lbl) for lbl in labels)]
    if GROUP_OF_PEOPLE in extra:  # the group stands for every other person
        others = [x for x in others if x != "person"]
        extra = [x for x in extra if x != "person"]
    return others + list(dict.fromkeys(extra))


class TemplateCaptioner:
    def __init__(self, spec: BackendSpec):
        self.options = parse_options(CaptionerOptions, spec, "caption/cpu")

    def caption(
        self, frames: np.ndarray, alpha: np.ndarray, background: np.ndarray, label: str, tags: list[str]
    ) -> LayerCaptions:
        return self.caption_objects(frames, alpha[None], background[None], [label], tags)[0]

    def caption_objects(
        self, frames: np.ndarray, alphas: np.ndarray, backgrounds: np.ndarray, labels: list[str], tags: list[str]
    ) -> list[LayerCaptions]:
        """Captions of all objects of a clip; the camera is measured once, on the blend."""
        o = self.options
        _, h, w = frames.shape[:3]
        small = resize_frames(frames, work_scale(h, w, o.work_max_side))
        # The camera from the background only: a large textured object would carry the estimate.
        objects = (np.asarray(alphas) > 0).any(0).astype(np.uint8)
        near = np.stack([cv2.dilate(cv2.resize(m, small.shape[2:0:-1], interpolation=cv2.INTER_NEAREST), _DILATE)
                         for m in objects]).astype(bool)
        pairwise, _ = pairwise_homographies(small, max_side=o.work_max_side, ignore=near)
        cam = describe_camera_motion(cumulative_homographies(pairwise), *small.shape[1:3])
        camera = _CAMERA[cam.kind].format(dir=cam.direction)
        return [self._one(frames, alpha, bg, class_name(label), bg_content(i, labels, tags), tags, camera)
                for i, (alpha, bg, label) in enumerate(zip(alphas, backgrounds, labels))]

    def _one(self, frames, alpha, background, subject, others, tags, camera) -> LayerCaptions:
        _, h, w = alpha.shape
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
        motion = self._motion(valid, w, h)

        colour = f"{_join(fg_cols)} " if fg_cols else ""
        fg = (f"A {size} {colour}{subject} in the {where} of the frame, {motion}, "
              f"covering about {round(100 * area)}% of the view, on a plain backdrop.")
        scene = [_SCENE_WORDS[x] for x in tags if x in _SCENE_WORDS]
        scene_txt = f" with {_join(scene)}" if scene else ""
        content = describe_others(others)
        if content:
            bg = (f"{content[0].upper()}{content[1:]} in {_ARTICLE_LIGHT[light]} scene in {_join(bg_cols)} tones"
                  f"{scene_txt}, filmed with {camera}.")
        else:
            lit = _ARTICLE_LIGHT[light]
            bg = f"{lit[0].upper()}{lit[1:]} scene in {_join(bg_cols)} tones{scene_txt}, filmed with {camera}."
        company = f", with {content}" if content else ""
        thing = _article(f"{colour}{subject}")
        blend = (f"{thing[0].upper()}{thing[1:]} {motion} through {_ARTICLE_LIGHT[light]} {_join(bg_cols)} "
                 f"scene{company}, filmed with {camera}.")
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
