"""Explicit backend registry: (kind, name) -> factory. Factories import heavy dependencies lazily,
so the package and the CPU profile import where torch/torchvision/transformers are absent."""

from __future__ import annotations

import importlib
from enum import Enum
from typing import Any
from collections.abc import Callable

from dataset_builder.config import BackendSpec, Resources


class BackendKind(str, Enum):
    TAGGER = "tag"
    SEGMENTER = "segment_track"
    DEDUP = "dedup_masks"
    FG_JUDGE = "filter_foreground"
    INPAINTER = "inpaint"
    CAPTIONER = "caption"


Factory = Callable[[BackendSpec], Any]

#: (kind, name) -> "module:attr" of a factory taking the BackendSpec. Strings keep imports lazy.
_REGISTRY: dict[tuple[BackendKind, str], str | Factory] = {
    (BackendKind.TAGGER, "cpu"): "dataset_builder.models.cpu.tagger:CpuTagger",
    (BackendKind.SEGMENTER, "cpu"): "dataset_builder.models.cpu.keyframe_segmenter:KeyframeSegmenterTracker",
    (BackendKind.SEGMENTER, "motion"): "dataset_builder.models.cpu.segmenter:MotionSegmenterTracker",
    (BackendKind.DEDUP, "iou"): "dataset_builder.models.cpu.dedup:IouDedup",
    (BackendKind.FG_JUDGE, "cpu"): "dataset_builder.models.cpu.fg_judge:HeuristicFgJudge",
    (BackendKind.INPAINTER, "cpu"): "dataset_builder.models.cpu.inpainter:TemporalSpatialInpainter",
    (BackendKind.INPAINTER, "exemplar"): "dataset_builder.models.cpu.exemplar_inpainter:ExemplarInpainter",
    (BackendKind.CAPTIONER, "cpu"): "dataset_builder.models.cpu.captioner:TemplateCaptioner",
    # Paper profile (GPU; weights from $LAYERFLOW_MODEL_ROOT, see docs/models.md).
    (BackendKind.TAGGER, "siglip"): "dataset_builder.models.hf.siglip_tagger:SiglipTagger",
    (BackendKind.SEGMENTER, "owlv2_sam2"): "dataset_builder.models.hf.owlv2_sam2:Owlv2Sam2SegmenterTracker",
    (BackendKind.FG_JUDGE, "qwen2_5_vl"): "dataset_builder.models.hf.qwen_judge:QwenFgJudge",
    (BackendKind.INPAINTER, "propainter"): "dataset_builder.models.hf.propainter:ProPainterInpainter",
    (BackendKind.INPAINTER, "diffusers_inpaint"): "dataset_builder.models.hf.diffusers_inpaint:DiffusersImageInpainter",
    (BackendKind.CAPTIONER, "qwen2_5_vl"): "dataset_builder.models.hf.qwen_captioner:QwenCaptioner",
    (BackendKind.CAPTIONER, "cogvlm2"): "dataset_builder.models.hf.cogvlm2:CogVLM2Captioner",
}


def register(kind: BackendKind | str, name: str, factory: str | Factory) -> None:
    """Add a backend (e.g. from a plugin). ``factory`` is a callable or a lazy "module:attr"."""
    _REGISTRY[(BackendKind(kind), name)] = factory


def available_backends(kind: BackendKind | str) -> list[str]:
    kind = BackendKind(kind)
    return sorted(name for k, name in _REGISTRY if k is kind)


def registry_target(kind: BackendKind | str, name: str) -> str | Factory:
    """The registered factory or its lazy ``"module:attr"`` (nothing imported)."""
    kind = BackendKind(kind)
    try:
        return _REGISTRY[(kind, name)]
    except KeyError:
        raise KeyError(
            f"unknown {kind.value} backend {name!r}; available: {available_backends(kind)}"
        ) from None


def resolve_factory(kind: BackendKind | str, name: str) -> Factory:
    target = registry_target(kind, name)
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def effective_resources(kind: BackendKind | str, spec: BackendSpec) -> Resources:
    """The stage's Ray resources: what the config set, else what the backend class declares
    (``default_resources``), else the generic default."""
    if "resources" in spec.model_fields_set:
        return spec.resources
    declared = getattr(resolve_factory(kind, spec.name), "default_resources", None)
    return declared if isinstance(declared, Resources) else spec.resources


def build_backend(kind: BackendKind | str, spec: BackendSpec) -> Any:
    """Instantiate the backend named by ``spec.name`` for ``kind`` (loads weights once, per actor)."""
    return resolve_factory(kind, spec.name)(spec)
