"""The one owner of the on-disk dataset format: names, commit records, and reading what is committed.

Layout under a dataset root (a local directory or an object-store prefix, see :mod:`.storage`)::

    shards/<stem>.tar            samples: <key>.fg.mp4, <key>.alpha.mkv, <key>.bg.mp4, <key>.blend.mp4, <key>.json
    manifest/<stem>.parquet      one row per sample of that shard (schemas.MANIFEST_SCHEMA)
    rejects/<stem>.parquet       one row per reject committed with that shard (schemas.REJECTS_SCHEMA)
    _stats/<stem>_stats.json     the commit record (schemas.CommitRecord), written LAST
    _tmp/                        in-progress files of running writers (never under shards/)
    _pending/<stem>.json         intent marker: a writer is moving <stem> into place (crash leftovers are ours)
    _lease.json                  held by the one build writing this root

A shard, its manifest part and its rejects part exist for readers only once the commit record does.
Everything here reads committed data only, so a dataset can be read while a build is still writing it.
A clip committed more than once (``retry_rejects`` re-processes clips that ended in rejects) counts in
its latest commit only.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from dataset_builder.io.storage import Storage
from schemas import LAYER_MEMBERS, MANIFEST_SCHEMA, REJECTS_SCHEMA, CommitRecord, LayeredSample, StageStats

SHARDS_DIR = "shards"
MANIFEST_DIR = "manifest"
REJECTS_DIR = "rejects"
COMMITS_DIR = "_stats"
TMP_DIR = "_tmp"
PENDING_DIR = "_pending"
LEASE_FILE = "_lease.json"
#: Directories present from the first open (so ``read_webdataset(<root>/shards)`` and Parquet readers of
#: ``manifest/`` work on an empty or running build).
DATA_DIRS = (SHARDS_DIR, MANIFEST_DIR, REJECTS_DIR, COMMITS_DIR)
COMMIT_SUFFIX = "_stats.json"
SHARD_SUFFIX = ".tar"
PART_SUFFIX = ".parquet"
JSON_MEMBER = "json"
#: Members every sample has (the four layers + its record).
SAMPLE_MEMBERS = (*LAYER_MEMBERS.values(), JSON_MEMBER)

Root = str | os.PathLike | Storage


# -- naming -------------------------------------------------------------------------------------
def check_key(key: str) -> str:
    if not key or "." in key or "/" in key:
        raise ValueError(f"sample key {key!r} must be non-empty without '.' or '/' (webdataset splits on them)")
    return key


def member_name(key: str, suffix: str) -> str:
    """Tar member name of one member of a sample: ``<key>.<suffix>`` (``suffix`` e.g. ``fg.mp4``)."""
    return f"{check_key(key)}.{suffix}"


def split_member_name(name: str) -> tuple[str, str] | None:
    """``"abc.alpha.mkv"`` -> ``("abc", "alpha.mkv")``: webdataset keys end at the first dot."""
    base = name.rsplit("/", 1)[-1]
    if "." not in base:
        return None
    key, suffix = base.split(".", 1)
    return key, suffix


def sample_key(clip_id: str, object_id: int) -> str:
    return check_key(f"{clip_id}_{object_id:02d}")


def shard_stem(clip_ids: Iterable[str]) -> str:
    """Deterministic, unique name of the shard holding exactly these clips (order-independent): any
    worker can name its shard without asking anyone, and a retried write of the same clips reuses it."""
    digest = hashlib.sha1("\n".join(sorted(clip_ids)).encode()).hexdigest()[:16]
    return f"shard-{digest}"


def shard_file(stem: str) -> str:
    return stem + SHARD_SUFFIX


def stem_of(shard: str) -> str:
    name = shard.rsplit("/", 1)[-1]
    return name[: -len(SHARD_SUFFIX)] if name.endswith(SHARD_SUFFIX) else name


def commit_path(stem: str) -> str:
    return f"{COMMITS_DIR}/{stem}{COMMIT_SUFFIX}"


def shard_path(stem: str) -> str:
    return f"{SHARDS_DIR}/{stem}{SHARD_SUFFIX}"


def manifest_part_path(stem: str) -> str:
    return f"{MANIFEST_DIR}/{stem}{PART_SUFFIX}"


def rejects_part_path(stem: str) -> str:
    return f"{REJECTS_DIR}/{stem}{PART_SUFFIX}"


def pending_path(stem: str) -> str:
    return f"{PENDING_DIR}/{stem}.json"


# -- commit records -----------------------------------------------------------------------------
def list_commits(root: Root) -> list[CommitRecord]:
    """Commit records in commit order (oldest first; ties and pre-timestamp records by shard name)."""
    store = Storage.at(root)
    records = []
    for name in store.list(COMMITS_DIR, COMMIT_SUFFIX):
        if name.startswith("."):
            continue
        records.append(CommitRecord.model_validate_json(store.read_bytes(f"{COMMITS_DIR}/{name}")))
    return sorted(records, key=lambda r: (r.committed_at, r.shard))


def latest_owner(commits: list[CommitRecord]) -> dict[str, str]:
    """clip id -> shard of its latest commit."""
    owner: dict[str, str] = {}
    for record in commits:  # commit order: later commits overwrite
        for clip_id in record.clip_ids:
            owner[clip_id] = record.shard
    return owner


def _stale_clips(commits: list[CommitRecord]) -> dict[str, list[str]]:
    """shard -> its clips that a later commit superseded."""
    owner = latest_owner(commits)
    out: dict[str, list[str]] = {}
    for record in commits:
        stale = [c for c in record.clip_ids if owner[c] != record.shard]
        if stale:
            out[record.shard] = stale
    return out


def committed_clip_ids(root: Root | None = None, include_rejected: bool = True,
                       commits: list[CommitRecord] | None = None) -> set[str]:
    """Clips already done. With ``include_rejected=False`` a clip whose latest commit has no sample
    (it ended in rejects) is not done, so ``retry_rejects`` processes it again."""
    commits = list_commits(root) if commits is None else commits
    done: dict[str, bool] = {}
    for record in commits:
        rejected = set(record.rejected_clip_ids)
        for clip_id in record.clip_ids:
            done[clip_id] = include_rejected or clip_id not in rejected
    return {c for c, ok in done.items() if ok}


def stage_stats(root: Root | None = None, commits: list[CommitRecord] | None = None
                ) -> tuple[dict[str, StageStats], int]:
    """Per-stage busy time summed over the commit records, and the number of clips (units) they commit:
    the measured costs of a build (``stages.pool_sizing``). Every commit counts, retried clips too (the
    work was done), except records written before commits carried ``stage_stats`` (no such field in their
    JSON): they measured nothing, and their clips would dilute the seconds per clip."""
    commits = list_commits(root) if commits is None else commits
    measured = [record for record in commits if "stage_stats" in record.model_fields_set]
    total: dict[str, StageStats] = {}
    for record in measured:
        for stage, stats in record.stage_stats.items():
            total.setdefault(stage, StageStats()).add(stats)
    return total, sum(len(record.clip_ids) for record in measured)


@dataclass
class ResumePlan:
    """What a rerun may skip, from the commit records alone (no sample data is read).

    ``done``: clips (units) whose latest commit counts as done; ``inputs_done``: inputs all of whose
    planned clips are done; ``partial``: input -> its done clips, for inputs only partly committed.
    """

    done: set[str]
    inputs_done: set[str]
    partial: dict[str, list[str]]

    @property
    def partial_clip_ids(self) -> set[str]:
        """The only ids the decode stage still needs to skip (bounded by what was in flight at a crash)."""
        return {c for ids in self.partial.values() for c in ids}

    def pending_inputs(self, inputs: list[str]) -> list[str]:
        """Anti-join: ``inputs`` without the fully committed ones, order kept."""
        if not self.inputs_done:
            return list(inputs)
        mask = pc.is_in(pa.array(inputs, pa.string()), value_set=pa.array(list(self.inputs_done), pa.string()))
        return [uri for uri, done in zip(inputs, mask.to_pylist()) if not done]

    def pending_units(self, unit_ids: list[str]) -> list[bool]:
        """Anti-join of planned unit ids against ``done``: True where a unit still has to be built."""
        if not self.done:
            return [True] * len(unit_ids)
        mask = pc.is_in(pa.array(unit_ids, pa.string()), value_set=pa.array(list(self.done), pa.string()))
        return [not m for m in mask.to_pylist()]


def resume_plan(root: Root | None = None, include_rejected: bool = True,
                commits: list[CommitRecord] | None = None) -> ResumePlan:
    """Group the committed clips by input: an input is done once as many of its clips are done as
    were planned for it (``CommitRecord.planned``); a clip's latest commit decides (``retry_rejects``).
    Columnar (pyarrow group-by / join), so a million committed ids plan in seconds."""
    commits = list_commits(root) if commits is None else commits
    ids: list[str] = []
    sources: list[str] = []
    bad: list[bool] = []
    planned: dict[str, int] = {}
    for record in commits:
        n = len(record.clip_ids)
        ids.extend(record.clip_ids)
        sources.extend(record.clip_sources if len(record.clip_sources) == n else [""] * n)  # old records: ""
        if include_rejected or not record.rejected_clip_ids:
            bad.extend([False] * n)
        else:
            rejected = set(record.rejected_clip_ids)
            bad.extend(c in rejected for c in record.clip_ids)
        planned.update(record.planned)
    if not ids:
        return ResumePlan(set(), set(), {})
    table = pa.table({"clip_id": pa.array(ids, pa.string()), "source": pa.array(sources, pa.string()),
                      "bad": pa.array(bad, pa.bool_()), "order": pa.array(np.arange(len(ids), dtype=np.int64))})
    latest = table.take(table.group_by("clip_id").aggregate([("order", "max")]).column("order_max"))
    done_tbl = latest.filter(pc.invert(latest.column("bad")))
    done = set(done_tbl.column("clip_id").to_pylist())
    by_source = done_tbl.filter(pc.not_equal(done_tbl.column("source"), ""))
    counts = by_source.group_by("source").aggregate([("clip_id", "count")])
    wanted = pa.table({"source": pa.array(list(planned), pa.string()),
                       "planned": pa.array(list(planned.values()), pa.int64())})
    joined = counts.join(wanted, "source", join_type="left outer")
    complete = pc.fill_null(pc.greater_equal(joined.column("clip_id_count"), joined.column("planned")), False)
    complete = pc.and_(complete, pc.fill_null(pc.greater(joined.column("planned"), 0), False))
    inputs_done = set(joined.filter(complete).column("source").to_pylist())
    partial_sources = joined.filter(pc.invert(complete)).column("source")
    partial: dict[str, list[str]] = {}
    if len(partial_sources):
        rows = by_source.filter(pc.is_in(by_source.column("source"), value_set=partial_sources))
        for src, clip_id in zip(rows.column("source").to_pylist(), rows.column("clip_id").to_pylist()):
            partial.setdefault(src, []).append(clip_id)
    return ResumePlan(done, inputs_done, partial)


def committed_shards(root: Root, commits: list[CommitRecord] | None = None) -> list[Path]:
    """Local paths of committed shards that hold samples, in commit order: what readers should open."""
    store = Storage.at(root)
    if not store.local:
        raise ValueError(f"{store.uri} is not local; use layout.shard_uris() with its filesystem")
    return [Path(p) for p in shard_uris(store, commits)]


def shards_in_dir(path: str | os.PathLike) -> list[Path]:
    """A dataset root -> its committed shards; any other directory -> the ``.tar`` files below it."""
    path = Path(path)
    if (path / COMMITS_DIR).is_dir():
        return committed_shards(path)
    return sorted(path.rglob("*" + SHARD_SUFFIX))


def shard_uris(root: Root, commits: list[CommitRecord] | None = None) -> list[str]:
    """Filesystem paths (for ``Storage.at(root).fs``) of committed, non-empty shards in commit order,
    e.g. for ``ray.data.read_webdataset(paths, filesystem=fs)``."""
    store = Storage.at(root)
    commits = list_commits(store) if commits is None else commits
    return [store.path(shard_path(stem_of(r.shard))) for r in commits if r.num_samples > 0]


# -- manifest / rejects -------------------------------------------------------------------------
def _read_parts(store: Storage, folder: str, schema: pa.Schema, commits: list[CommitRecord]) -> pa.Table:
    stale = _stale_clips(commits)
    clean, dirty = [], []
    for record in commits:
        rel = f"{folder}/{stem_of(record.shard)}{PART_SUFFIX}"
        (dirty if record.shard in stale else clean).append((record, rel))
    tables = []
    if clean:
        paths = [store.path(rel) for _, rel in clean]
        tables.append(pads.dataset(paths, schema=schema, format="parquet", filesystem=store.fs).to_table())
    for record, rel in dirty:
        table = pq.read_table(store.path(rel), schema=schema, filesystem=store.fs)
        keep = pc.invert(pc.is_in(table.column("clip_id"), value_set=pa.array(stale[record.shard])))
        tables.append(table.filter(keep))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def read_manifest(root: Root, commits: list[CommitRecord] | None = None) -> pa.Table:
    """All committed samples' manifest rows as one table (the per-shard parts read as one dataset)."""
    store = Storage.at(root)
    return _read_parts(store, MANIFEST_DIR, MANIFEST_SCHEMA, list_commits(store) if commits is None else commits)


