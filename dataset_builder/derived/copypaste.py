"""Copy-paste layered videos (LayerFlow stages 2/3): foregrounds with transparency pasted onto
backgrounds of *other* sources.

Foregrounds: video-matting sets (VideoMatte240K ``fgr/`` + ``pha/`` and generic fg + alpha pairs, the
paper's source) and coarse-set samples that pass the QA thresholds. Backgrounds: the bg layers of coarse
samples and raw videos from any folder. ``paste.motion`` keeps the fg's motion (motion scale 0) or
duplicates one random frame into a static clip for Motion-LoRA data (motion scale 1).

Pure parts (pairing, placement, pasting, LAB harmonisation, captions) are plain functions; the Ray
stage :class:`CopyPasteStage` only decodes sources and calls them.
"""

from __future__ import annotations

import glob
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel

from dataset_builder import __version__
from dataset_builder.ops.clips import file_fingerprint
from dataset_builder.derived.common import UnitStage, UnitState, stable_id
from dataset_builder.derived.config import CopyPasteConfig, Stage3Mix
from dataset_builder.derived.sources.base import Problem, SourceError
from dataset_builder.derived.sources.coarse_qa import qa_verdict
from dataset_builder.derived.sources.video_matting import (
    clip_length,
    discover_video_matting,
    read_matting_clip,
    window_starts,
)
from dataset_builder.io import layout
from dataset_builder.io.video import decode_bytes, decode_frames
from dataset_builder.ops.clips import resize_frames
from dataset_builder.ops.composite import composite
from schemas import Captions, LayeredSample, Provenance

STAGE = "copypaste"


class SourceRef(BaseModel):
    """One fg or bg source: a coarse shard sample (``key`` set), a raw video file, or a matting clip
    (``uri`` the fg video or frame folder, ``alpha_uri`` its alpha)."""

    kind: Literal["shard", "video", "matting"]
    uri: str
    alpha_uri: str = ""
    key: str = ""
    clip_id: str = ""
    source_uri: str
    label: str = ""
    caption_fg: str = ""
    caption_bg: str = ""
    fps: float = 0.0
    start_frame: int = 0
    frame_stride: int = 1
    source_fps: float = 0.0
    #: Content fingerprint of a video source (``ops.clips.file_fingerprint``; fg + alpha for matting).
    fingerprint: str = ""
    #: QA scores of a coarse sample (its json ``scores``).
    scores: dict[str, float] = {}
    license: str = ""

    @property
    def id(self) -> str:
        """Content-based, so unit ids survive moving or re-spelling paths: a shard sample's key is
        globally unique (clip id = content hash + object), a video is known by its fingerprint."""
        if self.key:
            return f"sample:{self.key}"
        if self.fingerprint:
            return f"{'matting' if self.kind == 'matting' else 'video'}:{self.fingerprint}"
        return self.uri


class Pair(BaseModel):
    unit_id: str
    fg: SourceRef
    bg: SourceRef
    #: "video": motion kept (motion scale 0); "static": one random frame duplicated (motion scale 1).
    motion: Literal["video", "static"] = "video"


# -- source discovery (driver) ---------------------------------------------------------------------
def shard_paths(entries: list[str]) -> list[Path]:
    """Shard files named by ``entries``: dataset dirs (committed shards only), .tar files or globs."""
    out: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            out += layout.shards_in_dir(path)
        elif path.is_file():
            out.append(path)
        else:
            out += sorted(Path(p) for p in glob.glob(entry, recursive=True) if p.endswith(".tar"))
    return list(dict.fromkeys(out))


def index_shard(path: Path) -> list[SourceRef]:
    """Sample refs of one shard, reading only the ``.json`` members (webdataset)."""
    import webdataset as wds

    refs = []
    dataset = wds.WebDataset(str(path), shardshuffle=False, empty_check=False,
                             select_files=lambda name: name.endswith(".json"))
    for sample in dataset:
        record = json.loads(sample["json"])
        prov = record["provenance"]
        refs.append(SourceRef(
            kind="shard", uri=str(path), key=sample["__key__"], clip_id=record["clip_id"],
            source_uri=prov["source_uri"], label=record["label"], caption_fg=record["captions"]["fg"],
            caption_bg=record["captions"]["bg"], fps=record["fps"], start_frame=prov["start_frame"],
            frame_stride=prov.get("frame_stride", 1), source_fps=prov.get("source_fps", 0.0),
            scores={k: float(v) for k, v in (record.get("scores") or {}).items()},
        ))
    return refs


