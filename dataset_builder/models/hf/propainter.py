"""Video inpainting with ProPainter (backend ``propainter``), via pytorchcv's re-implementation.

pytorchcv 0.0.74 ships the full ProPainter pipeline (RAFT flow -> recurrent flow completion ->
flow-guided image propagation -> sparse video transformer) as a streaming iterator. We load its three
networks from local ``.pth`` state dicts and never let it download: either pytorchcv's converted files or
the official release files (``raft-things.pth``, ``recurrent_flow_completion.pth``, ``ProPainter.pth``),
renamed on load by ``propainter_weights`` (which also converts them once, offline).
pytorchcv imports ``torchvision.ops.DeformConv2d``; where torchvision is missing (CPU torch builds)
a pure-torch twin is injected only while that module is imported (see ``deform_conv``).
Install with ``pip install --no-deps pytorchcv==0.0.74`` (its metadata pins torchvision).

Licence: ProPainter (code and weights) is S-Lab License 1.0, non-commercial use only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dataset_builder.config import BackendSpec, Resources
from dataset_builder.models.hf import loading
from dataset_builder.models.hf.propainter_weights import CONVERTED_FILES, OFFICIAL_FILES, load_official

#: pytorchcv's ProPainterIterator always runs RAFT with 20 refinement iterations.
RAFT_ITERS = 20
#: Networks of the pipeline -> state-dict file (pytorchcv names) expected in the model directory.
WEIGHT_FILES = CONVERTED_FILES


def prepare_masks(masks: np.ndarray, dilation: int) -> np.ndarray:
    """Binary hole masks ``(T, H, W)`` in {0, 1}: any alpha counts, grown by ``dilation`` pixels
    (ProPainter's default 4) so soft edges and halo pixels are repainted too."""
    import cv2

    hard = (masks > 0).astype(np.uint8)
    if dilation > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1, 2 * dilation + 1))
        hard = np.stack([cv2.dilate(m, kernel) for m in hard])
    return hard


def pad_to_multiple(frames: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad ``(T, H, W, ...)`` bottom/right to multiples of ``multiple``; returns (padded, (H, W))."""
    h, w = frames.shape[1:3]
    ph, pw = -h % multiple, -w % multiple
    pad = [(0, 0), (0, ph), (0, pw)] + [(0, 0)] * (frames.ndim - 3)
    return (np.pad(frames, pad, mode="reflect") if ph or pw else frames), (h, w)


def _import_pytorchcv():
    from dataset_builder.models.hf.deform_conv import torchvision_ops_shim

    with torchvision_ops_shim():
        # propainter -> propainter_ip -> propainter_rfc imports torchvision: all inside the shim.
        from pytorchcv.models import propainter, propainter_rfc, propainter_stream, raft
    return raft, propainter_rfc, propainter, propainter_stream


def weights_dir(spec: BackendSpec, default_subdir: str) -> Path:
    """The model directory; it must hold, per network, pytorchcv's converted file or the official one."""
    path = loading.resolve_model_dir(spec, default_subdir, required=())
    missing = [f"{CONVERTED_FILES[n]} or {OFFICIAL_FILES[n]}" for n in CONVERTED_FILES
               if not (path / CONVERTED_FILES[n]).is_file() and not (path / OFFICIAL_FILES[n]).is_file()]
    if missing:
        raise loading.ModelNotFoundError(
            f"{spec.name}: model directory {path} lacks {missing}; see docs/models.md (ProPainter)")
    return path


class ProPainterInpainter:
    """Options: ``mask_dilation`` (4), ``window`` (80, ProPainter's reference
    window), ``stride`` (5), ``step`` (10 frames per output chunk)."""

    default_subdir = "propainter"
    default_resources = Resources(num_cpus=2, num_gpus=0.5, batch_size=1, concurrency=8)

    def __init__(self, spec: BackendSpec) -> None:
        import torch

        opts = spec.options
        self.mask_dilation = int(opts.get("mask_dilation", 4))
        self.window = int(opts.get("window", 80))
        self.stride = int(opts.get("stride", 5))
        self.step = int(opts.get("step", 10))
        path = weights_dir(spec, self.default_subdir)
        raft, rfc, pp, self._stream = _import_pytorchcv()
        self.device = loading.select_device(spec)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"propainter runs on cpu or cuda, not {self.device}")
        nets = {
            "raft": raft.raft_things(in_normalize=False, iters=RAFT_ITERS),
            "rfc": rfc.propainter_rfc(),
            "propainter": pp.propainter(),
        }
        for name, net in nets.items():
            converted = Path(path) / CONVERTED_FILES[name]
            if converted.is_file():
                state = torch.load(converted, map_location="cpu", weights_only=True)
            else:
                state = load_official(name, Path(path) / OFFICIAL_FILES[name])
            net.load_state_dict(state)
            net.to(self.device).eval()
        self.nets = nets

    def inpaint(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        import torch

        if frames.shape[:3] != masks.shape:
            raise ValueError(f"frames {frames.shape} and masks {masks.shape} differ")
        holes = prepare_masks(masks, self.mask_dilation)
        if not holes.any():
            return frames.copy()
        padded, (h, w) = pad_to_multiple(frames, 8)
        holes_p, _ = pad_to_multiple(holes, 8)
        dev = self.device
        video = torch.from_numpy(padded).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(dev)
        hole_t = torch.from_numpy(holes_p).float()[:, None].to(dev)
        seq = self._stream
        iterator = seq.ProPainterIterator(
            frames=seq.TensorSequencer(video), masks=seq.TensorSequencer(hole_t),
            raft_model=self.nets["raft"], pprfc_model=self.nets["rfc"], pp_model=self.nets["propainter"],
            use_cuda=dev.type == "cuda", pp_window_size=self.window, pp_stride=self.stride, step=self.step,
        )
        with torch.inference_mode():
            out = torch.cat([chunk.float().cpu() for chunk in iterator])
        out = ((out.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()[:, :h, :w]
        # Keep every pixel outside the hole bit-exact (the network output only fills the hole).
        keep = holes[..., None] == 0
        return np.where(keep, frames, out)
