"""Static layered videos from images (LayerFlow stages 2/3, motion scale 1), MULAN-style.

Inputs (``ImageTask.kind``):

* ``mulan``: an official MuLAn annotation pickle over its base image (:mod:`.sources.mulan`): the
  release's own RGBA instance layers and background, and its BLIP-2 / LLaVA captions;
* ``matting``: an entry of an image-matting set (:mod:`.sources.image_matting`): a photo + its matte
  (fg colour estimated, background by inpainting the subject out) or an extracted fg + matte over a
  real background; captions by the configured captioner;
* ``invalid``: a malformed entry found at discovery (missing alpha, no base image...), which becomes a
  reject with its reason;

* a single RGB image: the salient object is matted (:mod:`dataset_builder.derived.matting`), the
  background is the image with the object inpainted away (inpaint backend from the registry), and
  captions come from templates;
* a decomposed ("MULAN-style") folder: a ``background`` (or ``layer_0``) image plus RGBA instance
  layers ``layer_1``, ``layer_2``, ... (or ``instance_*``), bottom to top, and an optional
  ``captions.json``. The alpha is the layers' own, used as is.

Every sample is one frame repeated ``num_frames`` times (repeated at encode time).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel

from dataset_builder import __version__
from dataset_builder.ops.clips import file_fingerprint
from dataset_builder.derived.common import UnitStage, UnitState, stable_id
from dataset_builder.derived.config import ImageInput, ImageLayersConfig
from dataset_builder.derived.matting import estimate_foreground, load_saliency_model, matte_salient_object
from dataset_builder.derived.sources.base import Problem, SourceError, expand_entries
from dataset_builder.derived.sources.image_matting import (
    MattingImageRef,
    discover_image_matting,
    load_matting_image,
)
from dataset_builder.derived.sources.mulan import discover_mulan, load_stack, read_pairs_csv
from dataset_builder.ops.clips import resize_frames
from dataset_builder.ops.composite import composite
from schemas import Captions, LayeredSample, Provenance

log = logging.getLogger(__name__)

STAGE = "image_layers"
BACKGROUND_STEMS = ("background", "layer_0", "bg")
_INSTANCE_RE = re.compile(r"^(layer_[1-9]\d*|instance.*)$", re.IGNORECASE)


class ImageTask(BaseModel):
    kind: Literal["image", "layered", "mulan", "matting", "invalid"]
    #: The image / layer folder / base image / matting image or fg; for ``invalid``, the bad entry.
    path: str
    alpha: str = ""
    bg: str = ""
    annotation: str = ""
    #: matting: "image" (photo, bg inpainted) or "fg" (extracted fg over ``bg``).
    matting_kind: str = ""
    label: str = ""
    license: str = ""
    reason: str = ""
    detail: str = ""

    def files(self) -> list[str]:
        """Every input file the sample depends on (ids and provenance hash them)."""
        return [p for p in (self.path, self.alpha, self.bg, self.annotation) if p]


# -- discovery (driver) ----------------------------------------------------------------------------
def _background_file(folder: Path, exts: set[str]) -> Path | None:
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in exts and path.stem.lower() in BACKGROUND_STEMS:
            return path
    return None


def instance_files(folder: Path, exts: set[str]) -> list[Path]:
    """Instance layers bottom to top (natural order: layer_2 before layer_10)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts and _INSTANCE_RE.match(p.stem)]
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.stem.lower())])


def discover_inputs(entries: list[str], extensions: list[str], limit: int | None = None) -> list[ImageTask]:
    """Image files and MULAN-style folders under ``entries`` (files, folders, globs), sorted, deduplicated."""
    exts = {e.lower() for e in extensions}
    tasks: dict[str, ImageTask] = {}

    def visit_dir(folder: Path) -> None:
        if _background_file(folder, exts) is not None:
            tasks.setdefault(str(folder), ImageTask(kind="layered", path=str(folder)))
            return
        for path in sorted(folder.iterdir()):
            if path.is_dir():
                visit_dir(path)
            elif path.suffix.lower() in exts:
                tasks.setdefault(str(path), ImageTask(kind="image", path=str(path)))

    for entry in entries:
        matches = [Path(entry)] if Path(entry).exists() else [Path(p) for p in sorted(glob.glob(entry, recursive=True))]
        for path in matches:
            if path.is_dir():
                visit_dir(path)
            elif path.is_file():
                tasks.setdefault(str(path), ImageTask(kind="image", path=str(path)))
    out = sorted(tasks.values(), key=lambda t: t.path)
    return out[:limit] if limit is not None else out