def video_refs(entries: list[str], extensions: list[str], caption: str) -> list[SourceRef]:
    exts = {e.lower() for e in extensions}
    files: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in exts)
        elif path.is_file():
            files.append(path)
        else:
            files += sorted(Path(p) for p in glob.glob(entry, recursive=True))
    return [SourceRef(kind="video", uri=str(p), source_uri=str(p), caption_bg=caption,
                      fingerprint=file_fingerprint(p))
            for p in dict.fromkeys(files)]


def _fingerprint(path: Path) -> str:
    """Files by content; a frame folder by its frames' names and fingerprints."""
    if path.is_dir():
        return stable_id(*[(f.name, file_fingerprint(f)) for f in sorted(path.iterdir()) if f.is_file()])
    return file_fingerprint(path)


def matting_refs(cfg: CopyPasteConfig) -> tuple[list[SourceRef], list[Problem]]:
    """fg sources of every configured video-matting set, plus its malformed entries."""
    refs: list[SourceRef] = []
    problems: list[Problem] = []
    for mset in cfg.input.fg_matting:
        clips, found = discover_video_matting(mset.root, mset.layout, mset.fg_dir, mset.alpha_dir,
                                              mset.fg_suffix, mset.alpha_suffix)
        problems += found
        for clip in clips:
            fg, alpha = Path(clip.fg), Path(clip.alpha)
            starts = [mset.start]
            if mset.windows_per_clip > 1:
                try:
                    length = clip_length(fg)
                except SourceError as exc:
                    problems.append(Problem(clip.fg, exc.reason, exc.detail))
                    continue
                starts = window_starts(length, cfg.frames.num_frames, mset.stride, mset.windows_per_clip, mset.start)
                if not starts:
                    problems.append(Problem(clip.fg, "too_short", f"{length} frames < one window ({clip.fg})"))
                    continue
            content = stable_id(_fingerprint(fg), _fingerprint(alpha))
            for start in starts:  # the first window keeps the single-window id, so earlier runs resume
                refs.append(SourceRef(
                    kind="matting", uri=clip.fg, alpha_uri=clip.alpha, source_uri=clip.fg, label=mset.label,
                    start_frame=start, frame_stride=mset.stride, license=mset.license,
                    fingerprint=content if start == mset.start else stable_id(content, start),
                ))
    return refs, problems


def filter_coarse_fgs(refs: list[SourceRef], cfg: CopyPasteConfig
                      ) -> tuple[list[SourceRef], list[tuple[SourceRef, str, str]]]:
    """Coarse fgs passing ``input.coarse_qa``; the others with (reason, detail)."""
    qa = cfg.input.coarse_qa
    kept, dropped = [], []
    for ref in refs:
        verdict = qa_verdict(ref.scores, qa.min_scores, qa.max_scores, qa.require_scores)
        if verdict is None:
            kept.append(ref)
        else:
            dropped.append((ref, *verdict))
    return kept, dropped


def count_samples(datasets: list[str]) -> int:
    """Committed samples in ``datasets`` (shard member names only, nothing decoded)."""
    total = 0
    for path in shard_paths(datasets):
        with tarfile.open(path) as tar:
            total += sum(1 for name in tar.getnames() if name.endswith(".json"))
    return total


def mix_cap(mix: Stage3Mix) -> int | None:
    """Most copy-paste samples allowed so that they are ``copypaste_share`` of the stage-3 mix."""
    if mix.copypaste_share is None or not mix.static_datasets:
        return None
    static = count_samples(mix.static_datasets)
    if static == 0:
        raise ValueError(f"mix.static_datasets {mix.static_datasets} hold no committed samples: "
                         "build the image layers first (make image-layers) or unset mix.copypaste_share")
    return int(static * mix.copypaste_share / (1 - mix.copypaste_share))


class PlannedReject(BaseModel):
    unit_id: str
    source_uri: str
    reason: str
    detail: str


class CopyPastePlan(BaseModel):
    pairs: list[Pair]
    rejects: list[PlannedReject]
    fg_sources: int
    bg_sources: int


