"""Typed configuration of the dataset builder. ``configs/*.yaml`` mirror these models exactly.

Only fields that change *what* is produced enter :func:`BuildConfig.processing_hash` (and so every
``clip_id``): with the backends' model revisions and library versions (``models.provenance``); paths,
parallelism and resources do not, so a rerun with more workers still resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(Strict):
    """Ray actor-pool sizing of one stage. Fractions are fine and needed on small machines."""

    num_cpus: float = Field(0.5, gt=0)
    num_gpus: float = Field(0.0, ge=0)
    #: Actors at start; the pool autoscales up to ``max_concurrency`` (None: fixed size).
    concurrency: int = Field(1, ge=1)
    max_concurrency: int | None = Field(None, ge=1)
    batch_size: int = Field(1, ge=1)


class BackendSpec(Strict):
    """Which model backend a stage uses and how it loads.

    ``model_dir`` is resolved against ``$LAYERFLOW_MODEL_ROOT`` when relative. Nothing is ever
    downloaded: a missing directory is an error naming the path expected.
    """

    name: str = "cpu"
    model_dir: str | None = None
    trust_remote_code: bool = False
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    options: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)

    def resolved_model_dir(self, model_root: str | None = None) -> Path | None:
        if self.model_dir is None:
            return None
        path = Path(os.path.expandvars(os.path.expanduser(self.model_dir)))
        root = model_root or os.environ.get("LAYERFLOW_MODEL_ROOT")
        if not path.is_absolute() and root:
            path = Path(root) / path
        return path


class InputConfig(Strict):
    #: Files, directories (searched recursively), glob patterns or URIs (``s3://bucket/prefix``).
    paths: list[str] = Field(default_factory=lambda: ["data/samples"])
    extensions: list[str] = Field(default_factory=lambda: [".mp4", ".avi", ".mov", ".mkv", ".webm"])
    max_videos: int | None = Field(None, ge=1)
    #: Larger sources are rejected (``too_large`` / ``too_long``) at probe time, before decoding.
    #: Smaller ones are decoded frame by frame and resized at once, so memory follows the clip size.
    max_pixels: int | None = Field(7680 * 4320, ge=1)
    max_duration_s: float | None = Field(4 * 3600, gt=0)
    #: Rows per block of the input manifest in Ray Data (one block per video does not scale).
    rows_per_block: int = Field(100, ge=1)


class ClipConfig(Strict):
    num_frames: int = Field(16, ge=2, le=1024)
    height: int = Field(480, ge=16, le=4320)
    width: int = Field(720, ge=16, le=7680)
    #: Keep every n-th source frame (temporal subsampling). "auto" aims at ``target_fps``.
    frame_stride: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    target_fps: float = Field(8.0, gt=0)
    max_clips_per_video: int = Field(4, ge=1)
    #: Frames skipped between consecutive clips of one video (in strided frames).
    clip_gap: int = Field(0, ge=0)
    resize_mode: Literal["crop", "pad", "stretch"] = "crop"
    #: Plan clips inside shots, detected on the same single decode pass; a clip across a hard cut
    #: is two scenes, and the cut itself would be segmented as "motion". Off: clips are planned from
    #: the container's frame count and committed ones skip decoding entirely.
    detect_cuts: bool = True


class StagesConfig(Strict):
    tag: BackendSpec = Field(default_factory=BackendSpec)
    segment_track: BackendSpec = Field(default_factory=BackendSpec)
    dedup_masks: BackendSpec = Field(default_factory=lambda: BackendSpec(name="iou"))
    filter_foreground: BackendSpec = Field(default_factory=BackendSpec)
    inpaint: BackendSpec = Field(default_factory=BackendSpec)
    caption: BackendSpec = Field(default_factory=BackendSpec)


class PostprocessConfig(Strict):
    """Shared post-processing of every profile (stages ``matte`` and ``layer_qa``): whatever the
    segmenter returns becomes a hard core plus a thin soft band, and the fg layer gets the object's
    colour in that band (un-mixed against the inpainted bg)."""

    #: Half-width in px of the band around the mask edge where alpha may be fractional (0: hard alpha).
    alpha_band: int = Field(3, ge=0, le=32)
    #: 2, not 4: a wider window spreads a ramp over the whole band at low-contrast edges (grey car on
    #: grey road: qa_edge_band_px 4.1 -> 3.3 px at radius 2)
    guided_radius: int = Field(2, ge=1, le=32)
    guided_eps: float = Field(1e-4, gt=0)
    #: Fractions within this of 0 / 1 snap to exactly 0 / 255 (keeps faint alpha tails out of fg).
    alpha_snap: float = Field(0.04, ge=0, lt=0.5)
    #: After inpainting, re-estimate band alpha against the clean bg (difference matting).
    rematte: bool = False
    #: Pull of band fg colour toward the nearby opaque core colour (vs. exact un-mixing).
    fg_reg: float = Field(0.02, gt=0)
    #: After inpainting, make the layers recompose the clip in the inpainting ring and soft band
    #: (``ops.alpha.reconcile_layers``): clip pixels agreeing with the clean bg within
    #: ``reconcile_tol`` go back into the bg, the rest (shadows, missed edges) get the least alpha.
    reconcile: bool = True
    reconcile_tol: int = Field(10, ge=0, le=255)
    #: Cap on a shadow's alpha there (below 0.5: a shadow stays translucent, never object).
    reconcile_max_shadow: float = Field(0.498, gt=0, le=1)
    #: A missed edge is at most this many px wide (0: no limit); farther ring pixels go back into the bg.
    reconcile_max_edge_px: float = Field(1.0, ge=0)


class QAConfig(Strict):
    """Per-sample QA scores (always written to the sample json + manifest) and the precision-first gate
    on them: a sample failing any bound is a reject with the score's name as reason. See ops/qa.py."""

    gate: bool = True
    max_empty_frames: float = Field(0.0, ge=0, le=1)
    min_alpha_coverage_min: float = Field(0.001, ge=0, le=1)
    #: Min over consecutive frames of the smaller/larger alpha area. True objects on the 12 DAVIS clips at
    #: 8 fps stay >= 0.59; below 0.4 a frame lost most of the object (and the bg keeps it there).
    min_alpha_stability: float = Field(0.4, ge=0, le=1)
    max_edge_band_px: float = Field(4.0, gt=0)
    max_soft_visible_share: float = Field(0.4, ge=0, le=1)
    max_bg_remnant: float = Field(0.25, ge=0)
    min_recompose_psnr: float = Field(20.0, ge=0)
    #: Colour-histogram similarity of consecutive frames' object pixels: an identity switch drops it
    #: (DAVIS: the one wrong-object sample 0.73, right objects >= 0.85).
    min_color_consistency: float = Field(0.8, ge=0, le=1)
    #: Longer side the bg-remnant motion check runs at.
    remnant_max_side: int = Field(240, ge=64)

    def limits(self) -> dict[str, tuple[str, float]]:
        """score name -> ("min" | "max", bound), from the ``min_*`` / ``max_*`` fields."""
        out = {}
        for name, value in self.model_dump().items():
            kind, _, score = name.partition("_")
            if kind in ("min", "max") and isinstance(value, float):
                out[f"qa_{score}"] = (kind, value)
        return out


