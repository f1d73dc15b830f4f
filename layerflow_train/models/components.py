"""Load CogVideoX components from a local diffusers-layout directory, with LayerFlow's enlarged text.

The transformer sees the concatenation of three T5 segments (fg, bg, blend), so its
``max_text_seq_length`` grows to ``3 x text_len_per_layer``. In CogVideoX-2B the joint positional table
is a *non-persistent* sincos buffer whose first ``max_text_seq_length`` rows are zeros for text, so the
pretrained weights load unchanged under the enlarged config: only the buffer is rebuilt. Models with
learned positional tables (5B-I2V) or rotary embeddings (5B) need different handling and are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from layerflow_train.config import TEXT_SEGMENTS, ModelConfig, resolve_model_path

SUBFOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")


class LayerEmbedder(nn.Module):
    """One learnable vector per text segment, added to every token of that segment.

    Zero-initialised so step 0 reproduces the base model on the "0, "/"1, "/"2, " prefixed prompts.
    """

    def __init__(self, num_segments: int, dim: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(num_segments, dim))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """``text``: (B, num_segments * L, D) -> same shape with segment embeddings added."""
        b, n, d = text.shape
        s = self.embedding.shape[0]
        return (text.view(b, s, n // s, d) + self.embedding[None, :, None, :].to(text.dtype)).view(b, n, d)


@dataclass
class Components:
    """``vae`` / ``text_encoder`` / ``tokenizer`` are None when training from precomputed latents."""

    transformer: nn.Module | None
    vae: nn.Module | None
    text_encoder: nn.Module | None
    tokenizer: object
    scheduler: object
    layer_embedder: LayerEmbedder
    text_len_per_layer: int

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    def to(self, device: torch.device) -> Components:
        for m in (self.transformer, self.vae, self.text_encoder, self.layer_embedder):
            if m is not None:
                m.to(device)
        return self


def model_dir_for(cfg: ModelConfig) -> Path:
    """Resolve ``model_dir``; build the tiny random model there if configured; else it must exist."""
    root = resolve_model_path(cfg.model_dir)
    if cfg.tiny is not None and not (root / "transformer" / "config.json").exists():
        from layerflow_train.models.tiny import build_tiny_model_dir

        build_tiny_model_dir(root, cfg.tiny, cfg.text_len_per_layer)
    missing = [s for s in SUBFOLDERS if not (root / s).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"model directory {root} is missing {missing} (model_dir={cfg.model_dir!r}, "
            f"$LAYERFLOW_MODEL_ROOT={__import__('os').environ.get('LAYERFLOW_MODEL_ROOT')!r}). Put a "
            f"diffusers-layout CogVideoX-2B there; weights are never downloaded.")
    return root


def frozen_dtype(cfg: ModelConfig, device: torch.device) -> torch.dtype:
    """dtype of frozen weights: ``model.frozen_dtype`` on CUDA, fp32 on CPU (slow, and tests compare)."""
    return getattr(torch, cfg.frozen_dtype) if device.type == "cuda" else torch.float32


def load_components(cfg: ModelConfig, transformer: bool = True, encoders: bool = True,
                    device: torch.device | None = None) -> Components:
    """The CogVideoX parts from ``model_dir``. ``encoders=False`` skips VAE + T5 (precomputed latents:
    ~19 GB of T5-XXL never loaded); ``transformer=False`` is the precompute job. VAE and T5 load in
    :func:`frozen_dtype` with the configured VAE slicing/tiling."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import AutoTokenizer, T5EncoderModel

    root = model_dir_for(cfg)
    dtype = frozen_dtype(cfg, device or torch.device("cpu"))
    remote = {"trust_remote_code": True} if cfg.trust_remote_code else {}
    text_len = len(TEXT_SEGMENTS) * cfg.text_len_per_layer
    net = None
    if transformer:
        tdir = Path(cfg.transformer_dir) if cfg.transformer_dir else root / "transformer"
        net = CogVideoXTransformer3DModel.from_pretrained(tdir, max_text_seq_length=text_len,
                                                          local_files_only=True)
        tc = net.config
        if tc.use_rotary_positional_embeddings or tc.use_learned_positional_embeddings:
            raise ValueError(f"{tdir}: only sincos-positional CogVideoX (2B) is supported; rotary/learned "
                             "positional tables need per-layer text handling not implemented here")
        if cfg.gradient_checkpointing:
            net.enable_gradient_checkpointing()
        text_dim = tc.text_embed_dim
    else:
        text_dim = json.loads((root / "transformer" / "config.json").read_text())["text_embed_dim"]
    vae = text_encoder = tokenizer = None
    if encoders:
        vae = AutoencoderKLCogVideoX.from_pretrained(root / "vae", local_files_only=True, torch_dtype=dtype)
        if cfg.vae_slicing:
            vae.enable_slicing()
        if cfg.vae_tiling:
            vae.enable_tiling()
        text_encoder = T5EncoderModel.from_pretrained(root / "text_encoder", local_files_only=True,
                                                      dtype=dtype, **remote)
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True, **remote)
        for frozen in (vae, text_encoder):
            frozen.requires_grad_(False).eval()
    scheduler = CogVideoXDDIMScheduler.from_pretrained(root / "scheduler", local_files_only=True)
    embedder = LayerEmbedder(len(TEXT_SEGMENTS), text_dim)
    if cfg.layer_embedder_path:
        from safetensors.torch import load_file

        embedder.load_state_dict(load_file(cfg.layer_embedder_path))
    return Components(net, vae, text_encoder, tokenizer, scheduler, embedder, cfg.text_len_per_layer)


