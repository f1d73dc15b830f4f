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
from schemas import LayeredSample


@dataclass
class Example:
    key: str
    pixels: np.ndarray  # (4, T, 3, H, W) float32 in [-1, 1]
    view: dict
    prompts: list[str]  # "0, fg", "1, bg", "2, blend"
    motion_scale: float
    kind: str
    static: bool


class StreamSampling:
    """Which (dataset index, epoch) a stream position maps to and whether its captions are dropped: shared
    by the video dataset and the precomputed one, so both train the same samples in the same order."""

    cfg: DataConfig
    seed: int
    kinds: list[str]  # per dataset index

    def _kind_members(self) -> dict[str, np.ndarray]:
        members = {k: np.flatnonzero(np.array(self.kinds) == k) for k in self.cfg.kind_weights}
        empty = [k for k, w in self.cfg.kind_weights.items() if w > 0 and not len(members[k])]
        if empty:
            raise ValueError(f"data.kind_weights names kinds {empty} with no samples in {self.cfg.shards}")
        return members

    def locate(self, position: int) -> tuple[int, int]:
        """-> (dataset index, epoch) of a global stream position."""
        if not self.cfg.kind_weights:
            return position_to_index(position, len(self.kinds), self.seed)
        if not hasattr(self, "_members"):
            self._members = self._kind_members()
        names = [k for k, w in self.cfg.kind_weights.items() if w > 0]
        w = np.array([self.cfg.kind_weights[k] for k in names], dtype=np.float64)
        rng = np.random.default_rng([self.seed, int(position), 0x313])
        pool = self._members[names[int(rng.choice(len(names), p=w / w.sum()))]]
        return int(pool[rng.integers(len(pool))]), int(position) // len(self.kinds)

    def captions_dropped(self, index: int, epoch: int) -> bool:
        p = self.cfg.caption_dropout
        return bool(p) and np.random.default_rng([self.seed, epoch, index, 0xCAF]).random() < p


def view_epoch(cfg: DataConfig, epoch: int) -> int:
    """The crop an epoch trains: with precomputed views, epoch e reuses view e % precompute_views."""
    return epoch % cfg.precompute_views if cfg.precomputed_dir else epoch


class LayeredDataset(StreamSampling):
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
        self.kinds = [self.records[r.key].kind for r in kept]

    def __len__(self) -> int:
        return len(self.refs)

    def example(self, index: int, epoch: int, dropout: bool = True) -> Example:
        """Sample ``index`` as trained in ``epoch``: its crop/static view and (if ``dropout``) its
        caption-dropout draw are functions of (seed, epoch, index)."""
        ref = self.refs[index]
        return build_example(self.cfg, self.seed, ref, self.records[ref.key], index, epoch,
                             dropout and self.captions_dropped(index, epoch))


def build_example(cfg: DataConfig, seed: int, ref: SampleRef, record: LayeredSample, index: int, epoch: int,
                  drop_captions: bool) -> Example:
    """Decode one sample and build its training view (also run by the precompute job's actors)."""
    rng = np.random.default_rng([seed, epoch, index]) if cfg.random_crop else None
    static = is_static(record.kind, cfg.static, cfg.static_fraction,
                       rng if rng is not None else np.random.default_rng([seed, index]))
    clip = decode_clip(read_members(ref))
    pixels, view = build_layout(clip, cfg, rng, static)
    view["static"] = static
    captions = record.captions.model_dump()
    if drop_captions:
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