def plan_copypaste(cfg: CopyPasteConfig) -> CopyPastePlan:
    """Everything the driver decides before any decoding: sources (with a reject per malformed entry,
    unreadable shard, coarse fg failing QA, fg without background, unit over the mix share) and pairs."""
    config_hash = cfg.processing_hash()
    rejects: list[PlannedReject] = []

    def reject(prefix: str, key: str, uri: str, reason: str, detail: str) -> None:
        rejects.append(PlannedReject(unit_id=f"cp-{prefix}-" + stable_id(config_hash, key), source_uri=uri,
                                     reason=reason, detail=detail[:2000]))

    sources: dict[str, list[SourceRef]] = {}
    unreadable: set[Path] = set()
    for role, entries in (("fg", cfg.input.fg_shards), ("bg", cfg.input.bg_shards)):
        sources[role] = []
        for path in shard_paths(entries):
            try:
                sources[role] += index_shard(path)
            except Exception as exc:  # noqa: BLE001 - a corrupt shard costs its samples, not the run
                if path not in unreadable:  # one reject per shard, even if it is both a fg and a bg source
                    unreadable.add(path)
                    reject("src", str(path), str(path), "shard_unreadable", f"{type(exc).__name__}: {exc}")
    coarse, dropped = filter_coarse_fgs(sources["fg"], cfg)
    for ref, reason, detail in dropped:
        reject("qa", ref.id, ref.source_uri, reason, f"{ref.key}: {detail}")
    matting, problems = matting_refs(cfg)
    for problem in problems:
        reject("bad", problem.uri, problem.uri, problem.reason, problem.detail)
    fgs = matting + coarse
    fgs = fgs[: cfg.input.max_fg] if cfg.input.max_fg is not None else fgs
    bgs = sources["bg"] + video_refs(cfg.input.bg_videos, cfg.input.video_extensions, cfg.paste.bg_video_caption)
    motions = ["video", "static"] if cfg.paste.motion == "both" else [cfg.paste.motion]
    pairs, orphans = plan_pairs(fgs, bgs, cfg.paste.seed, cfg.paste.pairs_per_fg, config_hash, motions)
    for fg in orphans:
        reject("nobg", fg.id, fg.source_uri, "no_background", f"{fg.id}: no background from another source")
    cap = mix_cap(cfg.mix)
    if cap is not None and len(pairs) > cap:
        ranked = sorted(pairs, key=lambda p: stable_id(cfg.paste.seed, "mix", p.unit_id))
        for pair in ranked[cap:]:
            rejects.append(PlannedReject(unit_id=pair.unit_id, source_uri=pair.fg.source_uri, reason="over_mix_share",
                                         detail=f"{cap} copy-paste units = {cfg.mix.copypaste_share} of the mix"))
        keep = {p.unit_id for p in ranked[:cap]}
        pairs = [p for p in pairs if p.unit_id in keep]
    return CopyPastePlan(pairs=pairs, rejects=rejects, fg_sources=len(fgs), bg_sources=len(bgs))


# -- pairing ---------------------------------------------------------------------------------------
def _same_source(a: str, b: str) -> bool:
    def norm(u: str) -> str:
        return u if "://" in u else os.path.realpath(u)

    return norm(a) == norm(b)


def plan_pairs(fgs: list[SourceRef], bgs: list[SourceRef], seed: int, pairs_per_fg: int,
               config_hash: str, motions: list[str] = ("video",)) -> tuple[list[Pair], list[SourceRef]]:
    """Deterministic fg -> bg pairing. Returns (pairs, fgs left without any eligible background).

    Each fg draws from its own RNG (seeded by seed and fg id), so its pairs do not change when other
    fgs are added or removed. A bg is eligible only if it comes from a different source video than
    the fg, which excludes the fg's own background and those of its sibling objects.
    """
    ordered_bgs = sorted(bgs, key=lambda r: r.id)
    pairs, orphans = [], []
    for fg in sorted(fgs, key=lambda r: r.id):
        eligible = [bg for bg in ordered_bgs if not _same_source(bg.source_uri, fg.source_uri)]
        if not eligible:
            orphans.append(fg)
            continue
        rng = np.random.default_rng(int(stable_id(seed, fg.id), 16))
        for index in rng.choice(len(eligible), size=min(pairs_per_fg, len(eligible)), replace=False):
            bg = eligible[int(index)]
            for motion in motions:
                # "video" keeps the id scheme of earlier runs, so they resume
                parts = (config_hash, seed, fg.id, bg.id) + (() if motion == "video" else (motion,))
                pairs.append(Pair(unit_id="cp-" + stable_id(*parts), fg=fg, bg=bg, motion=motion))
    return pairs, orphans