def _invalid(problem: Problem) -> ImageTask:
    return ImageTask(kind="invalid", path=problem.uri, reason=problem.reason, detail=problem.detail)


def discover_tasks(cfg: ImageInput) -> list[ImageTask]:
    """Every input of the configured sources, malformed entries included as ``invalid`` tasks."""
    tasks = discover_inputs(cfg.paths, cfg.extensions, cfg.max_images)
    for mset in cfg.matting:
        pool = [p for root in expand_entries(mset.backgrounds)
                for p in ([root] if root.is_file() else sorted(root.rglob("*")))
                if p.is_file() and p.suffix.lower() in {e.lower() for e in cfg.extensions}]
        refs, problems = discover_image_matting(mset.root, pool)
        tasks += [_matting_task(ref, mset.label, mset.license) for ref in refs] + [_invalid(p) for p in problems]
    if cfg.mulan is not None:
        m = cfg.mulan
        pairs, problems = discover_mulan(m.annotations, m.image_roots)
        if m.pairs_csv:
            pairs += read_pairs_csv(m.pairs_csv, m.csv_image_column, m.csv_annotation_column)
        for image, annotation in dict.fromkeys(pairs):
            if not Path(image).is_file():
                problems.append(Problem(annotation, "missing_base_image", f"{image} does not exist"))
            else:
                tasks.append(ImageTask(kind="mulan", path=image, annotation=annotation, license=m.license))
        tasks += [_invalid(p) for p in problems]
    return tasks


def _matting_task(ref: MattingImageRef, label: str, license: str) -> ImageTask:
    return ImageTask(kind="matting", path=ref.image, alpha=ref.alpha, bg=ref.bg, matting_kind=ref.kind,
                     label=label, license=license)


# -- loading and layer maths (pure) ----------------------------------------------------------------
def load_rgba(path: str | Path) -> np.ndarray:
    """uint8 RGBA (H, W, 4); opaque if the file has no alpha. Raises ValueError if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 3:
        return np.dstack([image[..., ::-1], np.full(image.shape[:2], 255, np.uint8)])
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))


def composite_over(bottom: np.ndarray, layers: list[np.ndarray]) -> np.ndarray:
    """Float RGB (H, W, 3) of RGBA ``layers`` stacked over an opaque ``bottom`` RGB, bottom to top."""
    out = bottom.astype(np.float32)
    for layer in layers:
        a = layer[..., 3:].astype(np.float32) / 255.0
        out = layer[..., :3].astype(np.float32) * a + out * (1 - a)
    return out


def union_layer(instances: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All instances merged into one layer: (fg RGB uint8, alpha uint8), exact under "over"."""
    premult = np.zeros(instances[0].shape[:2] + (3,), np.float32)
    cover = np.zeros(instances[0].shape[:2], np.float32)
    for layer in instances:
        a = layer[..., 3].astype(np.float32) / 255.0
        premult = layer[..., :3].astype(np.float32) * a[..., None] + premult * (1 - a[..., None])
        cover = a + cover * (1 - a)
    fg = np.where(cover[..., None] > 0, premult / np.maximum(cover, 1e-6)[..., None], 0)
    return _u8(fg), _u8(cover * 255)


def visible_alpha(instances: list[np.ndarray], k: int) -> np.ndarray:
    """Alpha of instance ``k`` as seen through the layers above it, uint8."""
    a = instances[k][..., 3].astype(np.float32) / 255.0
    for layer in instances[k + 1:]:
        a = a * (1 - layer[..., 3].astype(np.float32) / 255.0)
    return instances[k][..., 3] if len(instances) == k + 1 else _u8(a * 255)