def read_rejects(root: Root, commits: list[CommitRecord] | None = None) -> pa.Table:
    """All committed rejects; a retried clip's rejects count from its latest commit only."""
    store = Storage.at(root)
    return _read_parts(store, REJECTS_DIR, REJECTS_SCHEMA, list_commits(store) if commits is None else commits)


# -- shard contents -----------------------------------------------------------------------------
MemberIndex = dict[str, dict[str, tuple[int, int]]]


def index_tar(fileobj_or_path) -> MemberIndex:
    """``{key: {suffix: (data offset, size)}}`` from the tar headers alone (data blocks are skipped)."""
    if isinstance(fileobj_or_path, (str, os.PathLike)):
        with open(fileobj_or_path, "rb") as fh:
            return index_tar(fh)
    index: MemberIndex = {}
    with tarfile.open(fileobj=fileobj_or_path, mode="r:") as tar:
        for info in tar:
            parts = split_member_name(info.name) if info.isfile() else None
            if parts is not None:
                index.setdefault(parts[0], {})[parts[1]] = (info.offset_data, info.size)
    return index


def index_shard(root: Root, shard: str) -> MemberIndex:
    store = Storage.at(root)
    with store.open_input(shard_path(stem_of(shard))) as fh:
        return index_tar(fh)


