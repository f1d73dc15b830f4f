"""Pure-torch modulated deformable convolution, a drop-in for ``torchvision.ops.DeformConv2d``.

pytorchcv's ProPainter imports ``torchvision.ops.DeformConv2d`` for its flow-guided alignment, and
torchvision has no wheel for every torch build (none for our CPU torch). This implementation samples
each kernel tap with ``grid_sample`` (bilinear, zero outside - the same rule as torchvision's kernel)
and contracts with the weights in one matmul. It is slower than the CUDA op, so the real op is used
whenever torchvision is importable; the shim is injected only while pytorchcv's module is imported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def deform_conv2d(
    input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Same signature, layout and result as ``torchvision.ops.deform_conv2d``.

    ``offset``: ``(B, 2*G*kh*kw, Ho, Wo)`` as (dy, dx) pairs per offset group and tap;
    ``mask``: ``(B, G*kh*kw, Ho, Wo)`` modulation (DCNv2), or None.
    """
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    b, c, h, w = input.shape
    c_out, c_per_group, kh, kw = weight.shape
    groups = c // c_per_group
    taps = kh * kw
    ho, wo = offset.shape[-2:]
    off_groups = offset.shape[1] // (2 * taps)
    off = offset.view(b, off_groups, taps, 2, ho, wo).to(input.dtype)

    dev, dt = input.device, input.dtype
    base_y = (torch.arange(ho, device=dev, dtype=dt) * sh - ph).view(1, 1, 1, ho, 1)
    base_x = (torch.arange(wo, device=dev, dtype=dt) * sw - pw).view(1, 1, 1, 1, wo)
    tap_y = (torch.arange(kh, device=dev, dtype=dt) * dh).repeat_interleave(kw).view(1, 1, taps, 1, 1)
    tap_x = (torch.arange(kw, device=dev, dtype=dt) * dw).repeat(kh).view(1, 1, taps, 1, 1)
    y = base_y + tap_y + off[:, :, :, 0]
    x = base_x + tap_x + off[:, :, :, 1]
    # align_corners=True maps -1/+1 to pixel centres 0 and size-1: plain pixel coordinates.
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], -1)
    grid = grid.view(b * off_groups, taps * ho, wo, 2)
    sampled = F.grid_sample(
        input.reshape(b * off_groups, c // off_groups, h, w), grid,
        mode="bilinear", padding_mode="zeros", align_corners=True,
    ).view(b, off_groups, c // off_groups, taps, ho, wo)
    if mask is not None:
        sampled = sampled * mask.view(b, off_groups, 1, taps, ho, wo).to(dt)
    cols = sampled.reshape(b, groups, c_per_group * taps, ho * wo)
    out = torch.einsum("gok,bgkl->bgol", weight.view(groups, c_out // groups, c_per_group * taps), cols)
    out = out.reshape(b, c_out, ho, wo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class DeformConv2d(nn.Module):
    """Module twin of ``torchvision.ops.DeformConv2d`` (same parameters, so checkpoints load)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int = 0, dilation: int = 1, groups: int = 1, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return deform_conv2d(input, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)


def torchvision_available() -> bool:
    try:
        return importlib.util.find_spec("torchvision") is not None
    except (ImportError, ValueError):  # blocked by an import hook, or a broken partial install
        return False


@contextlib.contextmanager
def torchvision_ops_shim() -> Iterator[None]:
    """While active, ``from torchvision.ops import DeformConv2d`` resolves to the fallback.

    No-op when torchvision is installed. The fake modules are removed on exit, so nothing else in the
    process (e.g. transformers' torchvision checks) ever sees them.
    """
    if torchvision_available() or "torchvision" in sys.modules:
        yield
        return
    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.DeformConv2d = DeformConv2d  # type: ignore[attr-defined]
    ops.deform_conv2d = deform_conv2d  # type: ignore[attr-defined]
    tv.ops = ops  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": tv, "torchvision.ops": ops})
    try:
        yield
    finally:
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.ops", None)