def instance_layers(bottom: np.ndarray, instances: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(bg, fg) uint8 of instance ``k``: bg is the scene without it; fg is its colour, corrected where
    semi-transparent layers above it overlap, so that ``fg * visible_alpha + bg * (1 - visible_alpha)``
    equals the full composite there too (elsewhere the correction is zero)."""
    below = composite_over(bottom, instances[:k])
    bg = composite_over(bottom, instances[:k] + instances[k + 1:])
    fg = instances[k][..., :3].astype(np.float32) + (bg - below)
    return _u8(bg), _u8(fg)


def resize_rgba(layers: np.ndarray, height: int, width: int) -> np.ndarray:
    """Straight-alpha RGBA layers (N, H, W, 4) resized like :func:`resize_frames` (cover + centre crop),
    resampled premultiplied: the colour of transparent pixels (black or arbitrary in layer files) must
    not bleed into the soft edges, which would put a fringe into ``fg * a + bg * (1 - a)``."""
    if layers.shape[1:3] == (height, width):
        return layers
    a = layers[..., 3:].astype(np.float32) / 255.0
    out = resize_frames(np.concatenate([layers[..., :3].astype(np.float32) * a, a * 255.0], axis=-1), height, width)
    alpha = out[..., 3:]  # divided unclipped: the same kernel overshoots premult and alpha alike (cubic)
    rgb = np.where(alpha > 0.25, out[..., :3] * 255.0 / np.maximum(alpha, 0.25), 0.0)
    return np.concatenate([_u8(rgb), _u8(alpha)], axis=-1)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


# -- inpainting ------------------------------------------------------------------------------------
class Cv2TeleaInpaintFallback:
    """Used only while the registry's CPU inpainter module does not exist: per-frame cv2 Telea."""

    name = "cv2_telea_fallback"

    def __init__(self, radius: int = 5, dilate: int = 6):
        self.radius = radius
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))

    def inpaint(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        holes = [cv2.dilate((m > 0).astype(np.uint8) * 255, self.kernel) for m in masks]
        return np.stack([cv2.inpaint(np.ascontiguousarray(f), hole, self.radius, cv2.INPAINT_TELEA)
                         for f, hole in zip(frames, holes)])


def build_inpainter(cfg: ImageLayersConfig) -> tuple[Any, str]:
    """(inpainter, name for provenance). Falls back to cv2 only if the backend's module is missing."""
    from dataset_builder.models.registry import BackendKind, build_backend

    spec = cfg.inpaint
    if cfg.model_root and spec.model_dir:
        spec = spec.model_copy(update={"model_dir": str(spec.resolved_model_dir(cfg.model_root))})
    try:
        return build_backend(BackendKind.INPAINTER, spec), spec.name
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("dataset_builder."):
            raise
        log.warning("inpaint backend %r unavailable (%s); using cv2 Telea fallback", spec.name, exc)
        fallback = Cv2TeleaInpaintFallback()
        return fallback, fallback.name


# -- Ray stage -------------------------------------------------------------------------------------
class ImageLayersStage(UnitStage):
    """One input (image or decomposed folder) -> one or more static layered samples."""

    stage = STAGE

    def __init__(self, config: dict[str, Any]):
        self.cfg = ImageLayersConfig.model_validate(config)
        self.config_hash = self.cfg.processing_hash()
        self.exts = {e.lower() for e in self.cfg.input.extensions}
        self._inpainter: tuple[Any, str] | None = None
        self._captioner: Any = None
        self._saliency: Any = False  # not loaded yet (None is a valid loaded value: spectral residual)

    def inpainter(self) -> tuple[Any, str]:
        """Built on first use, so runs over decomposed folders only never load an inpainting model."""
        if self._inpainter is None:
            self._inpainter = build_inpainter(self.cfg)
        return self._inpainter

    def saliency_model(self) -> Any:
        """U^2-Net (or None: spectral residual), loaded once per actor on first use."""
        if self._saliency is False:
            self._saliency = load_saliency_model(self.cfg.matting.saliency)
        return self._saliency

    def captioner(self) -> Any:
        if self._captioner is None:
            from dataset_builder.models.registry import BackendKind, build_backend

            self._captioner = build_backend(BackendKind.CAPTIONER, self.cfg.captioner)
        return self._captioner

    def process(self, state: UnitState, row: dict[str, Any]) -> None:
        task = ImageTask.model_validate(state.task)
        try:
            layers = {"layered": self._layered, "mulan": self._mulan, "matting": self._matting,
                      "invalid": self._invalid, "image": self._single}[task.kind](state, task)
        except SourceError as exc:
            state.reject(STAGE, exc.reason, exc.detail)
            layers = []
        if not layers:
            state.rejected = True
            return
        for name in ("fg", "alpha", "bg", "blend"):
            row[name] = np.stack([layer[name] for layer in layers])[:, None]  # (K, 1, H, W, ...)

    # single RGB image: matting + inpainting
    def _single(self, state: UnitState, task: ImageTask) -> list[dict[str, np.ndarray]]:
        try:
            rgba = load_rgba(task.path)
        except ValueError as exc:
            state.reject(STAGE, "unreadable", str(exc))
            return []
        h, w = self.cfg.frames.height, self.cfg.frames.width
        image = resize_frames(rgba[None, ..., :3], h, w)[0]
        m = self.cfg.matting
        model = self.saliency_model()
        stats: dict[str, float] = {}
        alpha = matte_salient_object(image, m.working_size, m.method, m.grabcut_iters, m.trimap_band,
                                     m.u2net_center_weight if model is not None else m.center_weight, model, stats)
        if stats.get("saliency_uncertainty", 0.0) > m.max_saliency_uncertainty:
            state.reject(STAGE, "uncertain_saliency", f"{stats['saliency_uncertainty']:.3f} undecided per object px")
            return []
        area = float(alpha.mean() / 255.0)
        if not m.min_area <= area <= m.max_area:
            state.reject(STAGE, "no_object" if area < m.min_area else "object_too_large", f"area {area:.3f}")
            return []
        bg, inpainter_name = self._inpaint(image, alpha)
        fg = estimate_foreground(image, alpha)
        blend = composite(fg, bg, alpha)
        label = self.cfg.captions.label
        captions, captioner_name = self._captions(fg, alpha, bg, blend, label)
        scores = {"alpha_coverage": area, "recompose_psnr": psnr(blend, image)}
        mask_from = "spectral+grabcut" if model is None else "u2net"
        backends = {"matting": f"{mask_from}+{m.method}", "inpaint": inpainter_name, "caption": captioner_name}
        state.samples.append(self._record(state, task, 0, label, captions, scores, backends, ["matted"]))
        return [{"fg": fg, "alpha": alpha, "bg": bg, "blend": blend}]

    def _captions(self, fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, blend: np.ndarray, label: str
                  ) -> tuple[Captions, str]:
        """Per-layer captions from the configured captioner (one frame), else the templates."""
        if self.cfg.captioner is None:
            return self._template_captions(label), "template"
        # two identical frames: the captioner measures motion between frames, and a static video has none
        made = self.captioner().caption(*(np.repeat(x[None], 2, axis=0) for x in (blend, alpha, bg)), label, [])
        return Captions(fg=made.fg, bg=made.bg, blend=made.blend), self.cfg.captioner.name

    def _inpaint(self, image: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, str]:
        hole = np.where(alpha > 8, 255, 0).astype(np.uint8)  # backends grow the hole over soft edges
        inpainter, name = self.inpainter()
        return np.asarray(inpainter.inpaint(image[None], hole[None])[0], np.uint8), name

    # image-matting set entry: the matte is given
    def _matting(self, state: UnitState, task: ImageTask) -> list[dict[str, np.ndarray]]:
        image, alpha, bg_image = load_matting_image(MattingImageRef("", task.matting_kind, task.path, task.alpha,
                                                                    task.bg))
        h, w = self.cfg.frames.height, self.cfg.frames.width
        if task.matting_kind == "fg":  # extracted fg + matte over a real background
            rgba = resize_rgba(np.dstack([image, alpha])[None], h, w)[0]
            fg, alpha = rgba[..., :3], rgba[..., 3]
            bg = resize_frames(bg_image[None], h, w)[0]
            backends = {"matting": "given", "background": "given"}
        else:  # photo + matte: un-mix the fg colour, inpaint the subject out of the photo
            image = resize_frames(image[None], h, w)[0]
            alpha = np.rint(np.clip(resize_frames(alpha[None].astype(np.float32), h, w)[0], 0, 255)).astype(np.uint8)
            fg = estimate_foreground(image, alpha)
            bg, inpainter_name = self._inpaint(image, alpha)
            backends = {"matting": "given", "inpaint": inpainter_name}
        area = float(alpha.mean() / 255.0)
        if area < self.cfg.layers.min_area:
            state.reject(STAGE, "instance_too_small", f"visible alpha {area:.4f} after resizing")
            return []
        blend = composite(fg, bg, alpha)
        label = task.label or self.cfg.captions.label
        captions, backends["caption"] = self._captions(fg, alpha, bg, blend, label)
        scores = {"alpha_coverage": area}
        if task.matting_kind != "fg":
            scores["recompose_psnr"] = psnr(blend, image)
        state.samples.append(self._record(state, task, 0, label, captions, scores, backends, ["matting"]))
        return [{"fg": fg, "alpha": alpha, "bg": bg, "blend": blend}]

    def _invalid(self, state: UnitState, task: ImageTask) -> list[dict[str, np.ndarray]]:
        state.reject(STAGE, task.reason, task.detail)
        return []

    # MULAN-style folder: layers given
    def _layered(self, state: UnitState, task: ImageTask) -> list[dict[str, np.ndarray]]:
        folder = Path(task.path)
        try:
            bottom = load_rgba(_background_file(folder, self.exts))
            instances = [load_rgba(p) for p in instance_files(folder, self.exts)]
        except ValueError as exc:
            state.reject(STAGE, "unreadable", str(exc))
            return []
        if not instances:
            state.reject(STAGE, "no_instance_layers", str(folder))
            return []
        if any(layer.shape != bottom.shape for layer in instances):
            state.reject(STAGE, "layer_size_mismatch", f"{[l.shape for l in [bottom, *instances]]}")
            return []
        stems = [p.stem for p in instance_files(folder, self.exts)]
        return self._stack_samples(state, task, bottom[..., :3], instances, stems, _read_captions(folder),
                                   {"layers": "rgba"}, ["mulan"])

    # official MuLAn: layers rebuilt from the annotation pickle over the base image
    def _mulan(self, state: UnitState, task: ImageTask) -> list[dict[str, np.ndarray]]:
        stack = load_stack(task.path, task.annotation, self.cfg.input.mulan.caption_model if self.cfg.input.mulan
                           else "blip2")
        meta = {k: v for k, v in (("bg", stack.captions["bg"]), ("blend", stack.captions["blend"])) if v}
        meta["fg"] = {name: c for name, c in zip(stack.names, stack.captions["fg"]) if c}
        meta["label"] = {name: label for name, c in meta["fg"].items() if (label := caption_label(c))}
        return self._stack_samples(state, task, stack.background, stack.instances, stack.names, meta,
                                   {"layers": "mulan_annotation"}, ["mulan", "mulan_official"])

    def _stack_samples(self, state: UnitState, task: ImageTask, bottom: np.ndarray, instances: list[np.ndarray],
                       stems: list[str], meta: dict[str, Any], backends: dict[str, str], tags: list[str]
                       ) -> list[dict[str, np.ndarray]]:
        """Samples of an RGBA layer stack (opaque bottom + instances back to front), per ``layers``."""
        h, w = self.cfg.frames.height, self.cfg.frames.width
        bottom_rgb = resize_frames(bottom[None], h, w)[0]
        instances = list(resize_rgba(np.stack(instances), h, w))
        if self.cfg.layers.instance_mode == "union":
            fg, alpha = union_layer(instances)
            label = _pick(meta.get("label"), None, self.cfg.captions.label, join=True)
            parts = [(0, fg, alpha, bottom_rgb, label, _pick(meta.get("fg"), None, None, join=True))]
            if alpha.mean() / 255.0 < self.cfg.layers.min_area:
                state.reject(STAGE, "instance_too_small", "union", object_id=0)
                parts = []
        else:
            parts = []
            for k, stem in enumerate(stems):
                alpha = visible_alpha(instances, k)
                if alpha.mean() / 255.0 < self.cfg.layers.min_area:
                    state.reject(STAGE, "instance_too_small", stem, object_id=k)
                    continue
                bg, fg = instance_layers(bottom_rgb, instances, k)
                label = _pick(meta.get("label"), stem, self.cfg.captions.label)
                parts.append((k, fg, alpha, bg, label, _pick(meta.get("fg"), stem, None)))
        out = []
        for object_id, fg, alpha, bg, label, fg_caption in parts:
            template = self._template_captions(label)
            captions = Captions(fg=fg_caption or template.fg, bg=meta.get("bg") or template.bg,
                                blend=meta.get("blend") or template.blend)
            scores = {"alpha_coverage": float(alpha.mean() / 255.0)}
            state.samples.append(self._record(state, task, object_id, label, captions, scores, backends, tags))
            out.append({"fg": fg, "alpha": alpha, "bg": bg, "blend": composite(fg, bg, alpha)})
        return out

    def _template_captions(self, label: str) -> Captions:
        c = self.cfg.captions
        return Captions(fg=c.fg.format(label=label), bg=c.bg.format(label=label), blend=c.blend.format(label=label))

    def _record(self, state: UnitState, task: ImageTask, object_id: int, label: str, captions: Captions,
                scores: dict[str, float], backends: dict[str, str], tags: list[str]) -> LayeredSample:
        f = self.cfg.frames
        return LayeredSample(
            key=f"{state.unit_id}_{object_id}", clip_id=state.unit_id, object_id=object_id, kind="static",
            label=label, num_frames=f.num_frames, height=f.height, width=f.width, fps=f.fps, captions=captions,
            tags=["static", *tags], scores=scores, motion_scale=1.0, fg_fill=self.cfg.output.fg_fill,
            provenance=Provenance(source_uri=task.path, source_sha1=_sha1_of(task.files()), start_frame=0,
                                  config_hash=self.config_hash, backends=backends, builder_version=__version__,
                                  **{k: v for k, v in (("alpha_uri", task.alpha), ("bg_uri", task.bg),
                                                       ("annotation_uri", task.annotation),
                                                       ("license", task.license)) if v}),
        )


def _read_captions(folder: Path) -> dict[str, Any]:
    path = folder / "captions.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def caption_label(caption: str, max_words: int = 4) -> str:
    """A short label from a short instance caption ("a black dog" -> "black dog"); "" if it is a sentence."""
    words = caption.strip().rstrip(".").split()
    if words and words[0].lower() in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words) if 0 < len(words) <= max_words else ""


