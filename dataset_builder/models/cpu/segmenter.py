"""Segment + track moving objects without weights: camera-compensated background subtraction.

Two passes at a reduced work resolution: pass 1 finds pixels that differ from (almost) all other
frames after camera alignment; pass 2 repeats this with pass-1 movers excluded from the comparison,
which keeps slow objects that overlap themselves whole. Components are
linked into tracks, gaps filled, and the masks upscaled and snapped to image edges by a guided filter.

Person mode: when a prompt names people and the selfie-segmentation model is available
(``workflows/fetch_cpu_models.py`` + a TFLite interpreter), its per-frame person probabilities are
split into instances (connected components) and linked into tracks the same way. The prompt is the
people evidence (the CPU tagger emits "person" only on HOG/face detections). These tracks come
alongside the motion tracks (dedup removes doubles), so people who hardly move (a talking head) are
found too. Without the model: motion only. The model also fires on animals (it is a
foreground-person model, not a detector), so a clip with a person *and* a dog may give two
"person" tracks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import TrackedObject
from dataset_builder.models.cpu._common import (
    Options,
    detect_people,
    parse_options,
    resize_frames,
    resize_masks,
)
from dataset_builder.ops import masks as mops
from dataset_builder.ops.alpha import refine_alpha_sequence
from dataset_builder.ops.motion import cumulative_homographies, pairwise_homographies, work_scale
from dataset_builder.ops.person import Variant, load_selfie_model, person_prompt, pick_variant, run_selfie, smooth_probs
from dataset_builder.ops.segment import components, fill_gaps, link_tracks, residual_maps, threshold_residuals

GENERIC_LABEL = "moving object"


class SegmenterOptions(Options):
    #: Longer side of the resolution motion analysis runs at (masks are upscaled + refined after).
    work_max_side: int = Field(360, ge=64)
    #: Other frames each frame is compared with, and which smallest difference counts (0 = min).
    num_references: int = Field(8, ge=2)
    residual_rank: int = Field(1, ge=0)
    #: Second pass with pass-1 movers excluded from the background vote.
    two_pass: bool = True
    #: Minimum strong residual (mean abs RGB difference, 0..255) and noise multiplier above the median.
    residual_threshold: float = Field(20.0, gt=0)
    noise_k: float = Field(5.0, ge=0)
    open_radius: int = Field(1, ge=0)
    close_radius: int = Field(3, ge=0)
    #: Component / object size limits as a fraction of the frame.
    min_area_fraction: float = Field(0.002, gt=0, lt=1)
    max_area_fraction: float = Field(0.7, gt=0, le=1)
    #: Linking: minimum overlap (intersection / smaller area) and longest gap bridged, in frames.
    link_overlap: float = Field(0.2, gt=0, le=1)
    max_gap: int = Field(3, ge=0)
    #: Tracks visible in fewer than this fraction of frames are dropped.
    min_coverage: float = Field(0.3, ge=0, le=1)
    max_objects: int = Field(4, ge=1)
    refine: Literal["guided", "none"] = "guided"
    guided_radius: int = Field(4, ge=1)
    guided_eps: float = Field(1e-4, gt=0)
    #: HOG person boxes label tracks "person" when "person" is prompted (needs OpenCV 4.x HOG).
    person_detection: bool = True
    person_frames: int = Field(3, ge=1)
    #: Person mode (selfie segmentation; see module docstring). ``None`` dir: $LAYERFLOW_CPU_MODELS or
    #: ~/.cache/layerflow/cpu_models; variant "auto" picks square/landscape by the frame's aspect.
    person_segmentation: bool = True
    person_model_dir: Path | None = None
    person_variant: Literal["auto", "square", "landscape"] = "auto"
    person_threshold: float = Field(0.5, gt=0, lt=1)
    #: Temporal smoothing of the probabilities (Gaussian sigma in frames, confidence weighted).
    person_smooth_sigma: float = Field(0.7, ge=0)
    person_threads: int = Field(1, ge=1)


class MotionSegmenterTracker:
    def __init__(self, spec: BackendSpec):
        self.options = parse_options(SegmenterOptions, spec, "segment_track/cpu")
        self._interpreters: dict[Variant, Any] = {}

    def segment(self, frames: np.ndarray, prompts: list[str]) -> list[TrackedObject]:
        o = self.options
        t, h, w = frames.shape[:3]
        if t < 3:
            return []
        scale = work_scale(h, w, o.work_max_side)
        small = resize_frames(frames, scale)
        pairwise, inliers = pairwise_homographies(small, max_side=o.work_max_side)
        cum = cumulative_homographies(pairwise)
        label = person_prompt(prompts)
        people = self._people(frames, small, cum, label) if label and o.person_segmentation else []
        return self._motion(frames, small, cum, prompts, float(inliers.mean())) + people

    def _motion(
        self, frames: np.ndarray, small: np.ndarray, cum: np.ndarray, prompts: list[str], inliers: float
    ) -> list[TrackedObject]:
        o = self.options
        t, h, w = frames.shape[:3]
        sh, sw = small.shape[1:3]

        movers = self._movers(small, cum, exclude=None)
        if o.two_pass and movers.any():
            grown = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0 for m in movers])
            movers = self._movers(small, cum, exclude=grown)

        min_area = max(4, int(o.min_area_fraction * sh * sw))
        comps = [components(m, min_area) for m in movers]
        tracks = link_tracks(comps, cum, o.link_overlap, o.max_gap)

        candidates = []
        for tr in tracks:
            seq = fill_gaps(tr, t, cum)
            coverage = float(mops.presence(seq).mean())
            areas = mops.area_fractions(seq)
            if coverage < o.min_coverage or areas.max() > o.max_area_fraction:
                continue
            stab = mops.area_stability(seq)
            candidates.append((coverage * stab, coverage, stab, seq))
        candidates.sort(key=lambda c: -c[0])
        candidates = candidates[: o.max_objects]

        labels = self._labels(frames, [c[3] for c in candidates], prompts)
        out = []
        for (score, coverage, stab, seq), label in zip(candidates, labels):
            masks = resize_masks(seq.astype(np.uint8) * 255, h, w)
            if o.refine == "guided":
                masks = refine_alpha_sequence(frames, masks, o.guided_radius, o.guided_eps)
            out.append(TrackedObject(
                label=label, masks=masks, score=float(score),
                extras={"coverage": coverage, "stability": stab, "align_inliers": inliers},
            ))
        return out

    def _interpreter(self, height: int, width: int) -> Any | None:
        o = self.options
        variant = pick_variant(height, width) if o.person_variant == "auto" else o.person_variant
        if variant not in self._interpreters:
            self._interpreters[variant] = load_selfie_model(o.person_model_dir, variant, o.person_threads)
        return self._interpreters[variant]

    def _people(self, frames: np.ndarray, small: np.ndarray, cum: np.ndarray, label: str) -> list[TrackedObject]:
        """Person tracks from the selfie model (probabilities at work resolution); instances = connected
        components linked over time."""
        o = self.options
        t, h, w = frames.shape[:3]
        sh, sw = small.shape[1:3]
        interp = self._interpreter(h, w)
        if interp is None:
            return []
        probs = smooth_probs(run_selfie(interp, frames, (sh, sw)), o.person_smooth_sigma)
        fg = probs >= o.person_threshold
        min_area = max(4, int(o.min_area_fraction * sh * sw))
        tracks = link_tracks([components(m, min_area) for m in fg], cum, o.link_overlap, o.max_gap)
        candidates = []
        for tr in tracks:
            seq = fill_gaps(tr, t, cum)
            coverage = float(mops.presence(seq).mean())
            if coverage < o.min_coverage or mops.area_fractions(seq).max() > o.max_area_fraction:
                continue
            candidates.append((coverage, seq))
        # Largest first: the prompt names the people, small blobs are more often false alarms.
        candidates.sort(key=lambda c: -c[0] * c[1].sum())
        out = []
        for coverage, seq in candidates[: o.max_objects]:
            # Soft alpha: the model's probability inside the (slightly grown) instance, upscaled.
            grown = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for m in seq])
            masks = resize_masks(np.round(probs * grown * 255).astype(np.uint8), h, w)
            confidence = float(probs[seq].mean())
            out.append(TrackedObject(
                label=label, masks=masks, score=coverage * confidence,
                extras={"coverage": coverage, "person_confidence": confidence},
            ))
        return out

    def _movers(self, small: np.ndarray, cum: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
        o = self.options
        res = residual_maps(small, cum, o.num_references, exclude, o.residual_rank)
        return threshold_residuals(res, o.residual_threshold, o.noise_k, o.open_radius, o.close_radius)

    def _labels(self, frames: np.ndarray, seqs: list[np.ndarray], prompts: list[str]) -> list[str]:
        """"person" where HOG boxes overlap the track (if prompted), else the single non-person subject
        prompt if there is exactly one, else the generic label."""
        others = sorted({p for p in prompts if p and p != "person"})
        fallback = others[0] if len(others) == 1 else GENERIC_LABEL
        labels = [fallback] * len(seqs)
        if "person" not in prompts or not self.options.person_detection or not seqs:
            return labels
        idx = np.linspace(0, len(frames) - 1, self.options.person_frames).round().astype(int)
        hits = np.zeros(len(seqs))
        for i in sorted(set(idx.tolist())):
            for (x0, y0, x1, y1), _ in detect_people(frames[i]):
                box = np.zeros(frames.shape[1:3], bool)
                box[y0:y1, x0:x1] = True
                for k, seq in enumerate(seqs):
                    m = resize_masks(seq[i : i + 1].astype(np.uint8) * 255, *frames.shape[1:3])[0] >= 128
                    if m.any() and np.logical_and(m, box).sum() / m.sum() > 0.5:
                        hits[k] += 1
        return ["person" if hits[k] * 3 >= len(set(idx.tolist())) else lab for k, lab in enumerate(labels)]