def layer_prompts(captions: dict[str, str]) -> list[str]:
    """LayerFlow prompts: "0, <fg>", "1, <bg>", "2, <blend>". The alpha sub-clip shares the fg prompt:
    alpha is the fg object's matte, and a 4th segment would cost 226 more tokens per attention call."""
    return [f"{i}, {captions[name]}" for i, name in enumerate(TEXT_SEGMENTS)]


@torch.no_grad()
def encode_text(comp: Components, prompts: list[list[str]], device: torch.device) -> torch.Tensor:
    """T5 embeddings of B x 3 prompts -> (B, 3 * L, D), before the (trainable) layer embedding."""
    flat = [p for per_sample in prompts for p in per_sample]
    ids = comp.tokenizer(flat, padding="max_length", max_length=comp.text_len_per_layer, truncation=True,
                         add_special_tokens=True, return_tensors="pt").input_ids.to(device)
    emb = comp.text_encoder(ids).last_hidden_state  # CogVideoX passes no attention mask either
    return emb.reshape(len(prompts), -1, emb.shape[-1]).float()


@torch.no_grad()
def encode_layers(comp: Components, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 4, T, 3, H, W) in [-1, 1] -> latents (B, 4 * f, C, h, w), each layer encoded on its own so
    the causal VAE never mixes layers and every layer owns exactly ``f`` latent frames."""
    b, n, t, c, h, w = pixels.shape
    x = pixels.reshape(b * n, t, c, h, w).permute(0, 2, 1, 3, 4).to(comp.vae.dtype)
    z = comp.vae.encode(x).latent_dist.mode() * comp.vae.config.scaling_factor  # (bn, C, f, h, w)
    z = z.permute(0, 2, 1, 3, 4)
    return z.reshape(b, n * z.shape[1], *z.shape[2:]).float()


@torch.no_grad()
def decode_layers(comp: Components, latents: torch.Tensor, num_layers: int) -> torch.Tensor:
    """Inverse of :func:`encode_layers`: (B, n * f, C, h, w) -> (B, n, T, 3, H, W) in [-1, 1]."""
    b, nf = latents.shape[:2]
    z = latents.reshape(b * num_layers, nf // num_layers, *latents.shape[2:]).permute(0, 2, 1, 3, 4)
    x = comp.vae.decode(z.to(comp.vae.dtype) / comp.vae.config.scaling_factor).sample  # (bn, 3, T, H, W)
    x = x.permute(0, 2, 1, 3, 4).float().clamp(-1, 1)
    return x.reshape(b, num_layers, *x.shape[1:])
