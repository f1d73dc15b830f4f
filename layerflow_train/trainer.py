"""Training loop shared by all stages: AdamW on fp32 master weights under bf16/fp16 autocast (frozen
weights in ``model.frozen_dtype``), grad accumulation, DDP or FSDP2, safetensors checkpoints with
optimizer/scheduler/RNG state, exact resume, all-reduced loss logging (TensorBoard, optional wandb) and
optional validation sampling.

Exact resume rests on two things: every random choice of a step (which samples, crop, noise, timestep)
is derived from (seed, step, micro-step, rank) instead of a running RNG, and the checkpoint restores
the trainable weights, AdamW moments and LR-scheduler position bit for bit.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from layerflow_train.config import TrainConfig
from layerflow_train.data.dataset import Example, LayeredDataset, sample_positions
from layerflow_train.data.precomputed import PrecomputedDataset, PrecomputedExample, precompute_fingerprint
from layerflow_train.diffusion import add_noise, condition_frame_mask, layerflow_loss
from layerflow_train.lora import LoRAAdapters
from layerflow_train.models.components import encode_layers, encode_text, frozen_dtype, load_components
from layerflow_train.models.layerflow import LayerFlowModel

log = logging.getLogger(__name__)
LATENT_FRAMES_PER_CHUNK = 2  # the CogVideoX VAE turns every 8 frames into 2 latent frames


@dataclass
class Batch:
    keys: list[str]
    latents: torch.Tensor       # (B, 4f, C, h, w), clean, scaled
    text: torch.Tensor          # (B, 3L, D) raw T5
    motion_scale: torch.Tensor  # (B,)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _step_generator(*parts: int) -> torch.Generator:
    seed = int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The loss every rank logs: the mean over all ranks, not rank 0's own."""
    if not _distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return float(t.item()) / torch.distributed.get_world_size()


