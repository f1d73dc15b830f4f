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
    #: On by default: the authors train the 2B with ``checkpoint_activations: True``; off only for tiny models.
    gradient_checkpointing: bool = True
    #: dtype of the frozen parts (VAE, T5, frozen transformer weights) on CUDA; trainable weights stay fp32
    #: (master weights) and run under ``optim.mixed_precision`` autocast. CPU always keeps fp32.
    frozen_dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    #: VAE memory savers (diffusers): slicing encodes the 4 layers one at a time; tiling splits frames
    #: spatially (changes latents slightly at tile seams, so off by default for training data).
    vae_slicing: bool = True
    vae_tiling: bool = False


class DataConfig(Strict):
    #: Dataset roots (``<out>`` of the builder: committed shards are read) or shard files / globs.
    shards: list[str]
    frames_per_layer: int = 16
    height: int = 480
    width: int = 720
    frame_stride: int = 1
    #: Random temporal crop / static frame per epoch; False = deterministic (centred) views.
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
    #: Authors' ``ucg_rate: 0.1``.
    caption_dropout: float = Field(0.1, ge=0.0, le=1.0)
    #: Sampling weight per sample kind (e.g. stage 3 ``{static: 1, copypaste: 1}``): each batch slot draws
    #: a kind by weight, then a sample of that kind (with replacement). Empty = every sample once per
    #: epoch, i.e. the kinds in their natural proportion (the authors concatenate their datasets).
    kind_weights: dict[Literal["coarse", "copypaste", "static"], float] = Field(default_factory=dict)
    #: Output of ``workflows/precompute.py`` (Parquet: VAE latents + T5 embeddings per recorded crop).
    #: When set, training reads it instead of decoding videos and loads neither VAE nor T5.
    precomputed_dir: str | None = None
    #: Deterministic crops (views) precomputed per sample; epoch e trains view e % views.
    precompute_views: int = Field(1, ge=1)
    #: Storage dtype of precomputed tensors (bf16 halves the ~5.5 MB of T5 per sample).
    precompute_dtype: Literal["float32", "bfloat16"] = "bfloat16"

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.frames_per_layer % VAE_FRAME_CHUNK:
            raise ValueError(f"frames_per_layer must be a multiple of {VAE_FRAME_CHUNK} so each layer owns "
                             f"whole latent frames (got {self.frames_per_layer})")
        if self.height % 16 or self.width % 16:
            raise ValueError("height and width must be multiples of 16 (VAE x8, patch x2)")
        if self.kind_weights and (min(self.kind_weights.values()) < 0 or sum(self.kind_weights.values()) <= 0):
            raise ValueError("data.kind_weights must be >= 0 with a positive sum")
        return self


class BlockSelection(Strict):
    """Transformer blocks ``i`` with ``i % every_n_blocks == block_offset``. The authors' default
    (``% 6 == 5``: blocks 5, 11, 17, 23, 29 of 30) is the paper's "trainable 1/6 blocks"."""

    every_n_blocks: int = Field(6, ge=1)
    block_offset: int = Field(5, ge=0)

    @model_validator(mode="after")
    def _check_offset(self) -> BlockSelection:
        if self.block_offset >= self.every_n_blocks:
            raise ValueError("block_offset must be < every_n_blocks")
        return self

    def selects(self, index: int) -> bool:
        return index % self.every_n_blocks == self.block_offset

    def indices(self, num_layers: int) -> list[int]:
        return [i for i in range(num_layers) if self.selects(i)]


class LoraConfig(BlockSelection):
    """Authors' ``sat/lora.py``: ``lora_alpha=1``, ``motion_r=8``, ``spatial_r=256`` (content), so the
    update is scaled by alpha/rank = 1/8 (motion) and 1/256 (content); LoRA on the fused QKV and the
    attention output projection ``dense`` (diffusers: ``to_q/to_k/to_v`` + ``to_out.0``) of the trained
    blocks (``% 6 == 5``)."""

    alpha: float = Field(1.0, gt=0)
    motion_rank: int = Field(8, ge=1)
    content_rank: int = Field(256, ge=1)
    #: Module-name suffixes inside ``transformer_blocks.<i>.attn1``.
    targets: list[str] = Field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
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
    #: Authors' deepspeed ``gradient_clipping: 0.1``; 0 disables clipping.
    max_grad_norm: float = Field(0.1, ge=0)
    #: Autocast dtype of the forward pass (trainable weights stay fp32; fp16 adds a GradScaler).
    #: Applied on CUDA; on CPU only with ``cpu_autocast`` (tests), since CPU bf16 is slow.
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"
    cpu_autocast: bool = False


class CheckpointConfig(Strict):
    output_dir: str
    every_n_steps: int = Field(500, ge=1)
    keep_last: int = Field(2, ge=1)
    #: Resume from the newest checkpoint (Ray: the run's checkpoint on shared storage) if one exists.
    resume: bool = True


class RayConfig(Strict):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = True
    cpus_per_worker: int = 1
    #: Ray Train storage (checkpoints; shared storage, e.g. s3:// or NFS, on multi-node clusters).
    #: Default: ``<checkpoint.output_dir>/ray``.
    storage_path: str | None = None
    #: Ray run name; a run with the same name and storage resumes from its newest checkpoint.
    name: str | None = None


class TrainableConfig(BlockSelection):
    """What trains besides the stage's adapters. Stage 1 fine-tunes the selected blocks (authors'
    ``part_6_txt``: blocks ``% 6 == 5`` incl. their adaLN/QK-norm weights + the layer embedder; patch
    embedding, time embedding and output layer stay frozen). ``every_n_blocks: 1`` trains all blocks."""

    #: Authors train the layer (text-segment) embedder in every stage (``*_part_6_txt``).
    layer_embedder: bool = True


class ValidationConfig(Strict):
    """Sample layered videos during training (rank 0) into ``<output_dir>/validation/step-N``."""

    every_n_steps: int = Field(0, ge=0)  # 0 = off
    prompts: list[dict[str, str]] = Field(default_factory=list)  # [{fg, bg, blend}, ...]
    num_steps: int = Field(50, ge=1)
    guidance_scale: float = 6.0
    fps: float = 8.0


class TrackingConfig(Strict):
    tensorboard: bool = True  # <output_dir>/tensorboard
    wandb: bool = False
    wandb_project: str = "layerflow"


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
    trainable: TrainableConfig = Field(default_factory=TrainableConfig)
    #: ddp: every rank holds all weights; fsdp: torch FSDP2 ``fully_shard`` per block (full-block training).
    distributed: Literal["ddp", "fsdp"] = "ddp"
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.stage == 3 and not self.lora.motion_weights:
            raise ValueError("stage 3 needs lora.motion_weights (the stage-2 motion adapter)")
        if self.validation.every_n_steps and not self.validation.prompts:
            raise ValueError("validation.every_n_steps needs validation.prompts")
        if self.validation.every_n_steps and self.distributed == "fsdp":
            raise ValueError("validation sampling runs on rank 0 only: not with distributed: fsdp")
        if self.validation.every_n_steps and self.conditioning != "none":  # else it fails at step N, not at start
            raise ValueError("validation sampling of conditional variants needs condition videos: "
                             "set validation.every_n_steps: 0")
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
