"""Deterministic, resumable WebDataset shard writer.

Layout under ``out_dir``::

    shards/shard-000000.tar          samples (webdataset / ray.data.read_webdataset readable)
    manifest/shard-000000.parquet    one row per sample (schemas.MANIFEST_SCHEMA)
    rejects/shard-000000.parquet     one row per reject committed with this shard
    _stats/shard-000000_stats.json   commit marker, written last by atomic rename
    manifest.parquet, rejects.parquet  consolidated views, rebuilt from committed parts on close

A clip is the unit of commit: its samples and rejects land in the same shard, and a clip id listed
in a committed ``_stats.json`` is never written again, so a killed run resumes without duplicates.
Anything not covered by a commit marker is deleted on open.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas import MANIFEST_SCHEMA, REJECTS_SCHEMA, SCHEMA_VERSION, LayeredSample, RejectRecord, manifest_row

_SHARD_RE = re.compile(r"shard-(\d{6})")
_TAR_MTIME = 0  # fixed, so identical inputs give byte-identical shards


@dataclass
class SampleToWrite:
    record: LayeredSample
    #: member suffix (e.g. "fg.mp4") -> bytes; the ".json" member is generated from ``record``.
    members: dict[str, bytes]


@dataclass
class _OpenShard:
    index: int
    tmp_path: Path
    tar: tarfile.TarFile
    manifest: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    clip_ids: list[str] = field(default_factory=list)
    rejected_clip_ids: list[str] = field(default_factory=list)
    num_samples: int = 0
    nbytes: int = 0


class ShardWriter:
    def __init__(
        self,
        out_dir: str | os.PathLike,
        samples_per_shard: int = 64,
        max_shard_bytes: int = 1 << 30,
        retry_rejects: bool = False,
    ):
        if samples_per_shard < 1:
            raise ValueError("samples_per_shard must be >= 1")
        self.out_dir = Path(out_dir)
        self.samples_per_shard = samples_per_shard
        self.max_shard_bytes = max_shard_bytes
        for sub in ("shards", "manifest", "rejects", "_stats"):
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)
        self._committed = self._load_commits()
        self._remove_uncommitted()
        self._next_index = max(self._committed, default=-1) + 1
        self._done = self.committed_clip_ids(include_rejected=not retry_rejects)
        self._shard: _OpenShard | None = None
        self.written_samples = 0
        self.written_rejects = 0
        self.skipped_clips = 0

    # -- resume ---------------------------------------------------------------------------------
    def _load_commits(self) -> dict[int, dict]:
        commits = {}
        for path in sorted((self.out_dir / "_stats").glob("shard-*_stats.json")):
            match = _SHARD_RE.search(path.name)
            if match:
                commits[int(match.group(1))] = json.loads(path.read_text())
        return commits

    def _remove_uncommitted(self) -> None:
        for sub, pattern in (("shards", "*"), ("manifest", "*"), ("rejects", "*"), ("_stats", "*.tmp")):
            for path in (self.out_dir / sub).glob(pattern):
                match = _SHARD_RE.search(path.name)
                if path.name.endswith(".tmp") or not match or int(match.group(1)) not in self._committed:
                    path.unlink()

    def committed_clip_ids(self, include_rejected: bool = True) -> set[str]:
        """Clip ids already done. With ``include_rejected=False``, clips that ended only in rejects
        are not counted, so they are processed again (``retry_rejects``)."""
        done: set[str] = set()
        for stats in self._committed.values():
            rejected = set(stats.get("rejected_clip_ids", []))
            done.update(c for c in stats["clip_ids"] if include_rejected or c not in rejected)
        return done

    # -- writing --------------------------------------------------------------------------------
    def add_clip(self, clip_id: str, samples: list[SampleToWrite], rejects: list[RejectRecord]) -> bool:
        """Write all samples and rejects of one clip. Returns False if it was already committed."""
        if clip_id in self._done:
            self.skipped_clips += 1
            return False
        self._done.add(clip_id)
        shard = self._shard or self._open()
        for sample in samples:
            self._write_sample(shard, sample)
        shard.rejects.extend(r.model_dump() for r in rejects)
        shard.clip_ids.append(clip_id)
        if not samples:
            shard.rejected_clip_ids.append(clip_id)
        self.written_rejects += len(rejects)
        if shard.num_samples >= self.samples_per_shard or shard.nbytes >= self.max_shard_bytes:
            self._commit()
        return True

    def _open(self) -> _OpenShard:
        index = self._next_index
        self._next_index += 1
        tmp = self.out_dir / "shards" / f"shard-{index:06d}.tar.tmp"
        self._shard = _OpenShard(index, tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT))
        return self._shard

    def _write_sample(self, shard: _OpenShard, sample: SampleToWrite) -> None:
        key = sample.record.key
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain '.' or '/' (webdataset splits on them)")
        members = dict(sample.members)
        members["json"] = sample.record.model_dump_json().encode()
        nbytes = 0
        for suffix in sorted(members):
            data = members[suffix]
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size, info.mtime, info.mode = len(data), _TAR_MTIME, 0o444
            shard.tar.addfile(info, io.BytesIO(data))
            nbytes += len(data)
        shard.manifest.append(manifest_row(sample.record, self._shard_name(shard.index), nbytes))
        shard.num_samples += 1
        shard.nbytes += nbytes
        self.written_samples += 1

    @staticmethod
    def _shard_name(index: int) -> str:
        return f"shard-{index:06d}.tar"

    def _commit(self) -> None:
        shard = self._shard
        if shard is None:
            return
        self._shard = None
        shard.tar.close()
        with open(shard.tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        name = self._shard_name(shard.index)
        os.replace(shard.tmp_path, self.out_dir / "shards" / name)
        stem = f"shard-{shard.index:06d}"
        _write_parquet(pa.Table.from_pylist(shard.manifest, schema=MANIFEST_SCHEMA),
                       self.out_dir / "manifest" / f"{stem}.parquet")
        _write_parquet(pa.Table.from_pylist(shard.rejects, schema=REJECTS_SCHEMA),
                       self.out_dir / "rejects" / f"{stem}.parquet")
        stats = {
            "schema_version": SCHEMA_VERSION,
            "shard": name,
            "num_samples": shard.num_samples,
            "num_rejects": len(shard.rejects),
            "bytes": shard.nbytes,
            "clip_ids": shard.clip_ids,
            "rejected_clip_ids": shard.rejected_clip_ids,
            "keys": [row["key"] for row in shard.manifest],
            "labels": _counts(row["label"] for row in shard.manifest),
            "reject_reasons": _counts(f"{r['stage']}:{r['reason']}" for r in shard.rejects),
        }
        _atomic_write_text(self.out_dir / "_stats" / f"{stem}_stats.json", json.dumps(stats, indent=1))
        self._committed[shard.index] = stats

    def close(self) -> dict:
        """Commit the open shard and rebuild the consolidated manifest/rejects tables."""
        self._commit()
        manifest = _concat_parts(self.out_dir / "manifest", MANIFEST_SCHEMA, self._committed)
        rejects = _concat_parts(self.out_dir / "rejects", REJECTS_SCHEMA, self._committed)
        _write_parquet(manifest, self.out_dir / "manifest.parquet")
        _write_parquet(rejects, self.out_dir / "rejects.parquet")
        return {
            "shards": sum(1 for s in self._committed.values() if s["num_samples"] > 0),
            "samples_total": manifest.num_rows,
            "rejects_total": rejects.num_rows,
            "samples_written_now": self.written_samples,
            "rejects_written_now": self.written_rejects,
            "clips_skipped_as_committed": self.skipped_clips,
        }

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._shard is not None:  # leave no half-written shard behind; next open cleans it anyway
            self._shard.tar.close()
            self._shard.tmp_path.unlink(missing_ok=True)
            self._shard = None


def pack_fragment(samples: dict[str, dict[str, bytes]]) -> bytes:
    """In-memory tar of ``{key: {suffix: bytes}}`` as ``<key>.<suffix>`` members: how encoded samples travel
    from workers to the driver-side writer."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples.items():
            for suffix, data in members.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def unpack_fragment(payload: bytes) -> dict[str, dict[str, bytes]]:
    """Inverse of :func:`pack_fragment`, keys in packing order; empty payload -> {}."""
    samples: dict[str, dict[str, bytes]] = {}
    if payload:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r") as tar:
            for member in tar.getmembers():
                key, _, suffix = member.name.partition(".")
                samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    return samples


