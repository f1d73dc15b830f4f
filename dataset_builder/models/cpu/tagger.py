"""Candidate subjects and scene tags from classical cues.

Subjects (``is_subject=True``, prompts for the segmenter): "person" from the HOG people detector
(OpenCV 4.x builds only) or Haar face detection (close-ups, where no body is in view) and
"moving object" from camera-compensated motion saliency. Scene tags
(``is_subject=False``) describe the background for captions: brightness, dominant colour tones,
a sky-like top region / "outdoor", and the camera motion (static, panning, zooming, shaky).
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import Tag
from dataset_builder.models.cpu._common import Options, detect_faces, detect_people, parse_options, resize_frames
from dataset_builder.ops.colors import brightness_word, color_names, dominant_colors
from dataset_builder.ops.motion import (
    cumulative_homographies,
    describe_camera_motion,
    pairwise_homographies,
    work_scale,
)
from dataset_builder.ops.segment import components, residual_maps, threshold_residuals


class TaggerOptions(Options):
    work_max_side: int = Field(256, ge=64)
    #: Frames the person/face detectors run on (spread over the clip).
    person_frames: int = Field(4, ge=1)
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


class CpuTagger:
    def __init__(self, spec: BackendSpec):
        self.options = parse_options(TaggerOptions, spec, "tag/cpu")

    def tag(self, frames: np.ndarray) -> list[Tag]:
        o = self.options
        t, h, w = frames.shape[:3]
        small = resize_frames(frames, work_scale(h, w, o.work_max_side))
        pairwise, _ = pairwise_homographies(small, max_side=o.work_max_side)
        cum = cumulative_homographies(pairwise)
        tags: list[Tag] = []

        idx = sorted(set(np.linspace(0, t - 1, o.person_frames).round().astype(int).tolist()))
        hog = [max((s for _, s in detect_people(frames[i], o.person_min_score)), default=0.0) for i in idx]
        hits = [s for s in hog if s > 0]
        strong = max(hits, default=0.0) >= o.person_strong_score
        person = float(np.median(hits)) if len(hits) >= o.person_min_hits or strong else 0.0
        faces = [max((s for _, s in detect_faces(frames[i], o.person_min_score)), default=0.0) for i in idx]
        if np.mean([f > 0 for f in faces]) >= o.face_min_frames:
            person = max(person, float(np.median([f for f in faces if f > 0])))
        if person > 0:
            tags.append(Tag("person", round(person, 3), True))
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
