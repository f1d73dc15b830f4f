"""Shared loading rules of the GPU (paper-profile) backends.

Weights only ever come from a local directory (``spec.model_dir``, relative paths resolved against
``$LAYERFLOW_MODEL_ROOT``); the hub is forced offline and every ``from_pretrained`` call gets
``local_files_only=True``, so a missing model is a clear error naming the directory, never a silent
multi-GB download inside a Ray actor. Heavy imports (torch, transformers) happen inside functions so
that importing this module costs nothing and works without torchvision.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dataset_builder.config import BackendSpec

if TYPE_CHECKING:
    import torch

MODEL_ROOT_ENV = "LAYERFLOW_MODEL_ROOT"


class ModelNotFoundError(FileNotFoundError):
    """The backend's weights are not where the config says they should be."""


def enforce_offline() -> None:
    """Make any hub access fail fast instead of downloading (set before transformers reads it)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def resolve_model_dir(
    spec: BackendSpec, default_subdir: str, required: tuple[str, ...] = ("config.json",)
) -> Path:
    """The local directory holding the backend's weights; raises :class:`ModelNotFoundError` naming it.

    ``spec.model_dir`` falls back to ``default_subdir`` (both relative to ``$LAYERFLOW_MODEL_ROOT``).
    ``required`` lists files that must exist in it, so a half-copied model fails here, not deep inside
    transformers with a hub-lookup error.
    """
    spec_dir = spec.model_dir if spec.model_dir is not None else default_subdir
    path = spec.model_copy(update={"model_dir": spec_dir}).resolved_model_dir()
    assert path is not None
    root = os.environ.get(MODEL_ROOT_ENV)
    hint = (
        f"set {MODEL_ROOT_ENV} (now {root!r}) and/or the stage's model_dir; see docs/models.md for how to "
        f"get the weights (nothing is downloaded automatically)"
    )
    if not path.is_dir():
        raise ModelNotFoundError(f"{spec.name}: model directory {path} does not exist; {hint}")
    missing = [name for name in required if not (path / name).exists()]
    if missing:
        raise ModelNotFoundError(f"{spec.name}: model directory {path} lacks {missing}; {hint}")
    return path


class DeviceUnavailableError(RuntimeError):
    """A GPU was asked for (config or Ray's GPU assignment) and torch cannot use one."""


def requested_gpu_ids() -> list[str]:
    """GPUs assigned to this process: Ray's accelerator ids inside a Ray worker, else CUDA_VISIBLE_DEVICES."""
    try:
        import ray

        if ray.is_initialized():
            ids = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
            if ids:
                return [str(i) for i in ids]
    except Exception:  # noqa: BLE001 - no Ray, or not inside a worker: fall back to the environment
        pass
    env = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return [] if env in ("", "-1", "NoDevFiles") else [d for d in env.split(",") if d.strip()]


def select_device(spec: BackendSpec) -> torch.device:
    """``auto`` -> the first CUDA device when there is one (Ray sets CUDA_VISIBLE_DEVICES), else CPU.

    Never a silent CPU fallback: ``cuda``/``cuda:N`` without a usable CUDA device, or ``auto`` in a process
    that was assigned GPUs (a CPU-only torch on a GPU node, a driver mismatch) raises
    :class:`DeviceUnavailableError`; ``device: cpu`` runs on CPU on purpose.
    """
    import torch

    fix = ("install a CUDA build of torch matching the node's driver, or set the stage's device: cpu to run "
           "on CPU on purpose")
    if spec.device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        gpus = requested_gpu_ids()
        if gpus:
            raise DeviceUnavailableError(
                f"{spec.name}: this worker was assigned GPU(s) {gpus} but torch {torch.__version__} cannot use "
                f"CUDA; refusing to fall back to CPU ({fix})")
        return torch.device("cpu")
    device = torch.device(spec.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"{spec.name}: device {spec.device!r} requested but torch {torch.__version__} sees no CUDA device "
                f"({fix})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"{spec.name}: device {spec.device!r} requested but only {torch.cuda.device_count()} CUDA "
                f"device(s) are visible")
    return device


def select_dtype(spec: BackendSpec, device: torch.device) -> torch.dtype:
    """``auto`` -> bfloat16 on GPUs that support it, float16 on older GPUs, float32 on CPU."""
    import torch

    if spec.dtype != "auto":
        return getattr(torch, spec.dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_pretrained(cls: Any, path: Path, spec: BackendSpec, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` with the offline and remote-code rules applied.

    ``trust_remote_code`` is passed only from the spec: a model directory can never opt itself in.
    """
    enforce_offline()
    return cls.from_pretrained(
        str(path), local_files_only=True, trust_remote_code=spec.trust_remote_code, **kwargs
    )


def load_model(cls: Any, path: Path, spec: BackendSpec, **kwargs: Any) -> tuple[Any, torch.device, torch.dtype]:
    """Load a model in inference mode on the spec's device and dtype."""
    device = select_device(spec)
    dtype = select_dtype(spec, device)
    model = load_pretrained(cls, path, spec, dtype=dtype, **kwargs)
    model.to(device).eval()
    return model, device, dtype


def sample_indices(num_frames: int, count: int) -> np.ndarray:
    """``count`` evenly spread frame indices (all frames when the clip is shorter)."""
    if num_frames <= 0:
        raise ValueError("empty clip")
    count = max(1, min(count, num_frames))
    return np.unique(np.linspace(0, num_frames - 1, count).round().astype(int))


def resize_frames(frames: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale ``(T, H, W, 3)`` so the longer side is at most ``max_side`` (VLM token budget)."""
    import cv2

    h, w = frames.shape[1:3]
    scale = max_side / max(h, w)
    if scale >= 1:
        return frames
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
