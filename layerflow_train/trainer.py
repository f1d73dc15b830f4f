"""Training loop shared by all stages: AdamW, grad accumulation, bf16 autocast on CUDA only, safetensors
checkpoints with optimizer/scheduler/RNG state, and exact resume.

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

from layerflow_train.config import TrainConfig, resolve_model_path
from layerflow_train.data.cache import LatentCache
from layerflow_train.data.dataset import Example, LayeredDataset, position_to_index, sample_positions
from layerflow_train.diffusion import add_noise, condition_frame_mask, layerflow_loss
from layerflow_train.lora import LoRAAdapters
from layerflow_train.models.components import encode_layers, encode_text, load_components
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


class Trainer:
    def __init__(self, cfg: TrainConfig, recipe, rank: int = 0, world_size: int = 1,
                 device: torch.device | None = None,
                 report: Callable[[dict, Path | None], None] | None = None):
        self.cfg, self.recipe, self.rank, self.world_size, self.report = cfg, recipe, rank, world_size, report
        recipe.check(cfg)
        seed_everything(cfg.seed)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.comp = load_components(cfg.model)
        lora = LoRAAdapters(self.comp.transformer, cfg.lora) if recipe.uses_lora else None
        self.model = LayerFlowModel(self.comp.transformer, self.comp.layer_embedder, lora)
        recipe.prepare(self.model, cfg)
        self.comp.to(self.device)
        self.model.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.param_names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.forward_model = self.model
        if world_size > 1:
            self.forward_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(self.params, lr=o.lr, betas=o.betas, eps=o.eps,
                                           weight_decay=o.weight_decay)
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / o.warmup_steps) if o.warmup_steps else 1.0)
        self.dataset = LayeredDataset(cfg.data, cfg.seed)
        self.cache = (LatentCache(cfg.data.cache_dir, f"{resolve_model_path(cfg.model.model_dir).resolve()}"
                                  f"|{cfg.model.text_len_per_layer}") if cfg.data.cache_dir else None)
        f_lat = cfg.data.frames_per_layer // 8 * LATENT_FRAMES_PER_CHUNK
        self.cond_mask = condition_frame_mask(cfg.conditioning, f_lat)
        self.alphas_cumprod = self.comp.scheduler.alphas_cumprod.float()
        self.num_train_timesteps = self.comp.scheduler.config.num_train_timesteps
        self.step = 0
        self.out_dir = Path(cfg.checkpoint.output_dir)
        if cfg.checkpoint.resume:
            self.resume()

    # -- data -----------------------------------------------------------------------------------
    def examples(self, step: int, micro: int) -> list[Example]:
        d = self.cfg.data
        positions = sample_positions(step, micro, self.cfg.optim.grad_accum, self.rank, self.world_size,
                                     d.batch_size)
        return [self.dataset.example(*position_to_index(p, len(self.dataset), self.cfg.seed)) for p in positions]

    def encode(self, examples: list[Example]) -> Batch:
        latents, texts = [], []
        for ex in examples:
            hit = self.cache.get(ex.key, ex.view, ex.prompts) if self.cache else None
            if hit is None:
                pixels = torch.from_numpy(ex.pixels)[None].to(self.device)
                z = encode_layers(self.comp, pixels)[0]
                txt = encode_text(self.comp, [ex.prompts], self.device)[0]
                if self.cache:
                    self.cache.put(ex.key, ex.view, ex.prompts, z, txt)
            else:
                z, txt = hit
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
        use_bf16 = self.device.type == "cuda" and self.cfg.optim.mixed_precision == "bf16"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            v = self.forward_model(noisy, batch.text, t.to(self.device), batch.motion_scale)
        return layerflow_loss(self.alphas_cumprod, v, noisy, batch.latents, t, self.cond_mask)

    def optimize(self, batches: list[Batch], generators: list[torch.Generator]) -> float:
        """One optimizer step over ``len(batches)`` accumulated micro-batches; returns their mean loss."""
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for i, (batch, gen) in enumerate(zip(batches, generators)):
            last = i == len(batches) - 1
            sync = self.forward_model.no_sync() if (self.world_size > 1 and not last) else nullcontext()
            with sync:
                loss = self.loss(batch, gen) / len(batches)
                loss.backward()
            total += float(loss.detach())
        if self.cfg.optim.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.max_grad_norm)
        self.optimizer.step()
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
                metrics = {"step": self.step, "loss": loss, "lr": self.lr_schedule.get_last_lr()[0]}
                log.info("%s", metrics)
                if self.report:
                    self.report(metrics, ckpt)
        if self.rank == 0 and max_steps >= self.cfg.optim.max_steps:
            self.recipe.export(self.model, self.out_dir / "final")
        return losses

    # -- checkpoints ----------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        named = dict(self.model.named_parameters())
        return {n: named[n].detach().cpu().contiguous() for n in self.param_names}

    def save_checkpoint(self) -> Path | None:
        if self.rank != 0:
            return None
        from safetensors.torch import save_file

        root = self.out_dir / "checkpoints"
        path = root / f"step-{self.step:08d}"
        tmp = root / f".tmp-step-{self.step:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(self.trainable_state(), str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": self.optimizer.state_dict(), "lr_schedule": self.lr_schedule.state_dict(),
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
        found = sorted((self.out_dir / "checkpoints").glob("step-*"))
        return found[-1] if found else None

    def resume(self, path: Path | None = None) -> bool:
        from safetensors.torch import load_file

        path = path or self.latest_checkpoint()
        if path is None:
            return False
        weights = load_file(str(path / "trainable.safetensors"))
        if set(weights) != set(self.param_names):
            raise ValueError(f"{path}: trainable parameters differ from this recipe's (stage changed?)")
        named = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                named[name].copy_(value)
        state = torch.load(path / "state.pt", weights_only=False, map_location="cpu")
        self.optimizer.load_state_dict(state["optimizer"])
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