def committed_shards(out_dir: str | os.PathLike) -> list[Path]:
    """Paths of committed, non-empty shards, in order (what readers should open)."""
    out = Path(out_dir)
    paths = []
    for path in sorted((out / "_stats").glob("shard-*_stats.json")):
        stats = json.loads(path.read_text())
        if stats["num_samples"] > 0:
            paths.append(out / "shards" / stats["shard"])
    return paths


def _counts(items) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _concat_parts(folder: Path, schema: pa.Schema, committed: dict[int, dict]) -> pa.Table:
    """Concatenate committed parts; where a clip was committed more than once (``retry_rejects``), only
    the rows of its latest commit count."""
    latest: dict[str, int] = {}
    for index in sorted(committed):
        for clip_id in committed[index]["clip_ids"]:
            latest[clip_id] = index
    tables = []
    for index in sorted(committed):
        path = folder / f"shard-{index:06d}.parquet"
        if not path.exists():
            continue
        table = pq.read_table(path, schema=schema)
        stale = [c for c in committed[index]["clip_ids"] if latest[c] != index]
        if stale:
            keep = pc.invert(pc.is_in(table.column("clip_id"), value_set=pa.array(stale)))
            table = table.filter(keep)
        tables.append(table)
    return pa.concat_tables(tables) if tables else schema.empty_table()