# -- compositing (pure) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    scale: float
    top: int
    left: int
    height: int
    width: int


def object_box(alpha: np.ndarray, threshold: int = 8) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), end-exclusive, of alpha > threshold over all frames; None if empty."""
    union = (alpha > threshold).any(axis=0)
    ys, xs = np.nonzero(union.any(axis=1))[0], np.nonzero(union.any(axis=0))[0]
    if not len(ys):
        return None
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


def sample_placement(box_hw: tuple[int, int], frame_hw: tuple[int, int], rng: np.random.Generator,
                     scale_range: tuple[float, float]) -> Placement:
    """Random scale (a fraction of the just-fits scale) and position keeping the whole box in frame."""
    (bh, bw), (fh, fw) = box_hw, frame_hw
    fit = min(fh / bh, fw / bw)
    scale = fit * float(rng.uniform(*scale_range))
    height, width = max(1, min(fh, int(bh * scale))), max(1, min(fw, int(bw * scale)))
    top = int(rng.integers(0, fh - height + 1))
    left = int(rng.integers(0, fw - width + 1))
    return Placement(scale, top, left, height, width)


def paste(fg: np.ndarray, alpha: np.ndarray, box: tuple[int, int, int, int], place: Placement,
          frame_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``box`` out of fg/alpha (T, h, w[, 3]), resize it to the placement, put it on empty canvases.

    The fg is straight colour with a fill outside the object, so it is resized premultiplied (``fg * a``
    and ``a`` resampled, then divided): resampling straight colour would mix the fill into the soft edge
    and leave a dark/tinted fringe in ``fg * a + bg * (1 - a)``. Where the resized alpha is 0, fg is 0.
    """
    y0, y1, x0, x1 = box
    t = len(fg)
    fg_out = np.zeros((t, *frame_hw, 3), np.uint8)
    alpha_out = np.zeros((t, *frame_hw), np.uint8)
    size = (place.width, place.height)
    interp = cv2.INTER_AREA if place.scale < 1 else cv2.INTER_LINEAR
    ys, xs = slice(place.top, place.top + place.height), slice(place.left, place.left + place.width)
    for i in range(t):
        a = alpha[i, y0:y1, x0:x1].astype(np.float32) / 255.0
        premult = cv2.resize(fg[i, y0:y1, x0:x1].astype(np.float32) * a[..., None], size, interpolation=interp)
        a = np.clip(cv2.resize(a, size, interpolation=interp), 0.0, 1.0)
        colour = np.where(a[..., None] > 1e-6, premult / np.maximum(a, 1e-6)[..., None], 0.0)
        fg_out[i, ys, xs] = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
        alpha_out[i, ys, xs] = np.rint(a * 255).astype(np.uint8)
    return fg_out, alpha_out


