"""Precomputed VAE latents + raw T5 embeddings, one safetensors file per (sample, view).

The key hashes everything the tensors depend on (model fingerprint, the exact frame indices, size,
prompts), so a changed config never reads stale latents. Writes are atomic (tmp + rename): several
Ray workers may fill the same cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch


class LatentCache:
    def __init__(self, root: str | os.PathLike, model_fingerprint: str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.model_fingerprint = model_fingerprint

    def path(self, key: str, view: dict, prompts: list[str]) -> Path:
        blob = json.dumps({"m": self.model_fingerprint, "v": view, "p": prompts}, sort_keys=True).encode()
        return self.root / f"{key}-{hashlib.sha1(blob).hexdigest()[:16]}.safetensors"

    def get(self, key: str, view: dict, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor] | None:
        from safetensors.torch import load_file

        path = self.path(key, view, prompts)
        if not path.exists():
            return None
        data = load_file(str(path))
        return data["latents"], data["text"]

    def put(self, key: str, view: dict, prompts: list[str], latents: torch.Tensor, text: torch.Tensor) -> Path:
        from safetensors.torch import save_file

        path = self.path(key, view, prompts)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        save_file({"latents": latents.detach().float().cpu().contiguous(),
                   "text": text.detach().float().cpu().contiguous()}, str(tmp), metadata={"key": key})
        os.replace(tmp, path)
        return path
