"""Per-GPU memory estimate of a training config, from parameter counts of the model built on the meta
device (no weights loaded, no memory used), printed at start-up so a user knows before launch whether
a stage fits.

Counted: frozen weights in ``model.frozen_dtype`` (fp32 without autocast); trainable weights as fp32
master + fp32 grad + two fp32 AdamW moments (16 B/param); VAE + T5 unless the config trains from
precomputed latents; FSDP divides weights, grads and optimizer states by the world size. Not counted:
activations (with gradient checkpointing about one block's worth per micro-batch) and the CUDA context.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from layerflow_train.config import TEXT_SEGMENTS, TrainConfig, resolve_model_path

#: Reference configs of the full-size model (diffusers layout of CogVideoX-2B, T5 v1.1 XXL encoder), used
#: when ``model_dir`` has no config of its own (e.g. estimating before the weights are downloaded).
COGVIDEOX_2B_TRANSFORMER = {
    "num_attention_heads": 30, "attention_head_dim": 64, "in_channels": 16, "out_channels": 16,
    "flip_sin_to_cos": True, "freq_shift": 0, "time_embed_dim": 512, "text_embed_dim": 4096, "num_layers": 30,
    "dropout": 0.0, "attention_bias": True, "sample_width": 90, "sample_height": 60, "sample_frames": 49,
    "patch_size": 2, "temporal_compression_ratio": 4, "max_text_seq_length": 226,
    "activation_fn": "gelu-approximate", "timestep_activation_fn": "silu", "norm_elementwise_affine": True,
    "norm_eps": 1e-5, "spatial_interpolation_scale": 1.875, "temporal_interpolation_scale": 1.0,
    "use_rotary_positional_embeddings": False, "use_learned_positional_embeddings": False,
}
T5_XXL_ENCODER = {"vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24,
                  "num_heads": 64, "relative_attention_num_buckets": 32, "feed_forward_proj": "gated-gelu",
                  "is_gated_act": True}
COGVIDEOX_2B_VAE = {"block_out_channels": [128, 256, 256, 512], "latent_channels": 16, "layers_per_block": 3,
                    "norm_num_groups": 32, "temporal_compression_ratio": 4}
GIB = 1024 ** 3


@dataclass
class MemoryEstimate:
    source: str  # where the model configs came from
    stage: int
    distributed: str
    world_size: int
    transformer_params: int
    trainable_params: int
    encoder_params: int  # VAE + T5 on each GPU (0 with precomputed latents)
    frozen_bytes_per_param: int
    gib_weights: float
    gib_trainable_states: float
    gib_encoders: float

    @property
    def gib_total(self) -> float:
        return self.gib_weights + self.gib_trainable_states + self.gib_encoders

    def summary(self) -> str:
        return (f"memory estimate stage {self.stage} ({self.distributed}, {self.world_size} GPU(s)): "
                f"{self.trainable_params / 1e6:.1f} M of {self.transformer_params / 1e6:.1f} M transformer "
                f"params train; per GPU {self.gib_weights:.1f} GiB frozen weights + "
                f"{self.gib_trainable_states:.1f} GiB trainable weights/grads/AdamW + {self.gib_encoders:.1f} "
                f"GiB VAE/T5 = {self.gib_total:.1f} GiB before activations [{self.source}]")

    def as_dict(self) -> dict:
        return {**asdict(self), "gib_total": self.gib_total}


def _config(root: Path | None, sub: str, fallback: dict) -> dict:
    path = root / sub / "config.json" if root is not None else None
    if path is not None and path.is_file():
        return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    return dict(fallback)


def _meta_model(cfg: TrainConfig, transformer_cfg: dict):
    from diffusers import CogVideoXTransformer3DModel

    from layerflow_train.lora import LoRAAdapters
    from layerflow_train.models.components import LayerEmbedder
    from layerflow_train.models.layerflow import LayerFlowModel
    from layerflow_train.recipes import RECIPES

    recipe = RECIPES[cfg.stage]()
    with torch.device("meta"):
        transformer = CogVideoXTransformer3DModel.from_config(
            {**transformer_cfg, "max_text_seq_length": len(TEXT_SEGMENTS) * cfg.model.text_len_per_layer})
        lora = LoRAAdapters(transformer, cfg.lora) if recipe.uses_lora else None
        model = LayerFlowModel(transformer, LayerEmbedder(len(TEXT_SEGMENTS), transformer.config.text_embed_dim),
                               lora)
        recipe.prepare(model, cfg, load_weights=False)
    return model


def count_encoders(root: Path | None) -> int:
    from diffusers import AutoencoderKLCogVideoX
    from transformers import T5Config, T5EncoderModel

    with torch.device("meta"):
        vae = AutoencoderKLCogVideoX.from_config(_config(root, "vae", COGVIDEOX_2B_VAE))
        t5 = T5EncoderModel(T5Config(**_config(root, "text_encoder", T5_XXL_ENCODER)))
    return sum(p.numel() for p in vae.parameters()) + sum(p.numel() for p in t5.parameters())


def estimate_for_config(cfg: TrainConfig, world_size: int | None = None, full_size: bool = False) -> MemoryEstimate:
    """``full_size``: ignore ``model_dir`` and use the reference CogVideoX-2B / T5-XXL configs."""
    root = None if full_size else resolve_model_path(cfg.model.model_dir)
    if root is not None and cfg.model.tiny is not None:
        from layerflow_train.models.components import model_dir_for

        model_dir_for(cfg.model)  # builds the tiny random model on first use, as training would
    source = "model_dir" if root is not None and (root / "transformer" / "config.json").is_file() \
        else "reference CogVideoX-2B/T5-XXL configs"
    tcfg = _config(root, "transformer", COGVIDEOX_2B_TRANSFORMER)
    model = _meta_model(cfg, tcfg)
    world = world_size or cfg.ray.num_workers
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    low_precision = cfg.optim.mixed_precision != "no"
    frozen_bytes = (2 if cfg.model.frozen_dtype != "float32" else 4) if low_precision else 4
    shard = world if cfg.distributed == "fsdp" else 1
    encoders = 0 if cfg.data.precomputed_dir and not cfg.validation.every_n_steps else count_encoders(root)
    return MemoryEstimate(
        source=source, stage=cfg.stage, distributed=cfg.distributed, world_size=world, transformer_params=total,
        trainable_params=trainable, encoder_params=encoders, frozen_bytes_per_param=frozen_bytes,
        gib_weights=(total - trainable) * frozen_bytes / shard / GIB,
        gib_trainable_states=trainable * 16 / shard / GIB,
        gib_encoders=encoders * frozen_bytes / GIB)
