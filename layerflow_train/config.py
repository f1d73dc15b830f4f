"""Typed training configuration, mirrored 1:1 by ``configs/train/*.yaml``.

One :class:`TrainConfig` drives every stage; the recipe (``stage``) decides what is trainable and how
samples are turned into batches. ``key=value`` overrides use dotted paths (``optim.lr=1e-3``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from dataset_builder.config import Strict, apply_overrides, load_yaml

#: Latent-frame groups in LayerFlow sub-clip order; text segments in prompt-prefix order.
LAYERS: tuple[str, ...] = ("fg", "alpha", "bg", "blend")
TEXT_SEGMENTS: tuple[str, ...] = ("fg", "bg", "blend")
#: Which sub-clips each conditional variant is given (kept clean, excluded from the loss).
CONDITION_LAYERS: dict[str, tuple[str, ...]] = {
    "none": (),
    "fg": ("fg", "alpha"),
    "bg": ("bg",),
    "decomposition": ("blend",),
}
#: The CogVideoX VAE encodes time in chunks of 8 frames (-> 2 latent frames each); a sub-clip that is a
#: multiple of 8 maps to its own whole latent frames, so layers never share a latent frame.
VAE_FRAME_CHUNK = 8


class TinyModelConfig(Strict):
    """Random tiny CogVideoX/VAE/T5 built locally (tests, laptops). Never used with real weights."""

    seed: int = 0
    num_layers: int = 2
    num_attention_heads: int = 2
    attention_head_dim: int = 8
    text_dim: int = 32
    latent_channels: int = 4
    vae_channels: int = 8


class ModelConfig(Strict):
    #: Diffusers-layout directory (transformer/, vae/, text_encoder/, tokenizer/, scheduler/). Relative
    #: paths resolve against $LAYERFLOW_MODEL_ROOT. Never a hub id: nothing is downloaded.
    model_dir: str
    #: Build a random tiny model into ``model_dir`` if it does not exist yet.
    tiny: TinyModelConfig | None = None
    #: Replace model_dir/transformer (e.g. the stage-1 export) and the layer embedder weights. Training
    #: outputs: relative to the working directory, not $LAYERFLOW_MODEL_ROOT.
    transformer_dir: str | None = None
    layer_embedder_path: str | None = None
    #: T5 tokens per text segment (226 for CogVideoX); the transformer sees len(TEXT_SEGMENTS) x this.
    text_len_per_layer: int = Field(226, ge=4)
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False


class DataConfig(Strict):
    #: Dataset roots (``<out>`` of the builder: committed shards are read) or shard files / globs.
    shards: list[str]
    frames_per_layer: int = 16
    height: int = 480
    width: int = 720
    frame_stride: int = 1
    #: Random temporal crop / static frame per epoch; False = deterministic views (cacheable).
    random_crop: bool = True
    #: Keep only samples of these kinds (schemas.LayeredSample.kind); empty = all.
    kinds: list[Literal["coarse", "copypaste", "static"]] = Field(default_factory=list)
    #: "all": every sample becomes a frame-duplicated static video (stage 2); "kind": only kind=="static".
    static: Literal["none", "kind", "all"] = "none"
    #: Fraction of non-static samples additionally turned into static videos (stage-3 joint data).
    static_fraction: float = Field(0.0, ge=0.0, le=1.0)
    batch_size: int = Field(1, ge=1)
    #: Probability of training a sample on empty captions ("0, ", "1, ", "2, "), the prompts of the
    #: unconditional branch of classifier-free guidance at sampling time.
    caption_dropout: float = Field(0.0, ge=0.0, le=1.0)
    #: Directory for precomputed VAE latents + T5 embeddings (safetensors); None = no cache.
    cache_dir: str | None = None

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.frames_per_layer % VAE_FRAME_CHUNK:
            raise ValueError(f"frames_per_layer must be a multiple of {VAE_FRAME_CHUNK} so each layer owns "
                             f"whole latent frames (got {self.frames_per_layer})")
        if self.height % 16 or self.width % 16:
            raise ValueError("height and width must be multiples of 16 (VAE x8, patch x2)")
        return self


class LoraConfig(Strict):
    rank: int = Field(64, ge=1)
    alpha: float = 64.0
    #: LoRA on every n-th transformer block (LayerFlow: 1/6 of the blocks).
    every_n_blocks: int = Field(6, ge=1)
    targets: list[str] = Field(default_factory=lambda: ["to_q", "to_k", "to_v"])
    #: Stage 3 loads the frozen stage-2 motion adapter from here.
    motion_weights: str | None = None
    #: Inference / continued training: content adapter weights.
    content_weights: str | None = None


class OptimConfig(Strict):
    lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    max_steps: int = Field(1000, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float = 1.0
    #: bf16 autocast is applied on CUDA only; CPU always runs fp32.
    mixed_precision: Literal["no", "bf16"] = "bf16"


class CheckpointConfig(Strict):
    output_dir: str
    every_n_steps: int = Field(500, ge=1)
    keep_last: int = Field(2, ge=1)
    #: Resume from the newest checkpoint in output_dir if one exists.
    resume: bool = True


class RayConfig(Strict):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = True
    cpus_per_worker: int = 1
    storage_path: str | None = None


class TrainConfig(Strict):
    stage: Literal[1, 2, 3]
    conditioning: Literal["none", "fg", "bg", "decomposition"] = "none"
    seed: int = 0
    log_every: int = Field(10, ge=1)
    model: ModelConfig
    data: DataConfig
    lora: LoraConfig = Field(default_factory=LoraConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.stage == 3 and not self.lora.motion_weights:
            raise ValueError("stage 3 needs lora.motion_weights (the stage-2 motion adapter)")
        return self

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:12]


def resolve_model_path(path: str) -> Path:
    """Relative model paths are resolved against $LAYERFLOW_MODEL_ROOT (default: current directory)."""
    p = Path(os.path.expanduser(path))
    if not p.is_absolute():
        p = Path(os.environ.get("LAYERFLOW_MODEL_ROOT", ".")) / p
    return p


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    return TrainConfig.model_validate(apply_overrides(load_yaml(path), overrides or []))
