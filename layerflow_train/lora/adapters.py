"""Motion and Content LoRA with an exact per-sample scale.

Why not peft: peft scales an adapter per module with one scalar, but a stage-3 batch mixes static
videos (motion scale 1) and copy-paste videos (motion scale 0), so the motion delta needs a per-sample
scale. Adapters here are forward hooks on the target ``nn.Linear`` layers (``to_q/to_k/to_v`` of every
n-th block): the transformer's own modules and state-dict keys stay untouched, and a scale of 0 adds an
exact 0 (or skips the adapter), so "motion scale 0" is bit-identical to "motion adapter disabled".
Saved files use peft/diffusers key names (``transformer.<module>.lora_A.weight`` / ``lora_B.weight``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from layerflow_train.config import LoraConfig

_PREFIX = "transformer."


#: Adapter name -> LoraConfig field holding its rank.
RANK_FIELDS = {"motion": "motion_rank", "content": "content_rank"}


def target_module_names(transformer: nn.Module, cfg: LoraConfig) -> list[str]:
    """``transformer_blocks.{i}.attn1.<target>`` for the selected blocks i (authors: i % 6 == 5)."""
    names = []
    for name, module in transformer.named_modules():
        parts = name.split(".")
        if (len(parts) >= 4 and parts[0] == "transformer_blocks" and parts[2] == "attn1"
                and ".".join(parts[3:]) in cfg.targets and cfg.selects(int(parts[1]))
                and isinstance(module, nn.Linear)):
            names.append(name)
    if not names:
        raise ValueError(f"no LoRA targets {cfg.targets} in blocks i % {cfg.every_n_blocks} == "
                         f"{cfg.block_offset} of the transformer")
    return names


class LoRAPair(nn.Module):
    def __init__(self, base: nn.Linear, rank: int):
        super().__init__()
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)  # adapter starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_B(self.lora_A(x.to(self.lora_A.weight.dtype)))


class LoRAAdapters(nn.Module):
    """Named adapters ("motion", "content") hooked into one transformer.

    ``scales[name]`` is None (disabled), a float, or a (B,) tensor applied per sample. Each adapter has
    its own rank (``lora.motion_rank`` / ``lora.content_rank``) and scaling ``lora.alpha / rank``.
    """

    def __init__(self, transformer: nn.Module, cfg: LoraConfig):
        super().__init__()
        self.cfg = cfg
        self.scaling: dict[str, float] = {}
        self.targets = target_module_names(transformer, cfg)
        self.adapters = nn.ModuleDict()
        self.scales: dict[str, float | torch.Tensor | None] = {}
        modules = dict(transformer.named_modules())
        self._bases = {name: modules[name] for name in self.targets}
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in self.targets]

    @staticmethod
    def _key(module_name: str) -> str:
        return module_name.replace(".", "__")

    def rank_of(self, name: str) -> int:
        if name not in RANK_FIELDS:
            raise ValueError(f"unknown adapter {name!r} (known: {sorted(RANK_FIELDS)})")
        return getattr(self.cfg, RANK_FIELDS[name])

    def add(self, name: str) -> None:
        if name in self.adapters:
            raise ValueError(f"adapter {name!r} exists")
        rank = self.rank_of(name)
        self.scaling[name] = self.cfg.alpha / rank
        self.adapters[name] = nn.ModuleDict(
            {self._key(t): LoRAPair(self._bases[t], rank) for t in self.targets})
        ref = next(iter(self._bases.values())).weight
        self.adapters[name].to(device=ref.device)
        self.scales[name] = 1.0

    def _hook(self, module_name: str):
        key = self._key(module_name)

        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            for name, pairs in self.adapters.items():
                scale = self.scales.get(name)
                if scale is None:
                    continue
                if isinstance(scale, torch.Tensor):
                    if not bool(scale.any()):
                        continue
                    scale = scale.to(output.device, output.dtype).view(-1, *([1] * (output.ndim - 1)))
                elif scale == 0:
                    continue
                output = output + (pairs[key](args[0]) * self.scaling[name]).to(output.dtype) * scale
            return output

        return hook

    def parameters_of(self, name: str) -> list[nn.Parameter]:
        return list(self.adapters[name].parameters())

    def state_dict_of(self, name: str) -> dict[str, torch.Tensor]:
        out = {}
        for target in self.targets:
            pair = self.adapters[name][self._key(target)]
            out[f"{_PREFIX}{target}.lora_A.weight"] = pair.lora_A.weight.detach().float().cpu().contiguous()
            out[f"{_PREFIX}{target}.lora_B.weight"] = pair.lora_B.weight.detach().float().cpu().contiguous()
        return out

    def save(self, name: str, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"adapter": name, "rank": str(self.rank_of(name)), "alpha": str(self.cfg.alpha),
                "targets": json.dumps(self.targets)}
        save_file(self.state_dict_of(name), str(path), metadata=meta)
        return path

    def load(self, name: str, path: str | Path) -> None:
        """Load adapter ``name`` (created if missing) from a file written by :meth:`save`."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if meta.get("rank") and int(meta["rank"]) != self.rank_of(name):
            raise ValueError(f"{path}: rank {meta['rank']} != configured lora.{RANK_FIELDS[name]} "
                             f"{self.rank_of(name)}")
        if meta.get("alpha") and float(meta["alpha"]) != self.cfg.alpha:
            raise ValueError(f"{path}: alpha {meta['alpha']} != configured lora.alpha {self.cfg.alpha}")
        if name not in self.adapters:
            self.add(name)
        state = load_file(str(path))
        expected = set(self.state_dict_of(name))
        if set(state) != expected:
            missing, extra = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
            raise ValueError(f"{path}: adapter keys do not match the transformer's LoRA targets "
                             f"(missing {missing}, extra {extra})")
        with torch.no_grad():
            for target in self.targets:
                pair = self.adapters[name][self._key(target)]
                pair.lora_A.weight.copy_(state[f"{_PREFIX}{target}.lora_A.weight"])
                pair.lora_B.weight.copy_(state[f"{_PREFIX}{target}.lora_B.weight"])

    def remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