def assert_same_step(step: int, device: torch.device) -> None:
    """Refuse to train when ranks resumed from different checkpoints (e.g. per-node local dirs)."""
    if not _distributed():
        return
    t = torch.tensor([step, -step], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    if int(t[0]) != step or -int(t[1]) != step:
        raise RuntimeError(f"ranks resumed from different steps (min {-int(t[1])}, max {int(t[0])}, this "
                           f"rank {step}): resume must read one shared checkpoint (Ray storage)")


class Trainer:
    def __init__(self, cfg: TrainConfig, recipe, rank: int = 0, world_size: int = 1,
                 device: torch.device | None = None,
                 report: Callable[[dict, Path | None], None] | None = None,
                 resume_from: Path | None = None, resume_local: bool = True):
        """``resume_from``: checkpoint directory to resume from (Ray: the run's checkpoint). Without it,
        ``checkpoint.resume`` resumes from the newest in ``<output_dir>/checkpoints`` if ``resume_local``
        (single-process runs; Ray passes False: its ranks resume from Ray storage only)."""
        self.cfg, self.recipe, self.rank, self.world_size, self.report = cfg, recipe, rank, world_size, report
        recipe.check(cfg)
        seed_everything(cfg.seed)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        d, o = cfg.data, cfg.optim
        self.precomputed = bool(d.precomputed_dir)
        need_encoders = not self.precomputed or cfg.validation.every_n_steps > 0
        self.comp = load_components(cfg.model, encoders=need_encoders, device=self.device)
        lora = LoRAAdapters(self.comp.transformer, cfg.lora) if recipe.uses_lora else None
        self.model = LayerFlowModel(self.comp.transformer, self.comp.layer_embedder, lora)
        recipe.prepare(self.model, cfg)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(o.mixed_precision)
        if self.device.type == "cpu" and not o.cpu_autocast:
            self.autocast_dtype = None
        if self.autocast_dtype is not None:  # frozen weights in low precision, trainable fp32 master
            low = frozen_dtype(cfg.model, self.device)
            for p in self.model.parameters():
                if not p.requires_grad:
                    p.data = p.data.to(low)
        self.comp.to(self.device)
        self.model.to(self.device)
        self.param_names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.forward_model = self.model
        if world_size > 1 and cfg.distributed == "fsdp":
            from layerflow_train.distributed import shard_fsdp2

            shard_fsdp2(self.model)
        elif world_size > 1:
            self.forward_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=o.lr, betas=o.betas, eps=o.eps,
                                           weight_decay=o.weight_decay)
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / o.warmup_steps) if o.warmup_steps else 1.0)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.dataset = (PrecomputedDataset(d, cfg.seed, precompute_fingerprint(cfg.model, d, cfg.seed))
                        if self.precomputed else LayeredDataset(d, cfg.seed))
        f_lat = d.frames_per_layer // 8 * LATENT_FRAMES_PER_CHUNK
        self.cond_mask = condition_frame_mask(cfg.conditioning, f_lat)
        self.alphas_cumprod = self.comp.scheduler.alphas_cumprod.float()
        self.num_train_timesteps = self.comp.scheduler.config.num_train_timesteps
        self.step = 0
        self.out_dir = Path(cfg.checkpoint.output_dir)
        #: Where checkpoints are written (Ray Train: a local temp dir, uploaded and deleted per report).
        self.checkpoint_root = self.out_dir / "checkpoints"
        self.last_grad_norm: float | None = None
        self.tracker = None
        if rank == 0:
            from layerflow_train.tracking import Tracker

            self.tracker = Tracker(cfg, self.out_dir)
        if resume_from is not None:
            self.resume(resume_from)
        elif cfg.checkpoint.resume and resume_local:
            self.resume()
        assert_same_step(self.step, self.device)

    # -- data -----------------------------------------------------------------------------------
    def examples(self, step: int, micro: int) -> list[Example | PrecomputedExample]:
        d = self.cfg.data
        positions = sample_positions(step, micro, self.cfg.optim.grad_accum, self.rank, self.world_size,
                                     d.batch_size)
        return [self.dataset.example(*self.dataset.locate(p)) for p in positions]

    def encode(self, examples: list[Example | PrecomputedExample]) -> Batch:
        latents, texts = [], []
        for ex in examples:
            if isinstance(ex, PrecomputedExample):
                z, txt = ex.latents, ex.text
            else:
                z = encode_layers(self.comp, torch.from_numpy(ex.pixels)[None].to(self.device))[0]
                txt = encode_text(self.comp, [ex.prompts], self.device)[0]
            latents.append(z.to(self.device))
            texts.append(txt.to(self.device))
        scales = torch.tensor([ex.motion_scale for ex in examples], dtype=torch.float32, device=self.device)
        return Batch([ex.key for ex in examples], torch.stack(latents), torch.stack(texts),
                     self.recipe.motion_scales(scales))

    def batch(self, step: int, micro: int) -> Batch:
        return self.encode(self.examples(step, micro))

    # -- optimisation ---------------------------------------------------------------------------
    def loss(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        b = batch.latents.shape[0]
        t = torch.randint(0, self.num_train_timesteps, (b,), generator=generator)
        noise = torch.randn(batch.latents.shape, generator=generator).to(self.device)
        noisy = add_noise(self.alphas_cumprod, batch.latents, noise, t, self.cond_mask)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            v = self.forward_model(noisy, batch.text, t.to(self.device), batch.motion_scale)
        return layerflow_loss(self.alphas_cumprod, v, noisy, batch.latents, t, self.cond_mask)

    def optimize(self, batches: list[Batch], generators: list[torch.Generator]) -> float:
        """One optimizer step over ``len(batches)`` accumulated micro-batches; returns their mean loss."""
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for i, (batch, gen) in enumerate(zip(batches, generators)):
            last = i == len(batches) - 1
            ddp = isinstance(self.forward_model, torch.nn.parallel.DistributedDataParallel)
            sync = self.forward_model.no_sync() if (ddp and not last) else nullcontext()
            with sync:
                loss = self.loss(batch, gen) / len(batches)
                self.scaler.scale(loss).backward()
            total += float(loss.detach())
        self.scaler.unscale_(self.optimizer)
        self.last_grad_norm = None
        if self.cfg.optim.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.max_grad_norm)
            self.last_grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.lr_schedule.step()
        return total

    def train_step(self) -> float:
        accum = self.cfg.optim.grad_accum
        batches = [self.batch(self.step, m) for m in range(accum)]
        gens = [_step_generator(self.cfg.seed, self.step, m, self.rank) for m in range(accum)]
        loss = self.optimize(batches, gens)
        self.step += 1
        return loss

    def fit(self, max_steps: int | None = None) -> list[float]:
        """Train until ``max_steps`` (default: config) and export the stage's artefacts."""
        max_steps = max_steps or self.cfg.optim.max_steps
        losses = []
        while self.step < max_steps:
            loss = self.train_step()
            losses.append(loss)
            # Same decision on every rank: Ray Train needs all workers to report equally often.
            is_ckpt_step = self.step % self.cfg.checkpoint.every_n_steps == 0 or self.step == max_steps
            ckpt = self.save_checkpoint() if is_ckpt_step else None
            if self.step % self.cfg.log_every == 0 or is_ckpt_step:
                metrics = {"step": self.step, "loss": mean_over_ranks(loss, self.device),
                           "lr": self.lr_schedule.get_last_lr()[0]}
                if self.last_grad_norm is not None:
                    metrics["grad_norm"] = self.last_grad_norm
                log.info("%s", metrics)
                if self.tracker:
                    self.tracker.log(metrics, self.step)
                if self.report:
                    self.report(metrics, ckpt)
            v = self.cfg.validation
            if v.every_n_steps and self.step % v.every_n_steps == 0 and self.rank == 0:
                self.validate()
        if max_steps >= self.cfg.optim.max_steps:
            self.export()
        if self.tracker:
            self.tracker.close()
        return losses

    def export(self) -> None:
        """The stage's artefacts into ``<output_dir>/final`` (rank 0; FSDP shards gathered first)."""
        model = self.model
        if self.world_size > 1 and self.cfg.distributed == "fsdp":
            from layerflow_train.distributed import gathered_copy

            model = gathered_copy(self.model, self.rank)
        if self.rank == 0:
            self.recipe.export(model, self.out_dir / "final")

    def validate(self) -> Path:
        """Sample the configured prompts with the current weights into ``validation/step-N``."""
        from layerflow_train.sample import LayerFlowSampler, SampleSettings, write_outputs

        v, d = self.cfg.validation, self.cfg.data
        sampler = LayerFlowSampler.from_model(self.comp, self.model, self.device, self.autocast_dtype)
        out = self.out_dir / "validation" / f"step-{self.step:08d}"
        was_training = self.model.training
        self.model.eval()
        try:
            for i, captions in enumerate(v.prompts):
                s = SampleSettings(d.frames_per_layer, d.height, d.width, v.num_steps, v.guidance_scale,
                                   self.cfg.seed + i, self.cfg.conditioning)
                if self.cfg.conditioning != "none":
                    raise ValueError("validation sampling of conditional variants needs condition videos")
                write_outputs(sampler.generate(captions, s), out / f"prompt-{i}", v.fps)
        finally:
            self.model.train(was_training)
            if self.model.lora is not None and "motion" in self.model.lora.adapters:
                self.model.lora.scales["motion"] = None
        return out

    # -- checkpoints ----------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        named = dict(self.model.named_parameters())
        return {n: named[n].detach().cpu().contiguous() for n in self.param_names}

    def full_trainable_state(self) -> dict[str, torch.Tensor]:
        """Trainable weights gathered from the FSDP shards (collective: every rank calls it)."""
        from layerflow_train.distributed import full_tensor

        named = dict(self.model.named_parameters())
        return {n: full_tensor(named[n]).detach().float().cpu().contiguous() for n in self.param_names}

    def optimizer_state(self) -> dict:
        if self.world_size > 1 and self.cfg.distributed == "fsdp":
            from layerflow_train.distributed import full_optimizer_state

            return full_optimizer_state(self.model, self.optimizer)
        return self.optimizer.state_dict()

    def save_checkpoint(self) -> Path | None:
        """Trainable weights only (the frozen rest is reproducible from the config); rank 0 writes."""
        fsdp = self.world_size > 1 and self.cfg.distributed == "fsdp"
        weights = self.full_trainable_state() if fsdp else None
        optim_state = self.optimizer_state()
        if self.rank != 0:
            return None
        from safetensors.torch import save_file

        root = self.checkpoint_root
        path = root / f"step-{self.step:08d}"
        tmp = root / f".tmp-step-{self.step:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(weights if weights is not None else self.trainable_state(), str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": optim_state, "lr_schedule": self.lr_schedule.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                            "torch": torch.get_rng_state(),
                            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}},
                   tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps({"step": self.step, "stage": self.cfg.stage,
                                                   "config": self.cfg.model_dump(mode="json")}, indent=1))
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
        for old in sorted(root.glob("step-*"))[:-self.cfg.checkpoint.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return path

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.checkpoint_root.glob("step-*"))
        return found[-1] if found else None

    def resume(self, path: Path | None = None) -> bool:
        from safetensors.torch import load_file

        path = path or self.latest_checkpoint()
        if path is None:
            return False
        weights = load_file(str(path / "trainable.safetensors"))
        if set(weights) != set(self.param_names):
            raise ValueError(f"{path}: trainable parameters differ from this recipe's (stage changed?)")
        state = torch.load(path / "state.pt", weights_only=False, map_location="cpu")
        if self.world_size > 1 and self.cfg.distributed == "fsdp":
            from layerflow_train.distributed import load_full_state

            load_full_state(self.model, self.optimizer, weights, state["optimizer"])
        else:
            named = dict(self.model.named_parameters())
            with torch.no_grad():
                for name, value in weights.items():
                    named[name].copy_(value)
            self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step = json.loads((path / "meta.json").read_text())["step"]
        log.info("resumed from %s at step %d", path, self.step)
        return True
