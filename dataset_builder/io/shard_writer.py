"""Write committed WebDataset shards to any :class:`~dataset_builder.io.storage.Storage` (names and the
commit protocol are owned by :mod:`dataset_builder.io.layout`).

One shard is written as::

    _tmp/<uuid>.tar, _tmp/<uuid>.manifest.parquet, _tmp/<uuid>.rejects.parquet   (data first)
    _pending/<stem>.json                       intent: these names are ours if we die now
    shards/<stem>.tar, manifest/<stem>.parquet, rejects/<stem>.parquet            (moved into place)
    _stats/<stem>_stats.json                   the commit record, LAST (atomic rename / one PUT)
    (then the intent marker is removed)

A clip is the unit of commit: its samples and rejects land in the same shard. The writer runs in the
driver (local executor) or in Ray workers (the writer stage), and returns only commit records.
:class:`OutputDir` is held by the build for the whole run: the lease (one build per output dir), the
cleanup of this builder's own crash leftovers (never anything else), and what is already committed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from dataset_builder.io import layout
from dataset_builder.io.storage import Storage, is_disk_full
from schemas import MANIFEST_SCHEMA, REJECTS_SCHEMA, CommitRecord, LayeredSample, RejectRecord, StageStats, manifest_row

log = logging.getLogger(__name__)

_TAR_MTIME = 0.0  # fixed, so identical inputs give byte-identical shards


class OutputDirBusy(RuntimeError):
    """Another build holds the output directory's lease."""


class DiskFull(OSError):
    """The output filesystem is full; this writer's own partial files were removed."""


@dataclass
class SampleToWrite:
    record: LayeredSample
    #: member suffix (e.g. "fg.mp4") -> bytes; the ".json" member is generated from ``record``.
    members: dict[str, bytes]


def writer_id() -> str:
    """host:pid, plus @<Ray node id> inside a Ray worker (which node wrote a shard)."""
    ident = f"{socket.gethostname()}:{os.getpid()}"
    try:
        import ray

        if ray.is_initialized():
            ident += "@" + ray.get_runtime_context().get_node_id()[:12]
    except Exception:  # noqa: BLE001 - provenance only
        pass
    return ident


@dataclass
class _OpenShard:
    tmp: str
    fh: object
    tar: object
    manifest: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    clip_ids: list[str] = field(default_factory=list)
    clip_sources: list[str] = field(default_factory=list)
    clip_failures: list[str] = field(default_factory=list)
    rejected_clip_ids: list[str] = field(default_factory=list)
    planned: dict[str, int] = field(default_factory=dict)
    stage_stats: dict[str, StageStats] = field(default_factory=dict)
    num_samples: int = 0
    nbytes: int = 0