def harmonize_lab(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, strength: float) -> np.ndarray:
    """Move the fg's LAB mean/std a fraction ``strength`` of the way to the bg's (Reinhard et al. 2001).

    Statistics use the fg's solid pixels (alpha >= 128) and the whole bg; only pixels with alpha > 0
    change, so the fill outside the object stays as it is.
    """
    solid = alpha >= 128
    if strength <= 0 or not solid.any():
        return fg
    def to_lab(x: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(x.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[:, 0]

    fg_lab, bg_lab = to_lab(fg), to_lab(bg)
    obj = fg_lab[solid.reshape(-1)]
    mu_f, sd_f = obj.mean(0), obj.std(0) + 1e-3
    mu_b, sd_b = bg_lab.mean(0), bg_lab.std(0) + 1e-3
    gain = 1 + strength * (sd_b / sd_f - 1)
    moved = (fg_lab - mu_f) * gain + mu_f + strength * (mu_b - mu_f)
    moved[:, 0] = np.clip(moved[:, 0], 0, 100)
    rgb = cv2.cvtColor(moved.reshape(-1, 1, 3), cv2.COLOR_LAB2RGB)[:, 0].reshape(fg.shape)
    out = fg.copy()
    touched = alpha > 0
    out[touched] = np.clip(np.rint(rgb[touched] * 255), 0, 255).astype(np.uint8)
    return out


def compose_blend_caption(fg: str, bg: str, template: str) -> str:
    fg, bg = fg.strip().rstrip("."), bg.strip().rstrip(".")
    bg = bg[:1].lower() + bg[1:]
    return template.format(fg=fg, bg=bg)


# -- Ray stage -------------------------------------------------------------------------------------
class CopyPasteStage(UnitStage):
    """Decode one (fg, bg) pair, paste, harmonise and blend; one sample per unit."""

    stage = STAGE

    def __init__(self, config: dict[str, Any]):
        self.cfg = CopyPasteConfig.model_validate(config)
        self.config_hash = self.cfg.processing_hash()
        self._captioner: Any = None

    def captioner(self) -> Any:
        """Built on first use: runs over captioned sources only never load it."""
        if self._captioner is None:
            from dataset_builder.models.registry import BackendKind, build_backend

            self._captioner = build_backend(BackendKind.CAPTIONER, self.cfg.captioner)
        return self._captioner

    def _read_fg(self, ref: SourceRef) -> tuple[np.ndarray, np.ndarray, float]:
        if ref.kind == "matting":
            fg, alpha, fps = read_matting_clip(ref.uri, ref.alpha_uri, ref.start_frame, self.cfg.frames.num_frames,
                                               ref.frame_stride)
            return fg, alpha, fps / ref.frame_stride  # every stride-th frame: the clip plays at fps / stride
        fg_rgb, alpha = read_shard_layers(ref, ("fg.mp4", "alpha.mkv"))
        return fg_rgb, alpha, ref.fps

    def process(self, state: UnitState, row: dict[str, Any]) -> None:
        pair = Pair.model_validate(state.task)
        frames, paste_cfg = self.cfg.frames, self.cfg.paste
        hw = (frames.height, frames.width)
        try:
            fg_rgb, alpha, fg_fps = self._read_fg(pair.fg)
        except SourceError as exc:
            return state.reject_unit(STAGE, exc.reason, exc.detail)
        except Exception as exc:  # noqa: BLE001 - any decode/IO failure is a named reject
            return state.reject_unit(STAGE, "fg_unreadable", f"{pair.fg.id}: {type(exc).__name__}: {exc}")
        try:
            bg = self._read_bg(pair.bg)
        except Exception as exc:  # noqa: BLE001 - any decode/IO failure is a named reject
            return state.reject_unit(STAGE, "bg_unreadable", f"{pair.bg.id}: {type(exc).__name__}: {exc}")
        t = frames.num_frames
        if min(len(fg_rgb), len(alpha)) < t or len(bg) < t:
            return state.reject_unit(STAGE, "too_short", f"fg {len(fg_rgb)}, alpha {len(alpha)}, bg {len(bg)} < {t}")
        fg_rgb, alpha, bg = fg_rgb[:t], alpha[:t], resize_frames(bg[:t], *hw)
        box = object_box(alpha, paste_cfg.alpha_threshold)
        if box is None:
            return state.reject_unit(STAGE, "empty_alpha", pair.fg.id)
        rng = np.random.default_rng(int(stable_id(paste_cfg.seed, state.unit_id), 16))
        place = sample_placement((box[1] - box[0], box[3] - box[2]), hw, rng, paste_cfg.scale_range)
        fg_out, alpha_out = paste(fg_rgb, alpha, box, place, hw)
        static_frames = None
        if pair.motion == "static":  # the paper's static clips: one random frame, duplicated at encode time
            # placed like the video (all-frames box), so the object keeps its natural size in the frame
            fi, bi = (int(i) for i in rng.integers(0, t, size=2))
            if not (alpha_out[fi] > paste_cfg.alpha_threshold).any():
                return state.reject_unit(STAGE, "empty_alpha", f"{pair.fg.id}: frame {fi}")
            fg_out, alpha_out, bg = fg_out[fi:fi + 1], alpha_out[fi:fi + 1], bg[bi:bi + 1]
            static_frames = {"fg_frame": fi, "bg_frame": bi}
        fg_out = harmonize_lab(fg_out, alpha_out, bg, paste_cfg.harmonize)
        blend = composite(fg_out, bg, alpha_out)
        captions = self._captions(pair, fg_out, alpha_out, bg, blend)
        state.samples.append(self._record(state, pair, place, alpha_out, captions, fg_fps, static_frames))
        row.update(fg=fg_out[None], alpha=alpha_out[None], bg=bg[None], blend=blend[None])

    def _captions(self, pair: Pair, fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, blend: np.ndarray
                  ) -> Captions:
        """Source captions where the source has them; matting foregrounds (no caption) get the captioner's fg
        caption, or ``A <label>.`` without one. Raw background videos keep ``paste.bg_video_caption``: a
        template bg caption would claim an empty scene the video may not show."""
        fg_caption, bg_caption = pair.fg.caption_fg, pair.bg.caption_bg
        if not fg_caption and self.cfg.captioner is not None:
            layers = [blend, alpha, bg]
            if len(blend) == 1:  # a static clip: two equal frames, so the captioner measures no motion
                layers = [np.repeat(x, 2, axis=0) for x in layers]
            fg_caption = self.captioner().caption(*layers, pair.fg.label, []).fg
        fg_caption = fg_caption or f"A {pair.fg.label or 'object'}."
        bg_caption = bg_caption or self.cfg.paste.bg_video_caption
        return Captions(fg=fg_caption, bg=bg_caption,
                        blend=compose_blend_caption(fg_caption, bg_caption, self.cfg.paste.blend_template))

    def _read_bg(self, ref: SourceRef) -> np.ndarray:
        if ref.kind == "shard":
            return read_shard_layers(ref, ("bg.mp4",))[0]
        stride, start = self.cfg.input.bg_video_stride, self.cfg.input.bg_video_start
        return decode_frames(ref.uri, start=start, count=self.cfg.frames.num_frames, stride=stride)[0]

    def _record(self, state: UnitState, pair: Pair, place: Placement, alpha: np.ndarray, captions: Captions,
                fps: float, static_frames: dict[str, int] | None) -> LayeredSample:
        fg, bg, paste_cfg = pair.fg, pair.bg, self.cfg.paste
        static = pair.motion == "static"

        def source(r):
            return r.model_dump(include={"kind", "uri", "alpha_uri", "key", "clip_id", "source_uri", "license"})

        tags = ["copypaste", *(["static", "frame_duplicated"] if static else []),
                *(["video_matting"] if fg.kind == "matting" else [])]
        return LayeredSample(
            key=state.unit_id, clip_id=state.unit_id, object_id=0, kind="copypaste", label=fg.label,
            num_frames=self.cfg.frames.num_frames, height=self.cfg.frames.height, width=self.cfg.frames.width,
            fps=fps or self.cfg.frames.fps, captions=captions, tags=tags,
            scores={"paste_scale": place.scale, "alpha_coverage": float(alpha.mean() / 255.0)},
            # static clips are Motion-LoRA data: the motion adapter's scale 1 means "no motion"
            motion_scale=1.0 if static else 0.0, fg_fill=self.cfg.output.fg_fill,
            provenance=Provenance(
                source_uri=fg.source_uri, start_frame=fg.start_frame, frame_stride=fg.frame_stride,
                source_fps=fg.source_fps, config_hash=self.config_hash,
                backends={"copypaste": f"paste+lab_harmonize({paste_cfg.harmonize})"},
                builder_version=__version__, fg_source=source(fg), bg_source=source(bg), seed=paste_cfg.seed,
                placement={"scale": place.scale, "top": place.top, "left": place.left,
                           "height": place.height, "width": place.width, "motion": pair.motion,
                           **(static_frames or {})},
            ),
        )


def read_shard_layers(ref: SourceRef, suffixes: tuple[str, ...]) -> list[np.ndarray]:
    """Decode members of one shard sample (alpha as gray)."""
    with tarfile.open(ref.uri) as tar:
        blobs = [tar.extractfile(f"{ref.key}.{suffix}").read() for suffix in suffixes]
    return [decode_bytes(blob, gray=suffix.startswith("alpha")) for blob, suffix in zip(blobs, suffixes)]
