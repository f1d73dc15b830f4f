"""Pure diffusion math for LayerFlow training (CogVideoX v-prediction, x0-space weighted loss).

Conditional variants: the condition sub-clip's latent frames stay clean in the model input and get
zero weight in the loss, so the model learns to generate the other layers *given* that clip.
"""

from __future__ import annotations

import torch

from layerflow_train.config import CONDITION_LAYERS, LAYERS


def condition_frame_mask(conditioning: str, frames_per_layer_latent: int) -> torch.Tensor:
    """Bool (len(LAYERS) * f,): True on latent frames of the condition sub-clip(s)."""
    cond = CONDITION_LAYERS[conditioning]
    return torch.tensor([name in cond for name in LAYERS for _ in range(frames_per_layer_latent)])


def _bcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))


def add_noise(alphas_cumprod: torch.Tensor, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
              cond_mask: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(a) x0 + sqrt(1-a) eps on generated frames; condition frames keep x0 exactly."""
    a = _bcast(alphas_cumprod[t.cpu()], latents)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    keep = cond_mask.to(latents.device).view(1, -1, *([1] * (latents.ndim - 2)))
    return torch.where(keep, latents, noisy)


def layerflow_loss(alphas_cumprod: torch.Tensor, v_pred: torch.Tensor, noisy: torch.Tensor,
                   latents: torch.Tensor, t: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
    """CogVideoX fine-tuning loss: x0 recovered from v, squared error weighted by 1/(1-a_t), averaged over
    the generated (non-condition) latent frames only."""
    a = _bcast(alphas_cumprod[t.cpu()], latents)
    x0_pred = a.sqrt() * noisy - (1 - a).sqrt() * v_pred.float()
    err = ((x0_pred - latents) ** 2).mean(dim=tuple(range(2, latents.ndim)))  # (B, F)
    weight = (1.0 / (1 - alphas_cumprod[t.cpu()])).to(err.device).view(-1, 1)
    gen = (~cond_mask).to(err.device, err.dtype).view(1, -1)
    return (weight * err * gen).sum() / (gen.sum() * err.shape[0])
