"""Reading layered-clip shards: random access by tar offsets, webdataset streaming, Ray Data.

Training uses :func:`index_shards` + :func:`read_members`: a tar member's data offset is known after
one header scan, so any sample can be read by seek, which makes the sample order a pure function of
(seed, step) and resume exact. :func:`iter_webdataset` and :func:`read_ray_dataset` stream the same
samples for bulk jobs (latent-cache precompute, inspection) on one machine or a Ray cluster.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dataset_builder.io import layout
from dataset_builder.io.layout import LayeredClip
from schemas import LayeredSample


@dataclass(frozen=True)
class SampleRef:
    shard: str
    key: str
    #: member suffix (e.g. "fg.mp4") -> (data offset, size) inside the tar
    members: dict[str, tuple[int, int]] = field(hash=False)


_BUILD_HINT = ("; build the datasets first: `make shards` (out/coarse), `make copypaste` (out/copypaste), "
               "`make image-layers` (out/image_layers), or point data.shards=[...] at yours")


def resolve_shards(paths: list[str]) -> list[Path]:
    """Dataset roots (committed shards only), tar files, or globs -> sorted unique tar paths."""
    out: list[Path] = []
    for entry in paths:
        p = Path(os.path.expanduser(entry))
        if p.is_dir():
            out.extend(layout.shards_in_dir(p))
        elif any(ch in entry for ch in "*?["):
            out.extend(Path(x) for x in sorted(glob.glob(os.path.expanduser(entry))))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no shards at {entry}{_BUILD_HINT}")
    unique = sorted(set(out))
    if not unique:
        raise FileNotFoundError(f"no shard files found in {paths}{_BUILD_HINT}")
    return unique


def index_shards(shards: list[Path]) -> list[SampleRef]:
    """One header pass per shard; samples in shard order, members grouped by key (webdataset rules)."""
    refs: list[SampleRef] = []
    for shard in shards:
        for key, members in layout.index_tar(shard).items():
            missing = set(layout.SAMPLE_MEMBERS) - set(members)
            if missing:
                raise ValueError(f"{shard}: sample {key} lacks members {sorted(missing)}")
            refs.append(SampleRef(str(shard), key, members))
    return refs


def read_members(ref: SampleRef, suffixes: tuple[str, ...] | None = None) -> dict[str, bytes]:
    with open(ref.shard, "rb") as fh:
        out = {}
        for suffix, (offset, size) in ref.members.items():
            if suffixes is None or suffix in suffixes:
                fh.seek(offset)
                out[suffix] = fh.read(size)
    return out


def read_record(ref: SampleRef) -> LayeredSample:
    return LayeredSample.model_validate_json(read_members(ref, ("json",))["json"])


def decode_clip(members: dict[str, bytes | str | dict]) -> LayeredClip:
    """Decode a sample's members (bytes, as read from the tar or by webdataset/Ray) into arrays."""
    return layout.decode_sample(members)


def iter_webdataset(shards: list[Path]) -> Iterator[dict]:
    """Stream raw samples ({"__key__", "fg.mp4", ..., "json"} -> bytes) with webdataset, in shard order."""
    import webdataset as wds

    yield from wds.WebDataset([str(s) for s in shards], shardshuffle=False, empty_check=False)


def read_ray_dataset(shards: list[Path]):
    """The shards as a Ray Dataset of raw members (no auto-decoding; use :func:`decode_clip` per row)."""
    import ray.data

    return ray.data.read_webdataset([str(s) for s in shards], decoder=None)


def sample_json(members: dict) -> dict:
    raw = members["json"]
    return raw if isinstance(raw, dict) else json.loads(raw)