class ShardWriter:
    """Streams clips into shards of at most ``samples_per_shard`` samples / ``max_shard_bytes`` bytes.

    With ``skip_committed`` (default) clips already committed under ``out`` are skipped (``add_clip``
    returns False); workers, whose inputs the driver has already anti-joined, pass ``skip_committed=False``.
    """

    def __init__(self, out: str | os.PathLike | Storage, samples_per_shard: int = 64,
                 max_shard_bytes: int = 1 << 30, retry_rejects: bool = False, skip_committed: bool = True):
        if samples_per_shard < 1:
            raise ValueError("samples_per_shard must be >= 1")
        self.store = Storage.at(out)
        for sub in layout.DATA_DIRS:
            self.store.makedirs(sub)
        self.samples_per_shard = samples_per_shard
        self.max_shard_bytes = max_shard_bytes
        self._done = (layout.committed_clip_ids(self.store, include_rejected=not retry_rejects)
                      if skip_committed else set())
        self._shard: _OpenShard | None = None
        self.commits: list[CommitRecord] = []
        self.written_samples = 0
        self.written_rejects = 0
        self.skipped_clips = 0

    def committed_clip_ids(self, include_rejected: bool = True) -> set[str]:
        return layout.committed_clip_ids(self.store, include_rejected)

    # -- writing --------------------------------------------------------------------------------
    def add_clip(self, clip_id: str, samples: list[SampleToWrite], rejects: list[RejectRecord],
                 source: str = "", planned: int = 0, failure: str = "",
                 stage_seconds: dict[str, tuple[float, int]] | None = None) -> bool:
        """Write all samples and rejects of one clip. Returns False if it was already committed.
        ``source``/``planned``: the input it came from and how many clips were planned for that input
        (recorded so resume can skip whole inputs); ``failure``: its error signature, if any;
        ``stage_seconds``: its share of each stage's busy time (``RowState.stage_seconds``)."""
        if clip_id in self._done:
            self.skipped_clips += 1
            return False
        self._done.add(clip_id)
        try:
            shard = self._shard or self._open()
            for sample in samples:
                self._write_sample(shard, sample)
        except OSError as exc:
            self._fail(exc)
        shard.rejects.extend(r.model_dump() for r in rejects)
        shard.clip_ids.append(clip_id)
        shard.clip_sources.append(source)
        shard.clip_failures.append(failure)
        if source and planned:
            shard.planned[source] = planned
        for stage, (seconds, batch) in (stage_seconds or {}).items():
            shard.stage_stats.setdefault(stage, StageStats()).add(
                StageStats(seconds=seconds, items=1, calls=1.0 / max(1, batch)))
        if not samples:
            shard.rejected_clip_ids.append(clip_id)
        self.written_rejects += len(rejects)
        if shard.num_samples >= self.samples_per_shard or shard.nbytes >= self.max_shard_bytes:
            self.flush()
        return True

    def _open(self) -> _OpenShard:
        import webdataset as wds

        tmp = f"{layout.TMP_DIR}/{uuid.uuid4().hex}"
        fh = self.store.open_output(tmp + layout.SHARD_SUFFIX)
        self._shard = _OpenShard(tmp, fh, wds.TarWriter(fh, encoder=False, mtime=_TAR_MTIME))
        return self._shard

    def _write_sample(self, shard: _OpenShard, sample: SampleToWrite) -> None:
        key = layout.check_key(sample.record.key)
        members = {**sample.members, layout.JSON_MEMBER: sample.record.model_dump_json().encode()}
        nbytes = shard.tar.write({"__key__": key, **members})
        shard.manifest.append(manifest_row(sample.record, "", nbytes))
        shard.num_samples += 1
        shard.nbytes += nbytes
        self.written_samples += 1

    def flush(self) -> CommitRecord | None:
        """Commit the open shard (if any) and return its commit record."""
        shard = self._shard
        if shard is None:
            return None
        self._shard = None
        try:
            return self._commit(shard)
        except OSError as exc:
            self._shard = shard
            self._fail(exc)

    def _commit(self, shard: _OpenShard) -> CommitRecord:
        store = self.store
        shard.tar.close()  # closes the tar stream, not our output stream
        shard.fh.close()
        stem = layout.shard_stem(shard.clip_ids)
        name = layout.shard_file(stem)
        for row in shard.manifest:
            row["shard"] = name
        _write_parquet(store, shard.tmp + ".manifest" + layout.PART_SUFFIX,
                       pa.Table.from_pylist(shard.manifest, schema=MANIFEST_SCHEMA))
        _write_parquet(store, shard.tmp + ".rejects" + layout.PART_SUFFIX,
                       pa.Table.from_pylist(shard.rejects, schema=REJECTS_SCHEMA))
        record = CommitRecord(
            shard=name, num_samples=shard.num_samples, num_rejects=len(shard.rejects), bytes=shard.nbytes,
            clip_ids=shard.clip_ids, rejected_clip_ids=shard.rejected_clip_ids, clip_sources=shard.clip_sources,
            planned=shard.planned, clip_failures=shard.clip_failures if any(shard.clip_failures) else [],
            keys=[row["key"] for row in shard.manifest],
            labels=dict(Counter(row["label"] for row in shard.manifest)),
            reject_reasons=dict(Counter(f"{r['stage']}:{r['reason']}" for r in shard.rejects)),
            writer=writer_id(), stage_stats=shard.stage_stats,
        )
        store.write_bytes(layout.pending_path(stem), json.dumps({"writer": record.writer}).encode())
        store.move(shard.tmp + layout.SHARD_SUFFIX, layout.shard_path(stem))
        store.move(shard.tmp + ".manifest" + layout.PART_SUFFIX, layout.manifest_part_path(stem))
        store.move(shard.tmp + ".rejects" + layout.PART_SUFFIX, layout.rejects_part_path(stem))
        record.committed_at = time.time()
        store.write_bytes(layout.commit_path(stem), record.model_dump_json(indent=1).encode(), fsync=True)
        store.delete(layout.pending_path(stem))
        self.commits.append(record)
        return record

    def _fail(self, exc: OSError):
        """Remove this writer's partial files; a full disk becomes :class:`DiskFull` (one clear line)."""
        self.abort()
        if is_disk_full(exc):
            raise DiskFull(exc.errno, f"output filesystem full while writing {self.store.uri} "
                           f"(this build's partial files were removed; free space and rerun to resume)") from exc
        raise exc

    def abort(self) -> None:
        """Drop the open shard: its tmp files go, nothing committed changes."""
        shard, self._shard = self._shard, None
        if shard is None:
            return
        for closer in (shard.tar.close, shard.fh.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - cleanup after a failure must not mask it
                pass
        for suffix in (layout.SHARD_SUFFIX, ".manifest" + layout.PART_SUFFIX, ".rejects" + layout.PART_SUFFIX):
            try:
                self.store.delete(shard.tmp + suffix)
            except OSError:
                pass

    def close(self) -> dict:
        """Commit the open shard; returns counts of this writer and of the whole committed dataset."""
        self.flush()
        commits = layout.list_commits(self.store)
        return {
            "shards": sum(1 for c in commits if c.num_samples > 0),
            "samples_total": layout.read_manifest(self.store, commits).num_rows,
            "rejects_total": layout.read_rejects(self.store, commits).num_rows,
            "samples_written_now": self.written_samples,
            "rejects_written_now": self.written_rejects,
            "clips_skipped_as_committed": self.skipped_clips,
        }

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.flush()
        else:  # leave no half-written shard behind
            self.abort()


_OWN_TMP_RE = re.compile(r"^(\.[^/]+\.[0-9a-f]{8}\.tmp|[0-9a-f]{32}(\.tar|\.manifest\.parquet|\.rejects\.parquet))$")


class OutputDir:
    """The output root of one build: holds its lease and removes this builder's crash leftovers.

    The lease (``_lease.json``: holder host:pid, start, heartbeat) makes a second build on the same
    directory fail at once naming the holder. It is stale, and taken over, when its holder process is
    gone (same host) or its heartbeat is older than ``ttl_s`` (other hosts). Only files this builder
    names (``_tmp/`` temp files, shards announced in ``_pending/`` but never committed) are ever deleted.
    """

    def __init__(self, out: str | os.PathLike | Storage, ttl_s: float = 600.0):
        self.store = Storage.at(out)
        self.ttl_s = ttl_s
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _lease(self, started_at: float | None = None) -> bytes:
        return json.dumps({"holder": writer_id(), "host": socket.gethostname(), "pid": os.getpid(),
                           "token": self.token, "started_at": started_at or time.time(),
                           "heartbeat_at": time.time()}).encode()

    def acquire(self) -> OutputDir:
        store = self.store
        try:
            store.makedirs()
            for sub in layout.DATA_DIRS:
                store.makedirs(sub)
        except OSError as exc:
            raise PermissionError(f"output dir {store.uri} is not writable: {exc}") from exc
        self._started = time.time()
        if not store.create_exclusive(layout.LEASE_FILE, self._lease(self._started)):
            holder = self.holder()
            if holder is not None and not self._is_stale(holder):
                raise OutputDirBusy(
                    f"output dir {store.uri} is in use by build {holder.get('holder')} since "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(holder.get('started_at', 0)))} UTC "
                    f"(lease {store.display(layout.LEASE_FILE)}); wait for it to finish, or delete the lease "
                    f"if that build is dead")
            log.warning("taking over stale lease of %s on %s", holder and holder.get("holder"), store.uri)
            store.write_bytes(layout.LEASE_FILE, self._lease(self._started))
        if (self.holder() or {}).get("token") != self.token:  # lost a race on an object store
            raise OutputDirBusy(f"output dir {store.uri} was claimed by another build at the same time")
        self._thread = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        self._thread.start()
        self.remove_own_leftovers()
        return self

    def holder(self) -> dict | None:
        try:
            return json.loads(self.store.read_bytes(layout.LEASE_FILE))
        except (FileNotFoundError, ValueError):
            return None
        except OSError:
            return None

    def _is_stale(self, holder: dict) -> bool:
        if holder.get("host") == socket.gethostname():
            pid = int(holder.get("pid", -1))
            if pid == os.getpid():
                return False  # this process already holds it (e.g. nested use): refuse a second holder
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False
        return time.time() - float(holder.get("heartbeat_at", 0)) > self.ttl_s

    def _heartbeat(self) -> None:
        while not self._stop.wait(max(1.0, self.ttl_s / 4)):
            try:
                if (self.holder() or {}).get("token") == self.token:
                    self.store.write_bytes(layout.LEASE_FILE, self._lease(self._started))
            except OSError as exc:  # a missed beat is not fatal; the lease only goes stale after ttl_s
                log.warning("lease heartbeat failed: %s", exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if (self.holder() or {}).get("token") == self.token:
            self.store.delete(layout.LEASE_FILE)

    def remove_own_leftovers(self) -> list[str]:
        """Delete what a killed writer of this builder left: temp files, and shards it announced in
        ``_pending/`` but never committed. Returns the removed paths."""
        store, removed = self.store, []
        committed = {name[: -len(layout.COMMIT_SUFFIX)]
                     for name in store.list(layout.COMMITS_DIR, layout.COMMIT_SUFFIX)}
        for name in store.list(layout.PENDING_DIR, ".json"):
            stem = name[: -len(".json")]
            if stem not in committed:
                for rel in (layout.shard_path(stem), layout.manifest_part_path(stem), layout.rejects_part_path(stem)):
                    if store.exists(rel):
                        store.delete(rel)
                        removed.append(rel)
            store.delete(f"{layout.PENDING_DIR}/{name}")
        for folder in (layout.TMP_DIR, layout.COMMITS_DIR, layout.PENDING_DIR):
            for name in store.list(folder):
                if _OWN_TMP_RE.match(name):
                    store.delete(f"{folder}/{name}")
                    removed.append(f"{folder}/{name}")
        return removed

    def __enter__(self) -> OutputDir:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def pack_fragment(samples: dict[str, dict[str, bytes]]) -> bytes:
    """In-memory tar of ``{key: {suffix: bytes}}`` as ``<key>.<suffix>`` members: how encoded samples
    travel from the encode stage to the writer."""
    import webdataset as wds

    buf = io.BytesIO()
    with wds.TarWriter(buf, encoder=False, mtime=_TAR_MTIME) as tar:
        for key, members in samples.items():
            tar.write({"__key__": key, **members})
    return buf.getvalue()


def unpack_fragment(payload: bytes) -> dict[str, dict[str, bytes]]:
    """Inverse of :func:`pack_fragment`, keys in packing order; empty payload -> {}."""
    samples: dict[str, dict[str, bytes]] = {}
    if payload:
        buf = io.BytesIO(payload)
        for key, members in layout.index_tar(buf).items():
            for suffix, (offset, size) in members.items():
                samples.setdefault(key, {})[suffix] = payload[offset:offset + size]
    return samples


def samples_from_payload(payload: bytes) -> list[SampleToWrite]:
    """An encode stage's tar fragment -> the samples to write, in object order (records from ``.json``)."""
    samples = []
    for members in unpack_fragment(payload).values():
        record = LayeredSample.model_validate_json(members.pop(layout.JSON_MEMBER))
        samples.append(SampleToWrite(record, members))
    return samples


def _write_parquet(store: Storage, rel: str, table: pa.Table) -> None:
    with store.open_output(rel) as fh:
        pq.write_table(table, fh)