def _pick(value: Any, stem: str | None, default: str | None, join: bool = False) -> str | None:
    """A caption/label from captions.json: a string, or a {layer stem: string} map."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if stem is not None and stem in value:
            return value[stem]
        if join and value:
            return " and ".join(str(v) for _, v in sorted(value.items()))
    return default


def _sha1_of(paths: list[str]) -> str:
    """sha1 over the input files (a layer folder: all its files)."""
    files: list[Path] = []
    for p in map(Path, paths):
        files += [p] if p.is_file() else sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else []
    digest = hashlib.sha1()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()


def unit_id_for(task: ImageTask, config_hash: str) -> str:
    """Content-based: the same image (or layer folder) keeps its id wherever it lives or however its
    path is spelled, so reruns resume instead of duplicating."""
    content: list[Any] = []
    for name in task.files():
        path = Path(name)
        if path.is_dir():
            content.append([(f.name, file_fingerprint(f)) for f in sorted(path.iterdir()) if f.is_file()])
        else:
            content.append(file_fingerprint(path) if path.is_file() else name)
    if task.kind == "invalid":
        content.append(task.reason)
    elif task.kind in ("mulan", "matting"):
        content.append(task.matting_kind)
    return "img-" + stable_id(config_hash, task.kind, content[0] if task.kind in ("image", "layered") else content)
