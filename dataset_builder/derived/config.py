"""Typed configs of the derived (LayerFlow stage 2/3) datasets; ``configs/copypaste.yaml`` and
``configs/image_layers.yaml`` mirror them.

As in :class:`dataset_builder.config.BuildConfig`, only fields that change *what* is produced enter
``processing_hash`` (and so every unit id); paths and parallelism do not, so reruns resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Literal

from pydantic import Field, model_validator

from dataset_builder.derived.matting import resolved_saliency

from dataset_builder.config import (
    BackendSpec,
    OutputConfig,
    RayConfig,
    Resources,
    Strict,
    apply_overrides,
    load_yaml,
)


class FrameConfig(Strict):
    """Output geometry. Sources are resized to cover (height, width) and centre-cropped."""

    num_frames: int = 16
    height: int = 480
    width: int = 720
    fps: float = 8.0

    @model_validator(mode="after")
    def _check(self) -> FrameConfig:
        if self.num_frames < 1:
            raise ValueError("num_frames must be >= 1")
        if self.height % 2 or self.width % 2:
            raise ValueError("height and width must be even (H.264 needs it)")
        return self


def _backend_identity(spec: BackendSpec | None) -> dict[str, Any] | None:
    return spec.model_dump(include={"name", "model_dir", "options"}) if spec else None


def _hash(payload: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


class VideoMattingSet(Strict):
    """One video-matting set (see :mod:`dataset_builder.derived.sources.video_matting`)."""

    root: str
    #: videomatte: ``fgr/`` + ``pha/`` (VideoMatte240K); dirs: ``fg_dir/`` + ``alpha_dir/``; suffix: siblings.
    layout: Literal["videomatte", "dirs", "suffix"] = "videomatte"
    fg_dir: str = "fg"
    alpha_dir: str = "alpha"
    fg_suffix: str = "_fg"
    alpha_suffix: str = "_alpha"
    #: What the foregrounds are (VideoMatte240K: people); names the object in captions and the label.
    label: str = "person"
    #: Recorded in every sample's provenance (most matting sets are research-only, see README).
    license: str = ""
    #: First frame and temporal stride of the window(s) taken from each clip.
    start: int = 0
    stride: int = 1
    #: Windows of ``frames.num_frames`` frames per clip, spread evenly from ``start`` to the clip's end
    #: (VideoMatte240K clips run for hundreds of frames; one window would use a few percent of them).
    windows_per_clip: int = Field(1, ge=1)


class CoarseQA(Strict):
    """Thresholds a coarse sample's ``scores`` must pass to be pasted (precision first)."""

    #: score key -> minimum / maximum value. Stricter than the coarse gate (``BuildConfig.qa``): a pasted fg is
    #: replicated onto many backgrounds, and only the fg layer matters here (halo, flicker, wrong object).
    min_scores: dict[str, float] = Field(default_factory=lambda: {
        "fg_judge": 0.5, "qa_alpha_stability": 0.5, "qa_alpha_iou_min": 0.4, "qa_recompose_psnr": 25.0})
    max_scores: dict[str, float] = Field(default_factory=lambda: {
        "qa_empty_frames": 0.0, "qa_edge_band_px": 4.0, "qa_soft_visible_share": 0.3})
    #: A sample missing a thresholded score is rejected (``qa_score_missing``) rather than kept.
    require_scores: bool = True


class Stage3Mix(Strict):
    """The paper's "small proportion" of copy-paste videos (motion 0) among static image data (motion 1)."""

    #: Static (image-layers) datasets the share is measured against; empty: no cap.
    static_datasets: list[str] = Field(default_factory=list)
    #: Copy-paste samples as a fraction of (copy-paste + static) samples, e.g. 0.1. None: no cap.
    copypaste_share: float | None = None

    @model_validator(mode="after")
    def _check(self) -> Stage3Mix:
        if self.copypaste_share is not None and not 0 < self.copypaste_share < 1:
            raise ValueError("copypaste_share must be in (0, 1)")
        return self


class CopyPasteInput(Strict):
    #: Video-matting sets (fg video + alpha video): the paper's stage-2/3 foreground source.
    fg_matting: list[VideoMattingSet] = Field(default_factory=list)
    #: Coarse dataset dirs (their committed shards are read), shard .tar files or globs: fg sources,
    #: filtered by ``coarse_qa``.
    fg_shards: list[str] = Field(default_factory=lambda: ["out/coarse"])
    coarse_qa: CoarseQA = Field(default_factory=CoarseQA)
    #: Same, for backgrounds (the ``bg`` layer of each sample). Empty: use only ``bg_videos``.
    bg_shards: list[str] = Field(default_factory=lambda: ["out/coarse"])
    #: Raw videos (files, dirs searched recursively, globs) decoded as extra backgrounds.
    bg_videos: list[str] = Field(default_factory=list)
    video_extensions: list[str] = Field(default_factory=lambda: [".mp4", ".avi", ".mov", ".mkv", ".webm"])
    #: Temporal stride and first frame used when decoding a raw background video.
    bg_video_stride: int = 1
    bg_video_start: int = 0
    max_fg: int | None = None


