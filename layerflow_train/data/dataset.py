"""Deterministic map-style dataset + sampler over indexed shards.

Which sample a (step, micro-step, rank, slot) gets, its temporal crop and whether it becomes a static
view are pure functions of the seed, so a resumed run sees exactly the batches an uninterrupted run
would have seen, without saving iterator state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layerflow_train.config import DataConfig
from layerflow_train.data.layout import build_layout, is_static, motion_scale_for
from layerflow_train.data.shards import (
    SampleRef,
    decode_clip,
    index_shards,
    read_members,
    read_record,
    resolve_shards,
)
from layerflow_train.models.components import layer_prompts


@dataclass
class Example:
    key: str
    pixels: np.ndarray  # (4, T, 3, H, W) float32 in [-1, 1]
    view: dict
    prompts: list[str]  # "0, fg", "1, bg", "2, blend"
    motion_scale: float
    kind: str
    static: bool


class LayeredDataset:
    def __init__(self, cfg: DataConfig, seed: int):
        self.cfg = cfg
        self.seed = seed
        refs = index_shards(resolve_shards(cfg.shards))
        self.records = {}
        kept: list[SampleRef] = []
        for ref in refs:
            record = read_record(ref)
            if not cfg.kinds or record.kind in cfg.kinds:
                kept.append(ref)
                self.records[ref.key] = record
        if not kept:
            raise ValueError(f"no samples of kinds {cfg.kinds} in {cfg.shards}")
        self.refs = kept

    def __len__(self) -> int:
        return len(self.refs)

    def example(self, index: int, epoch: int) -> Example:
        ref = self.refs[index]
        record = self.records[ref.key]
        rng = np.random.default_rng([self.seed, epoch, index]) if self.cfg.random_crop else None
        static = is_static(record.kind, self.cfg.static, self.cfg.static_fraction,
                           rng if rng is not None else np.random.default_rng([self.seed, index]))
        clip = decode_clip(read_members(ref))
        pixels, view = build_layout(clip, self.cfg, rng, static)
        view["static"] = static
        captions = record.captions.model_dump()
        if self.cfg.caption_dropout and np.random.default_rng([self.seed, epoch, index, 0xCAF]).random() < \
                self.cfg.caption_dropout:
            captions = dict.fromkeys(captions, "")  # what the CFG unconditional branch sees
        return Example(ref.key, pixels, view, layer_prompts(captions),
                       motion_scale_for(record.motion_scale, static), record.kind, static)


def sample_positions(step: int, micro: int, grad_accum: int, rank: int, world: int, batch: int) -> np.ndarray:
    """Global positions in the infinite (epoch-concatenated) sample stream for one micro-batch."""
    first = ((step * grad_accum + micro) * world + rank) * batch
    return first + np.arange(batch, dtype=np.int64)


def position_to_index(position: int, size: int, seed: int) -> tuple[int, int]:
    """-> (dataset index, epoch); each epoch is a fresh seeded permutation."""
    epoch, offset = divmod(int(position), size)
    return int(np.random.default_rng([seed, epoch, 0x5EED]).permutation(size)[offset]), epoch