class OutputConfig(Strict):
    dir: str = "out/coarse"
    samples_per_shard: int = Field(64, ge=1)
    max_shard_bytes: int = Field(1 << 30, ge=1 << 16)
    #: H.264 constant rate factor (0 lossless ... 51 worst).
    crf: int = Field(18, ge=0, le=51)
    #: Pixel value written outside the alpha in the fg RGB video.
    fg_fill: int = Field(0, ge=0, le=255)
    #: Also reprocess clips that were rejected in an earlier run.
    retry_rejects: bool = False


class RayConfig(Strict):
    #: None: connect to RAY_ADDRESS if set (``ray job submit``), else start a private local Ray
    #: (never attaches to a cluster that happens to run on the host). "auto" attaches to that one.
    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    decode_num_cpus: float = Field(0.5, gt=0)
    #: Decode is an autoscaling actor pool: it grows up to ``decode_max_actors`` (None: as far as
    #: the cluster's CPUs allow) while its output is consumed, and shrinks when idle.
    decode_min_actors: int = Field(1, ge=1)
    decode_max_actors: int | None = Field(None, ge=1)
    encode_num_cpus: float = Field(0.5, gt=0)
    encode_concurrency: int = Field(1, ge=1)
    preserve_order: bool = True
    #: Run consecutive CPU-only stages in one actor (avoids copying raw frames between actors).
    fuse_cpu_stages: bool = True
    #: Max candidate objects kept per clip after segmentation.
    max_objects_per_clip: int = Field(8, ge=1)
    #: Seconds to wait for the cluster to show the CPUs/GPUs a stage asks for (an autoscaler adding
    #: nodes); after that the build fails with one line instead of hanging.
    resource_wait_s: float = Field(10.0, ge=0)
    #: Size the GPU stages' autoscaling pools from the cluster's GPUs (``stages.pool_sizing``) instead of
    #: their fixed ``resources.concurrency``.
    fit_gpu_pools: bool = True
    #: Estimated GPU-seconds per clip at one actor, by stage name (e.g. caption: 3.0, filter_foreground: 1.0);
    #: pools get actors in proportion. Unlisted stages count 1. Measured costs replace them (``costs_from``).
    stage_costs: dict[str, float] = Field(default_factory=dict)
    #: Output dir (local or URI) of an earlier build whose commit records hold measured per-stage busy
    #: seconds: pools are sized by those. None: this build's own output dir, when it already holds at
    #: least ``measured_min_clips`` measured clips (a resumed build, or a calibration run on the first N
    #: videos into the same dir); otherwise the ``stage_costs`` estimates.
    costs_from: str | None = None
    measured_min_clips: int = Field(8, ge=1)


