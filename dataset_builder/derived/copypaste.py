"""Copy-paste layered videos (LayerFlow stage 3, motion scale 0): matted foregrounds of coarse samples
pasted onto backgrounds of *other* sources.

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
from dataset_builder.derived.config import CopyPasteConfig
from dataset_builder.io import layout
from dataset_builder.io.video import decode_bytes, decode_frames
from dataset_builder.ops.clips import resize_frames
from dataset_builder.ops.composite import composite
from schemas import Captions, LayeredSample, Provenance

STAGE = "copypaste"


class SourceRef(BaseModel):
    """One fg or bg source: a coarse shard sample (``key`` set) or a raw video file."""

    kind: Literal["shard", "video"]
    uri: str
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
    #: Content fingerprint of a video source (``ops.clips.file_fingerprint``).
    fingerprint: str = ""

    @property
    def id(self) -> str:
        """Content-based, so unit ids survive moving or re-spelling paths: a shard sample's key is
        globally unique (clip id = content hash + object), a video is known by its fingerprint."""
        if self.key:
            return f"sample:{self.key}"
        return f"video:{self.fingerprint}" if self.fingerprint else self.uri


class Pair(BaseModel):
    unit_id: str
    fg: SourceRef
    bg: SourceRef


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


# -- pairing ---------------------------------------------------------------------------------------
def _same_source(a: str, b: str) -> bool:
    def norm(u: str) -> str:
        return u if "://" in u else os.path.realpath(u)

    return norm(a) == norm(b)


def plan_pairs(fgs: list[SourceRef], bgs: list[SourceRef], seed: int, pairs_per_fg: int,
               config_hash: str) -> tuple[list[Pair], list[SourceRef]]:
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
            pairs.append(Pair(unit_id="cp-" + stable_id(config_hash, seed, fg.id, bg.id), fg=fg, bg=bg))
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

    def process(self, state: UnitState, row: dict[str, Any]) -> None:
        pair = Pair.model_validate(state.task)
        frames, paste_cfg = self.cfg.frames, self.cfg.paste
        hw = (frames.height, frames.width)
        try:
            fg_rgb, alpha = read_shard_layers(pair.fg, ("fg.mp4", "alpha.mkv"))
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
        fg_out = harmonize_lab(fg_out, alpha_out, bg, paste_cfg.harmonize)
        blend = composite(fg_out, bg, alpha_out)
        state.samples.append(self._record(state, pair, place, alpha_out))
        row.update(fg=fg_out[None], alpha=alpha_out[None], bg=bg[None], blend=blend[None])

    def _read_bg(self, ref: SourceRef) -> np.ndarray:
        if ref.kind == "shard":
            return read_shard_layers(ref, ("bg.mp4",))[0]
        stride, start = self.cfg.input.bg_video_stride, self.cfg.input.bg_video_start
        return decode_frames(ref.uri, start=start, count=self.cfg.frames.num_frames, stride=stride)[0]

    def _record(self, state: UnitState, pair: Pair, place: Placement, alpha: np.ndarray) -> LayeredSample:
        fg, bg, paste_cfg = pair.fg, pair.bg, self.cfg.paste
        captions = Captions(fg=fg.caption_fg, bg=bg.caption_bg,
                            blend=compose_blend_caption(fg.caption_fg, bg.caption_bg, paste_cfg.blend_template))

        def source(r):
            return r.model_dump(include={"kind", "uri", "key", "clip_id", "source_uri"})

        return LayeredSample(
            key=state.unit_id, clip_id=state.unit_id, object_id=0, kind="copypaste", label=fg.label,
            num_frames=self.cfg.frames.num_frames, height=self.cfg.frames.height, width=self.cfg.frames.width,
            fps=fg.fps or self.cfg.frames.fps, captions=captions, tags=["copypaste"],
            scores={"paste_scale": place.scale, "alpha_coverage": float(alpha.mean() / 255.0)},
            motion_scale=0.0, fg_fill=self.cfg.output.fg_fill,
            provenance=Provenance(
                source_uri=fg.source_uri, start_frame=fg.start_frame, frame_stride=fg.frame_stride,
                source_fps=fg.source_fps, config_hash=self.config_hash,
                backends={"copypaste": f"paste+lab_harmonize({paste_cfg.harmonize})"},
                builder_version=__version__, fg_source=source(fg), bg_source=source(bg), seed=paste_cfg.seed,
                placement={"scale": place.scale, "top": place.top, "left": place.left,
                           "height": place.height, "width": place.width},
            ),
        )


def read_shard_layers(ref: SourceRef, suffixes: tuple[str, ...]) -> list[np.ndarray]:
    """Decode members of one shard sample (alpha as gray)."""
    with tarfile.open(ref.uri) as tar:
        blobs = [tar.extractfile(f"{ref.key}.{suffix}").read() for suffix in suffixes]
    return [decode_bytes(blob, gray=suffix.startswith("alpha")) for blob, suffix in zip(blobs, suffixes)]
