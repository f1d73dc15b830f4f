"""Precompute job: VAE latents + T5 embeddings of every (sample, crop) a training config will use.

Ray Data over the shards' sample index: one row per (sample, view) with the sample's tar offsets,
mapped by an actor pool (:class:`EncodeViews`, VAE + T5 loaded once per actor, on a GPU each when
``ray.use_gpu``), written as Parquet (:mod:`layerflow_train.data.precomputed`). Each view's crop is the
one the on-the-fly path builds for epoch ``view`` (same functions, caption dropout off) and is recorded
(``frames``, ``static``). Training with ``data.precomputed_dir`` then loads neither VAE nor T5 and
decodes no video. Without Ray (``use_ray=False``) the same class runs in-process.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import torch

from dataset_builder.cluster import init_ray
from layerflow_train.config import TrainConfig
from layerflow_train.data.dataset import LayeredDataset, build_example
from layerflow_train.data.precomputed import (
    META,
    NULL_INDEX,
    PARTS,
    check_dataset_unchanged,
    dataset_state,
    null_prompts,
    pack_tensors,
    precompute_fingerprint,
)
from layerflow_train.data.shards import SampleRef

log = logging.getLogger(__name__)


class EncodeViews:
    """Ray Data actor: rows {index, view, shard, key, members, record} -> rows with packed tensors."""

    def __init__(self, cfg: dict, device: str | None = None):
        from layerflow_train.models.components import load_components

        self.cfg = TrainConfig.model_validate(cfg)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.comp = load_components(self.cfg.model, transformer=False, device=self.device).to(self.device)
        self.dtype = getattr(torch, self.cfg.data.precompute_dtype)

    def __call__(self, batch: dict) -> dict:
        from layerflow_train.models.components import encode_layers, encode_text
        from schemas import LayeredSample

        out: dict[str, list] = {k: [] for k in ("index", "view", "key", "kind", "frames", "static",
                                                "motion_scale", "prompts", "tensors")}
        for i in range(len(batch["index"])):
            index, view = int(batch["index"][i]), int(batch["view"][i])
            if index == NULL_INDEX:
                text = encode_text(self.comp, [null_prompts()], self.device)[0]
                row = ("", "", [], False, 0.0, null_prompts(), pack_tensors(text=text.to(self.dtype)))
            else:
                members = {k: tuple(v) for k, v in json.loads(batch["members"][i]).items()}
                ref = SampleRef(str(batch["shard"][i]), str(batch["key"][i]), members)
                record = LayeredSample.model_validate_json(batch["record"][i])
                ex = build_example(self.cfg.data, self.cfg.seed, ref, record, index, view, drop_captions=False)
                z = encode_layers(self.comp, torch.from_numpy(ex.pixels)[None].to(self.device))[0]
                text = encode_text(self.comp, [ex.prompts], self.device)[0]
                row = (ex.key, ex.kind, [int(f) for f in ex.view["frames"]], bool(ex.static), ex.motion_scale,
                       ex.prompts, pack_tensors(latents=z.to(self.dtype), text=text.to(self.dtype)))
            for name, value in zip(list(out)[2:], row):
                out[name].append(value)
            out["index"].append(index)
            out["view"].append(view)
        return out


def work_items(cfg: TrainConfig) -> list[dict]:
    """One row per (sample, view) plus the empty-prompt row; the sample's tar offsets travel with it, so
    actors read by seek without re-indexing the shards."""
    data = cfg.data.model_copy(update={"precomputed_dir": None})
    ds = LayeredDataset(data, cfg.seed)
    items = [{"index": NULL_INDEX, "view": NULL_INDEX, "shard": "", "key": "", "members": "{}", "record": ""}]
    for index, ref in enumerate(ds.refs):
        for view in range(cfg.data.precompute_views):
            items.append({"index": index, "view": view, "shard": ref.shard, "key": ref.key,
                          "members": json.dumps(ref.members), "record": ds.records[ref.key].model_dump_json()})
    return items


def _batches(items: list[dict], size: int) -> Iterator[dict]:
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        yield {k: [row[k] for row in chunk] for k in chunk[0]}


def _write_local(rows: dict, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(rows), path, row_group_size=1)


def precompute(cfg: TrainConfig, use_ray: bool = True, batch_size: int = 4) -> Path:
    """Write ``cfg.data.precomputed_dir``; returns it. A finished directory with the same fingerprint is
    reused; one with another fingerprint is refused (never overwritten)."""
    if not cfg.data.precomputed_dir:
        raise ValueError("set data.precomputed_dir (where to write the precomputed latents)")
    root = Path(cfg.data.precomputed_dir)
    fingerprint = precompute_fingerprint(cfg.model, cfg.data, cfg.seed)
    meta_path = root / META
    if meta_path.is_file():
        found = json.loads(meta_path.read_text())["fingerprint"]
        if found == fingerprint:
            check_dataset_unchanged(json.loads(meta_path.read_text()).get("dataset"), cfg.data.shards, root)
            log.info("precompute %s is up to date", root)
            return root
        raise ValueError(f"{root} holds a precompute for another config (fingerprint {found}); choose "
                         "another data.precomputed_dir")
    if (root / PARTS).exists():
        raise ValueError(f"{root / PARTS} exists without {META} (an unfinished run?): remove it or choose "
                         "another data.precomputed_dir")
    state = dataset_state(cfg.data.shards)  # before reading: a build adding shards meanwhile is caught later
    items = work_items(cfg)
    tmp = root / f".parts-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    cfg_json = cfg.model_dump(mode="json")
    try:
        if use_ray:
            import ray

            init_ray(None)  # RAY_ADDRESS or a private local Ray, never a stray head on the host
            ds = ray.data.from_items(items, override_num_blocks=max(1, len(items) // batch_size))
            ds = ds.map_batches(EncodeViews, fn_constructor_kwargs={"cfg": cfg_json}, batch_size=batch_size,
                                batch_format="numpy", concurrency=cfg.ray.num_workers,
                                num_gpus=1 if cfg.ray.use_gpu else 0, num_cpus=cfg.ray.cpus_per_worker)
            ds.write_parquet(str(tmp.resolve()), row_group_size=1)
        else:
            encode = EncodeViews(cfg_json)
            for n, batch in enumerate(_batches(items, batch_size)):
                _write_local(encode(batch), tmp / f"part-{n:06d}.parquet")
        tmp.rename(root / PARTS)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # our own partial output only
        raise
    meta = {"fingerprint": fingerprint, "views": cfg.data.precompute_views, "rows": len(items),
            "dtype": cfg.data.precompute_dtype, "dataset": state}
    meta_path.write_text(json.dumps(meta, indent=1))
    log.info("precomputed %d views into %s", len(items) - 1, root)
    return root