class FailuresConfig(Strict):
    """Error-rate circuit breaker (``stages.circuit_breaker``): abort when more than ``max_error_rate`` of the
    last ``window`` committed clips (after ``min_clips``) were rejected for an error; 1.0 disables it."""

    max_error_rate: float = Field(0.5, ge=0.0, le=1.0)
    window: int = Field(200, ge=1)
    min_clips: int = Field(20, ge=1)


class BuildConfig(Strict):
    profile: str = "cpu"
    input: InputConfig = Field(default_factory=InputConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)
    stages: StagesConfig = Field(default_factory=StagesConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    qa: QAConfig = Field(default_factory=QAConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    failures: FailuresConfig = Field(default_factory=FailuresConfig)
    model_root: str | None = None

    @model_validator(mode="after")
    def _check(self) -> BuildConfig:
        if self.clip.num_frames < 2:
            raise ValueError("clip.num_frames must be >= 2")
        if self.clip.height % 2 or self.clip.width % 2:
            raise ValueError("clip.height and clip.width must be even (H.264 needs it)")
        return self

    def processing_hash(self) -> str:
        """Hash of everything that changes the produced samples (not paths or parallelism)."""
        stages = {
            name: spec.model_dump(include={"name", "model_dir", "options", "dtype"})
            for name, spec in self.stages
        }
        from dataset_builder.models.provenance import stage_revisions

        payload = {
            "clip": self.clip.model_dump(),
            "stages": stages,
            # model directory fingerprints + library versions: an upgrade gives new ids, not mixed outputs
            "revisions": stage_revisions(self.stages, self.model_root),
            "postprocess": self.postprocess.model_dump(),
            "qa": self.qa.model_dump(),
            "output": self.output.model_dump(include={"crf", "fg_fill"}),
        }
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a config file; a syntax error is a ValueError naming the file and line (one line on the CLI)."""
    with open(path) as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(f"{path}:{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key.path=value")
        dotted, raw = item.split("=", 1)
        node = data
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {dotted!r}: {part!r} is a value, not a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValueError(f"override {item!r}: value is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return data


def load_build_config(path: str | os.PathLike, overrides: list[str] | None = None) -> BuildConfig:
    return BuildConfig.model_validate(apply_overrides(load_yaml(path), overrides or []))
