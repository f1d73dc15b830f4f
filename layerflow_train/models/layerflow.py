"""The trainable LayerFlow module: transformer + layer embedder + LoRA adapters, one ``nn.Module`` so
DDP sees every trainable parameter."""

from __future__ import annotations

import torch
from torch import nn

from layerflow_train.lora import LoRAAdapters
from layerflow_train.models.components import LayerEmbedder


class LayerFlowModel(nn.Module):
    def __init__(self, transformer: nn.Module, layer_embedder: LayerEmbedder, lora: LoRAAdapters | None = None):
        super().__init__()
        self.transformer = transformer
        self.layer_embedder = layer_embedder
        self.lora = lora

    def forward(self, latents: torch.Tensor, text: torch.Tensor, timesteps: torch.Tensor,
                motion_scale: torch.Tensor | float | None = None) -> torch.Tensor:
        """latents (B, F, C, h, w), raw T5 text (B, 3L, D), timesteps (B,) -> v-prediction (B, F, C, h, w).

        ``motion_scale`` (per sample) scales the motion adapter; None leaves it disabled.
        """
        text = self.layer_embedder(text.to(self.layer_embedder.embedding.dtype))
        if self.lora is not None and "motion" in self.lora.adapters:
            # Set, not scoped: with gradient checkpointing the blocks (and the LoRA hooks) run again during
            # backward, after this returns, and must see this batch's per-sample scale again.
            self.lora.scales["motion"] = motion_scale
        return self._run(latents, text, timesteps)

    def _run(self, latents: torch.Tensor, text: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.transformer(hidden_states=latents, encoder_hidden_states=text, timestep=timesteps,
                                return_dict=False)[0]