@dataclass
class LayeredClip:
    """A decoded sample: its record and the four layers as uint8 arrays."""

    record: LayeredSample
    fg: np.ndarray     # (T, H, W, 3)
    alpha: np.ndarray  # (T, H, W)
    bg: np.ndarray     # (T, H, W, 3)
    blend: np.ndarray  # (T, H, W, 3)
    extra: dict = field(default_factory=dict, repr=False)


def decode_sample(members: dict[str, bytes | str | dict]) -> LayeredClip:
    """Decode a sample's members (bytes as read from a shard, by webdataset or Ray) into arrays."""
    from dataset_builder.io.video import decode_bytes

    raw = members[JSON_MEMBER]
    record = (LayeredSample.model_validate(raw) if isinstance(raw, dict)
              else LayeredSample.model_validate_json(raw))
    layers = {name: decode_bytes(members[suffix], gray=(name == "alpha")) for name, suffix in LAYER_MEMBERS.items()}
    n = min(len(v) for v in layers.values())  # codecs may drop/duplicate a trailing frame; trust the shortest
    return LayeredClip(record, *(layers[name][:n] for name in LAYER_MEMBERS))


def iter_samples(root: Root, decode: bool = False, suffixes: tuple[str, ...] | None = None
                 ) -> Iterator[dict[str, bytes] | LayeredClip]:
    """Every committed sample in commit order: raw ``{"__key__", "__shard__", suffix: bytes}`` dicts,
    or :class:`LayeredClip` with ``decode=True``. ``suffixes`` limits which members are read."""
    store = Storage.at(root)
    commits = list_commits(store)
    owner = latest_owner(commits)
    for record in commits:
        if record.num_samples == 0:
            continue
        rel = shard_path(stem_of(record.shard))
        with store.open_input(rel) as fh:
            index = index_tar(fh)
            for key, members in index.items():
                sample: dict = {"__key__": key, "__shard__": store.display(rel)}
                for suffix, (offset, size) in members.items():
                    if suffixes is None or suffix in suffixes:
                        fh.seek(offset)
                        sample[suffix] = fh.read(size)
                clip_id = _clip_of(sample, key)
                if clip_id is not None and owner.get(clip_id, record.shard) != record.shard:
                    continue  # superseded by a later commit of the same clip
                yield decode_sample(sample) if decode else sample


def _clip_of(sample: dict, key: str) -> str | None:
    raw = sample.get(JSON_MEMBER)
    if raw is None:
        return None
    return json.loads(raw).get("clip_id")
