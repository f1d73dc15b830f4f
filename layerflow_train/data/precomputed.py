"""Reading the precompute job's output: VAE latents + T5 embeddings per (sample, recorded crop).

Layout of ``data.precomputed_dir``::

    _meta.json          written last: fingerprint of everything the tensors depend on, views, row count
    parts/*.parquet     one row per (index, view): key, kind, frames, static, motion_scale, prompts and
                        ``tensors`` (safetensors bytes: latents (4f, C, h, w), text (3L, D)); written
                        with one row per row group, so a sample is read by seek
                        the row with index -1 holds the T5 embedding of the empty prompts "0, "/"1, "/"2, "

The dataset samples exactly like :class:`~layerflow_train.data.dataset.LayeredDataset` (same stream
positions, kind weights and caption-dropout draws); a dropped caption swaps in the empty-prompt text.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from layerflow_train.config import DataConfig, ModelConfig, resolve_model_path
from layerflow_train.data.dataset import StreamSampling, view_epoch

META = "_meta.json"
PARTS = "parts"
NULL_INDEX = -1
#: DataConfig fields that decide the views (and so the tensors); the rest (batch size, dropout,
#: kind weights) only decide what is sampled from them.
VIEW_FIELDS = ("shards", "frames_per_layer", "height", "width", "frame_stride", "random_crop", "kinds",
               "static", "static_fraction", "precompute_views", "precompute_dtype")


def precompute_fingerprint(model: ModelConfig, data: DataConfig, seed: int) -> str:
    views = {k: getattr(data, k) for k in VIEW_FIELDS}
    # absolute, as `--ray` spells them on the driver, so both spellings of one dataset agree
    views["shards"] = [os.path.abspath(os.path.expanduser(s)) for s in data.shards]
    blob = {"model_dir": str(resolve_model_path(model.model_dir).resolve()),
            "text_len_per_layer": model.text_len_per_layer, "vae_tiling": model.vae_tiling,
            "data": views, "seed": seed}
    return hashlib.sha1(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dataset_state(shards: list[str]) -> list[list]:
    """[absolute path, size, mtime] of every committed shard: changes when a dataset grows (a resumed
    build) or is rebuilt, since committed shards are never rewritten in place."""
    from layerflow_train.data.shards import resolve_shards

    return [[str(p.resolve()), (st := p.stat()).st_size, st.st_mtime_ns] for p in resolve_shards(shards)]


def check_dataset_unchanged(recorded: list | None, shards: list[str], root: Path) -> None:
    """Refuse latents of an older state of the datasets (they would silently miss or mis-key samples).
    Shards that are not reachable here (training from latents alone) are not checked."""
    if recorded is None:
        return
    try:
        now = dataset_state(shards)
    except FileNotFoundError:
        return
    if now != recorded:
        raise ValueError(f"{root} was precomputed from an older state of {shards} (shards added, removed or "
                         f"rebuilt since); re-run workflows/precompute.py with another data.precomputed_dir")


def pack_tensors(**tensors: torch.Tensor) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})


def unpack_tensors(blob: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return {k: v.float() for k, v in load(bytes(blob)).items()}


@dataclass
class PrecomputedExample:
    key: str
    latents: torch.Tensor  # (4f, C, h, w) fp32
    text: torch.Tensor     # (3L, D) fp32, raw T5
    view: dict
    motion_scale: float
    kind: str
    static: bool
    prompts: list[str] = field(default_factory=list)


class PrecomputedDataset(StreamSampling):
    def __init__(self, cfg: DataConfig, seed: int, fingerprint: str):
        import pyarrow.parquet as pq

        self.cfg, self.seed = cfg, seed
        self.root = Path(cfg.precomputed_dir)
        meta_path = self.root / META
        if not meta_path.is_file():
            raise FileNotFoundError(f"no finished precompute in {self.root} (missing {META}); run "
                                    f"`python workflows/precompute.py --config <this config>` first")
        meta = json.loads(meta_path.read_text())
        if meta["fingerprint"] != fingerprint:
            raise ValueError(f"{self.root} was precomputed for another model/data view (fingerprint "
                             f"{meta['fingerprint']} != {fingerprint}); re-run workflows/precompute.py "
                             f"with this config or point data.precomputed_dir elsewhere")
        check_dataset_unchanged(meta.get("dataset"), cfg.shards, self.root)
        self._rows: dict[tuple[int, int], tuple[Path, int, int]] = {}
        info: dict[int, tuple[str, str]] = {}
        for part in sorted((self.root / PARTS).glob("*.parquet")):
            fh = pq.ParquetFile(part)
            for rg in range(fh.num_row_groups):
                for j, r in enumerate(fh.read_row_group(rg, columns=["index", "view", "key", "kind"]).to_pylist()):
                    self._rows[(r["index"], r["view"])] = (part, rg, j)
                    info[r["index"]] = (r["key"], r["kind"])
        n = len(info) - (NULL_INDEX in info)
        if sorted(k for k in info if k != NULL_INDEX) != list(range(n)) or len(self._rows) != n * meta["views"] + 1:
            raise ValueError(f"{self.root}: incomplete precompute ({len(self._rows)} rows for {n} samples x "
                             f"{meta['views']} views + 1)")
        self.keys = [info[i][0] for i in range(n)]
        self.kinds = [info[i][1] for i in range(n)]
        self.null_text = self._read(NULL_INDEX, NULL_INDEX)["text"]

    def __len__(self) -> int:
        return len(self.keys)

    def _read(self, index: int, view: int) -> dict:
        import pyarrow.parquet as pq

        part, rg, j = self._rows[(index, view)]
        row = pq.ParquetFile(part).read_row_group(rg).slice(j, 1).to_pylist()[0]
        row.update(unpack_tensors(row.pop("tensors")))
        return row

    def example(self, index: int, epoch: int, dropout: bool = True) -> PrecomputedExample:
        row = self._read(index, view_epoch(self.cfg, epoch))
        dropped = dropout and self.captions_dropped(index, epoch)
        text = self.null_text if dropped else row["text"]
        prompts = null_prompts() if dropped else list(row["prompts"])
        view = {"frames": list(row["frames"]), "height": self.cfg.height, "width": self.cfg.width,
                "static": row["static"]}
        return PrecomputedExample(row["key"], row["latents"], text, view, float(row["motion_scale"]),
                                  row["kind"], bool(row["static"]), prompts)


def null_prompts() -> list[str]:
    from layerflow_train.models.components import layer_prompts

    return layer_prompts({"fg": "", "bg": "", "blend": ""})
