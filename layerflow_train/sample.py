"""LayerFlow sampling: 4-layer generation (fg, alpha, bg, blend) with CogVideoX DDIM and CFG.

Only the content adapter is loaded: the motion adapter exists to absorb the stillness of image data
during stage 3 and is dropped at inference. Conditional variants take the condition sub-clip from a
user video, keep its latents clean at every step and generate the other layers.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from layerflow_train.config import CONDITION_LAYERS, LAYERS, VAE_FRAME_CHUNK, LoraConfig, ModelConfig
from layerflow_train.data.layout import frame_indices, resize_frames
from layerflow_train.diffusion import condition_frame_mask
from layerflow_train.lora import LoRAAdapters
from layerflow_train.models.components import (
    decode_layers,
    encode_layers,
    encode_text,
    layer_prompts,
    load_components,
)
from layerflow_train.models.layerflow import LayerFlowModel


@dataclass
class SampleSettings:
    frames_per_layer: int = 16
    height: int = 480
    width: int = 720
    num_steps: int = 50
    guidance_scale: float = 6.0
    seed: int = 0
    conditioning: str = "none"


class LayerFlowSampler:
    def __init__(self, model_cfg: ModelConfig, lora_cfg: LoraConfig | None = None,
                 device: torch.device | None = None):
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.comp = load_components(model_cfg, device=self.device)  # VAE/T5 in model.frozen_dtype on CUDA
        lora = None
        if lora_cfg is not None and lora_cfg.content_weights:
            lora = LoRAAdapters(self.comp.transformer, lora_cfg)
            lora.load("content", lora_cfg.content_weights)
        self.model = LayerFlowModel(self.comp.transformer, self.comp.layer_embedder, lora).eval()
        self.comp.to(self.device)
        self.model.to(self.device)
        if self.device.type == "cuda":
            self.model.to(torch.bfloat16)
        self.autocast_dtype: torch.dtype | None = None

    @classmethod
    def from_model(cls, comp, model: LayerFlowModel, device: torch.device,
                   autocast_dtype: torch.dtype | None = None) -> LayerFlowSampler:
        """Sample with a model being trained (validation): shares its weights, adds no copy."""
        self = cls.__new__(cls)
        self.device, self.comp, self.model, self.autocast_dtype = device, comp, model, autocast_dtype
        return self

    def condition_latents(self, condition: dict[str, np.ndarray], s: SampleSettings) -> torch.Tensor:
        """User layers (uint8, any size/length) -> clean latents of all 4 groups (unused groups zero)."""
        needed = CONDITION_LAYERS[s.conditioning]
        missing = [n for n in needed if n not in condition]
        if missing:
            raise ValueError(f"conditioning={s.conditioning!r} needs condition layers {list(needed)}; "
                             f"missing {missing}")
        pixels = np.zeros((len(LAYERS), s.frames_per_layer, 3, s.height, s.width), np.float32)
        for i, name in enumerate(LAYERS):
            if name in needed:
                x = condition[name]
                x = np.repeat(x[..., None], 3, -1) if x.ndim == 3 else x
                x = resize_frames(x[frame_indices(len(x), s.frames_per_layer, 1, None)], s.height, s.width)
                pixels[i] = x.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
        return encode_layers(self.comp, torch.from_numpy(pixels)[None].to(self.device))

    @torch.no_grad()
    def generate(self, captions: dict[str, str], settings: SampleSettings,
                 condition: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        s = settings
        if s.frames_per_layer % VAE_FRAME_CHUNK:
            raise ValueError(f"frames_per_layer must be a multiple of {VAE_FRAME_CHUNK}")
        sched = self.comp.scheduler
        f_lat = s.frames_per_layer // 4
        vae_scale = 2 ** (len(self.comp.vae.config.block_out_channels) - 1)
        shape = (1, len(LAYERS) * f_lat, self.comp.latent_channels, s.height // vae_scale, s.width // vae_scale)
        gen = torch.Generator().manual_seed(s.seed)
        latents = (torch.randn(shape, generator=gen) * sched.init_noise_sigma).to(self.device)
        mask = condition_frame_mask(s.conditioning, f_lat).to(self.device).view(1, -1, 1, 1, 1)
        clean = self.condition_latents(condition or {}, s) if s.conditioning != "none" else None
        text = encode_text(self.comp, [layer_prompts({"fg": "", "bg": "", "blend": ""}), layer_prompts(captions)],
                           self.device)
        dtype = torch.float32 if self.autocast_dtype else next(self.model.parameters()).dtype
        amp = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
               else contextlib.nullcontext())
        sched.set_timesteps(s.num_steps, device=self.device)
        for t in sched.timesteps:
            if clean is not None:
                latents = torch.where(mask, clean, latents)
            inp = torch.cat([latents, latents]).to(dtype)
            with amp:
                v = self.model(inp, text.to(dtype), t.expand(2).to(self.device)).float()
            v_uncond, v_text = v.chunk(2)
            v = v_uncond + s.guidance_scale * (v_text - v_uncond)
            latents = sched.step(v, t, latents, return_dict=False)[0]
        if clean is not None:
            latents = torch.where(mask, clean, latents)
        video = decode_layers(self.comp, latents, len(LAYERS))[0]  # (4, T, 3, H, W)
        frames = ((video.permute(0, 1, 3, 4, 2).cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        fg, alpha3, bg, blend = frames
        return {"fg": fg, "alpha": alpha3.mean(-1).round().astype(np.uint8), "bg": bg, "blend": blend}


def encode_rgba_mov(fg: np.ndarray, alpha: np.ndarray, fps: float) -> bytes:
    """fg RGB + alpha -> lossless PNG-in-QuickTime RGBA (plays in editors that read alpha)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mov") as container:
        stream = container.add_stream("png", rate=round(fps) or 8)
        stream.width, stream.height, stream.pix_fmt = fg.shape[2], fg.shape[1], "rgba"
        for rgb, a in zip(fg, alpha):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.dstack([rgb, a])), format="rgba")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def write_outputs(result: dict[str, np.ndarray], out_dir: str | Path, fps: float = 8.0) -> dict[str, Path]:
    """fg_rgba.mov, fg.mp4 + alpha.mkv (the shard layout), bg.mp4, blend.mp4."""
    from dataset_builder.io.video import encode_alpha, encode_rgb

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blobs = {"fg_rgba.mov": encode_rgba_mov(result["fg"], result["alpha"], fps),
             "fg.mp4": encode_rgb(result["fg"], fps), "alpha.mkv": encode_alpha(result["alpha"], fps),
             "bg.mp4": encode_rgb(result["bg"], fps), "blend.mp4": encode_rgb(result["blend"], fps)}
    paths = {}
    for name, data in blobs.items():
        (out / name).write_bytes(data)
        paths[name] = out / name
    return paths