class PasteConfig(Strict):
    seed: int = 0
    #: Backgrounds per foreground (distinct, never from the foreground's own source video).
    pairs_per_fg: int = 1
    #: Object scale as a fraction of the largest scale at which its (all-frames) box still fits.
    scale_range: tuple[float, float] = (0.5, 1.0)
    #: Mild LAB mean/std transfer of the fg towards the bg; 0 disables it, 1 is a full transfer.
    harmonize: float = 0.3
    #: Alpha values at or below this do not count as object when computing the box.
    alpha_threshold: int = 8
    #: Caption for backgrounds decoded from raw videos (they have none).
    bg_video_caption: str = "a video background scene"
    #: ``{fg}``/``{bg}`` are the source captions without their final period; bg starts lower-case.
    blend_template: str = "{fg}. In the background, {bg}."
    #: video: fg keeps its motion over a moving bg (motion scale 0); static: one random frame of fg,
    #: alpha and bg duplicated over the clip (Motion-LoRA data, motion scale 1); both: one of each per pair.
    motion: Literal["video", "static", "both"] = "video"

    @model_validator(mode="after")
    def _check(self) -> PasteConfig:
        lo, hi = self.scale_range
        if not 0 < lo <= hi <= 1:
            raise ValueError("scale_range must satisfy 0 < lo <= hi <= 1 (1 = just fits the frame)")
        if not 0 <= self.harmonize <= 1:
            raise ValueError("harmonize must be in [0, 1]")
        if self.pairs_per_fg < 1:
            raise ValueError("pairs_per_fg must be >= 1")
        return self


class CopyPasteConfig(Strict):
    profile: str = "cpu"
    input: CopyPasteInput = Field(default_factory=CopyPasteInput)
    frames: FrameConfig = Field(default_factory=FrameConfig)
    paste: PasteConfig = Field(default_factory=PasteConfig)
    output: OutputConfig = Field(default_factory=lambda: OutputConfig(dir="out/copypaste"))
    ray: RayConfig = Field(default_factory=RayConfig)
    mix: Stage3Mix = Field(default_factory=Stage3Mix)
    #: Captions for sources without any (matting foregrounds, raw background videos); None: templates.
    captioner: BackendSpec | None = Field(default_factory=BackendSpec)
    #: Actor pools of the decode+paste stage and of the encode stage (``ray.*_num_cpus`` are unused here).
    composite: Resources = Field(default_factory=Resources)
    encode: Resources = Field(default_factory=Resources)

    def processing_hash(self) -> str:
        return _hash({
            "frames": self.frames.model_dump(),
            "paste": self.paste.model_dump(),
            "bg_video": [self.input.bg_video_stride, self.input.bg_video_start],
            "matting": [m.model_dump(include={"start", "stride", "label", "windows_per_clip"})
                        for m in self.input.fg_matting],
            "captioner": _backend_identity(self.captioner),
            "output": self.output.model_dump(include={"crf", "fg_fill"}),
        })


class ImageMattingSet(Strict):
    root: str
    #: Extra background image folders for ``fg/`` + ``alpha/`` splits without their own ``bg/``.
    backgrounds: list[str] = Field(default_factory=list)
    #: Names the subject in labels and captions (AM-2k: animals, P3M: people...).
    label: str = "object"
    license: str = ""


class MulanInput(Strict):
    #: Annotation pickles (``<id>.p.zl``): files, folders (recursive) or globs.
    annotations: list[str] = Field(default_factory=list)
    #: Folders searched (recursively) for the base images, matched by stem: COCO train2017/ and
    #: val2017/ (MuLAn-COCO uses both), the LAION img2dataset output.
    image_roots: list[str] = Field(default_factory=list)
    #: Alternatively a CSV of (base image, annotation) paths, as the release's decomposition script takes.
    pairs_csv: str | None = None
    csv_image_column: str = "image"
    csv_annotation_column: str = "annotation"
    #: Which of the release's captions to use: COCO-style BLIP-2 (short) or detailed LLaVA.
    caption_model: Literal["blip2", "llava"] = "blip2"
    license: str = "CC BY-NC-SA 4.0 (annotations); base images under COCO / LAION terms"


class ImageInput(Strict):
    #: Image files, folders (searched recursively) or globs. A folder holding a ``background``
    #: image and ``layer_*``/``instance_*`` RGBA images is one MULAN-style decomposed input.
    paths: list[str] = Field(default_factory=lambda: ["data/samples/images"])
    extensions: list[str] = Field(default_factory=lambda: [".jpg", ".jpeg", ".png", ".webp", ".bmp"])
    max_images: int | None = None
    #: Image-matting sets (AM-2k / P3M / Distinctions-646 style, see ``sources.image_matting``).
    matting: list[ImageMattingSet] = Field(default_factory=list)
    #: Official MuLAn annotation pickles over their COCO / LAION base images.
    mulan: MulanInput | None = None


class MattingConfig(Strict):
    #: Longest side of the working copy used for saliency, GrabCut and matting (speed knob).
    working_size: int = 192
    method: Literal["cf", "knn"] = "cf"
    grabcut_iters: int = 5
    #: Half-width of the trimap's unknown band, as a fraction of the working image diagonal.
    trimap_band: float = 0.02
    #: Weight of the centre prior against the saliency map (0..1).
    center_weight: float = 0.5
    #: Saliency that seeds GrabCut: U^2-Net (the pretrained CPU model fetched by ``make cpu-models``),
    #: spectral residual (no weights), or auto (U^2-Net when its runtime and file are present).
    saliency: Literal["auto", "u2net", "spectral"] = "auto"
    #: Centre-prior weight used with U^2-Net (a learned salient-object map needs little of it).
    u2net_center_weight: float = 0.0
    #: Images whose U^2-Net map is this unsure (undecided pixels per object pixel) are rejected
    #: (``uncertain_saliency``): measured 0.06-0.08 on clear subjects, 1.1 on a cluttered street frame.
    max_saliency_uncertainty: float = 0.35
    #: Objects covering less / more of the image than this are rejected.
    min_area: float = 0.01
    max_area: float = 0.85


class LayersConfig(Strict):
    #: "each": one sample per instance layer (bg = all other layers); "union": one sample whose fg is
    #: all instances together (bg = the background layer).
    instance_mode: Literal["each", "union"] = "each"
    #: Instances whose visible alpha covers less than this fraction of the image are skipped.
    min_area: float = 0.002


class CaptionTemplates(Strict):
    label: str = "object"
    fg: str = "the main {label} of the image"
    bg: str = "the scene behind the {label}, with the {label} removed"
    blend: str = "the {label} in its scene"


class ImageLayersConfig(Strict):
    profile: str = "cpu"
    input: ImageInput = Field(default_factory=ImageInput)
    frames: FrameConfig = Field(default_factory=FrameConfig)
    matting: MattingConfig = Field(default_factory=MattingConfig)
    layers: LayersConfig = Field(default_factory=LayersConfig)
    captions: CaptionTemplates = Field(default_factory=CaptionTemplates)
    #: Single-image object removal; "exemplar" (CPU, texture-preserving) or a paper backend (diffusers_inpaint).
    inpaint: BackendSpec = Field(default_factory=lambda: BackendSpec(name="exemplar"))
    output: OutputConfig = Field(default_factory=lambda: OutputConfig(dir="out/image_layers"))
    ray: RayConfig = Field(default_factory=RayConfig)
    #: The layering stage (matting + inpainting) runs on ``inpaint.resources``; encoding on this pool.
    encode: Resources = Field(default_factory=Resources)
    #: "exact": RGB layers decode to bit-identical frames (one IDR repeated, ~8x larger);
    #: "h264": ordinary H.264 of the repeated frame (small, frames equal up to codec refinement).
    static_encoding: Literal["exact", "h264"] = "exact"
    model_root: str | None = None
    #: Captions of matted images and matting-set samples from this captioner; None: ``captions`` templates.
    captioner: BackendSpec | None = Field(default_factory=BackendSpec)

    def processing_hash(self) -> str:
        return _hash({
            "frames": self.frames.model_dump(),
            "matting": {**self.matting.model_dump(), "saliency": resolved_saliency(self.matting.saliency)},
            "layers": self.layers.model_dump(),
            "captions": self.captions.model_dump(),
            "inpaint": self.inpaint.model_dump(include={"name", "model_dir", "options", "dtype"}),
            "captioner": _backend_identity(self.captioner),
            "mulan_captions": self.input.mulan.caption_model if self.input.mulan else None,
            "static_encoding": self.static_encoding,
            "output": self.output.model_dump(include={"crf", "fg_fill"}),
        })


def load_copypaste_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> CopyPasteConfig:
    data = load_yaml(path) if path else {}
    return CopyPasteConfig.model_validate(apply_overrides(data, overrides or []))


def load_image_layers_config(path: str | os.PathLike | None,
                             overrides: list[str] | None = None) -> ImageLayersConfig:
    data = load_yaml(path) if path else {}
    return ImageLayersConfig.model_validate(apply_overrides(data, overrides or []))
