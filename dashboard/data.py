"""Read a built dataset directory into summaries, and locate shard members by byte offset.

Reads through :mod:`dataset_builder.io.layout` (the one owner of the format), so it sees exactly what
the writer committed, also after ``retry_rejects`` and while a build is still running. Members are
served by (offset, size) inside the tar, never extracted.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dataset_builder.io import layout
from dataset_builder.io.storage import Storage
from schemas import CommitRecord

#: Sample keys are produced by the builder without '.' or '/'; anything else is refused outright.
KEY_RE = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")
SUFFIX_RE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


# -- tables -------------------------------------------------------------------------------------
def load_stats(root: str | os.PathLike) -> list[dict]:
    """Commit records, in commit order."""
    return [record.model_dump() for record in layout.list_commits(root)]


def _records(stats: list[dict]) -> list[CommitRecord]:
    return [CommitRecord.model_validate(s) for s in stats]


def load_manifest(root: str | os.PathLike, stats: list[dict] | None = None) -> list[dict]:
    """Committed manifest rows as dicts; ``scores`` becomes a plain ``{name: float}`` dict."""
    commits = None if stats is None else _records(stats)
    rows = layout.read_manifest(root, commits).to_pylist()
    for row in rows:
        row["scores"] = {k: float(v) for k, v in (row.get("scores") or [])}
        row["tags"] = list(row.get("tags") or [])
    return rows


def load_rejects(root: str | os.PathLike, stats: list[dict] | None = None) -> list[dict]:
    """Committed rejects (a retried clip's from its latest commit only, as the writer counts them)."""
    return layout.read_rejects(root, None if stats is None else _records(stats)).to_pylist()


# -- summaries ----------------------------------------------------------------------------------
def histogram(values: Iterable[float], bins: int = 10, lo: float | None = None,
              hi: float | None = None) -> dict:
    """Equal-width histogram; the last bin is closed so ``hi`` itself is counted."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"edges": [], "counts": [], "n": 0}
    lo = min(vals) if lo is None else lo
    hi = max(vals) if hi is None else hi
    if hi <= lo:
        hi = lo + 1.0
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in vals:
        if lo <= v <= hi:
            counts[min(int((v - lo) / width), bins - 1)] += 1
    return {"edges": [lo + i * width for i in range(bins + 1)], "counts": counts, "n": len(vals)}


def _score_range(values: list[float]) -> tuple[float, float]:
    """Scores in [0, 1] (most quality scores) get fixed 0..1 bins so runs compare at a glance."""
    lo, hi = min(values), max(values)
    return (0.0, 1.0) if lo >= 0.0 and hi <= 1.0 else (lo, hi)


def summarize(manifest: list[dict], rejects: list[dict], stats: list[dict], bins: int = 10) -> dict:
    """Everything the overview page shows, as plain JSON-able data."""
    by_stage: dict[str, Counter] = {}
    for r in rejects:
        by_stage.setdefault(r["stage"], Counter())[r["reason"]] += 1
    score_values: dict[str, list[float]] = {}
    for row in manifest:
        for name, value in row["scores"].items():
            score_values.setdefault(name, []).append(value)
    score_hists = {}
    for name in sorted(score_values):
        lo, hi = _score_range(score_values[name])
        score_hists[name] = histogram(score_values[name], bins, lo, hi)
    frames = Counter((row["num_frames"], row["height"], row["width"]) for row in manifest)
    return {
        "samples": len(manifest),
        "shards": sum(1 for s in stats if s.get("num_samples", 0) > 0),
        "shards_committed": len(stats),
        "rejects": len(rejects),
        "bytes": sum(int(row.get("bytes") or 0) for row in manifest),
        "clips": len({row["clip_id"] for row in manifest}),
        "sources": len({row["source_uri"] for row in manifest}),
        "labels": dict(Counter(row["label"] for row in manifest).most_common()),
        "kinds": dict(Counter(row["kind"] for row in manifest).most_common()),
        "tags": dict(Counter(t for row in manifest for t in row["tags"]).most_common()),
        "shapes": {f"{t}x{h}x{w}": n for (t, h, w), n in frames.most_common()},
        "reject_stages": {stage: sum(c.values()) for stage, c in
                          sorted(by_stage.items(), key=lambda kv: -sum(kv[1].values()))},
        "reject_reasons": {stage: dict(c.most_common()) for stage, c in by_stage.items()},
        "score_names": sorted(score_values),
        "score_hists": score_hists,
    }


def filter_samples(
    rows: list[dict],
    label: str | None = None,
    tag: str | None = None,
    kind: str | None = None,
    score: str | None = None,
    score_min: float | None = None,
    score_max: float | None = None,
    q: str | None = None,
) -> list[dict]:
    """Rows matching every given filter. A score range excludes rows that lack that score;
    ``q`` is a case-insensitive substring search over the three captions, key and label."""
    needle = (q or "").strip().lower()
    out = []
    for row in rows:
        if label and row["label"] != label:
            continue
        if kind and row["kind"] != kind:
            continue
        if tag and tag not in row["tags"]:
            continue
        if score and (score_min is not None or score_max is not None):
            value = row["scores"].get(score)
            if value is None:
                continue
            if score_min is not None and value < score_min:
                continue
            if score_max is not None and value > score_max:
                continue
        if needle:
            hay = " ".join((row["caption_fg"], row["caption_bg"], row["caption_blend"], row["key"],
                            row["label"])).lower()
            if needle not in hay:
                continue
        out.append(row)
    return out


def filter_rejects(rows: list[dict], stage: str | None = None, q: str | None = None) -> list[dict]:
    needle = (q or "").strip().lower()
    return [r for r in rows if (not stage or r["stage"] == stage)
            and (not needle or needle in " ".join((r["reason"], r["detail"], r["source_uri"],
                                                   r["clip_id"])).lower())]


# -- shard members ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemberRef:
    """Where one tar member's bytes are: ``size`` bytes at ``offset`` in ``path``."""

    path: Path
    offset: int
    size: int


def index_tar(path: str | os.PathLike) -> dict[str, dict[str, MemberRef]]:
    """``{key: {suffix: MemberRef}}`` from the tar headers alone (data blocks are skipped by seek)."""
    path = Path(path)
    return {key: {suffix: MemberRef(path, offset, size) for suffix, (offset, size) in members.items()}
            for key, members in layout.index_tar(path).items()}


def iter_member(ref: MemberRef, start: int = 0, end: int | None = None,
                chunk: int = 1 << 18) -> Iterator[bytes]:
    """Bytes ``start..end`` (inclusive, as in HTTP ranges) of a member, in chunks."""
    end = ref.size - 1 if end is None else end
    if not 0 <= start <= end < ref.size:
        if ref.size == 0 and start == 0:
            return
        raise ValueError(f"range {start}-{end} outside member of {ref.size} bytes")
    remaining = end - start + 1
    with open(ref.path, "rb") as fh:
        fh.seek(ref.offset + start)
        while remaining > 0:
            data = fh.read(min(chunk, remaining))
            if not data:
                raise OSError(f"{ref.path}: truncated member at offset {ref.offset}")
            remaining -= len(data)
            yield data


def read_member(ref: MemberRef) -> bytes:
    return b"".join(iter_member(ref))


class RangeNotSatisfiable(ValueError):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The first range of an HTTP ``Range: bytes=...`` header as inclusive ``(start, end)``;
    None means "send everything" (no header, or a unit we don't serve)."""
    if not header or not header.strip().startswith("bytes="):
        return None
    spec = header.strip()[len("bytes="):].split(",")[0].strip()
    first, _, last = spec.partition("-")
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise RangeNotSatisfiable(header)
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError as exc:
        raise RangeNotSatisfiable(header) from exc
    if start >= size or end < start:
        raise RangeNotSatisfiable(header)
    return start, min(end, size - 1)


class Dataset:
    """A dataset directory, reloaded when a new shard is committed (so a running build shows up)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset directory not found: {self.root}")
        self._stamp: tuple | None = None
        self._lock = threading.RLock()
        self.reload_if_changed()

    def _current_stamp(self) -> tuple:
        store = Storage.at(self.root)
        names = store.list(layout.COMMITS_DIR, layout.COMMIT_SUFFIX)
        return tuple((name, store.stamp(f"{layout.COMMITS_DIR}/{name}")) for name in names)

    def reload_if_changed(self) -> bool:
        with self._lock:
            return self._reload()

    def _reload(self) -> bool:
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return False
        self.stats = load_stats(self.root)
        self.manifest = load_manifest(self.root, self.stats)
        self.rejects = load_rejects(self.root, self.stats)
        self.by_key = {row["key"]: row for row in self.manifest}
        self._tar_index: dict[str, dict[str, dict[str, MemberRef]]] = {}
        self._stamp = stamp
        return True

    def summary(self) -> dict:
        return summarize(self.manifest, self.rejects, self.stats)

    def members(self, key: str) -> dict[str, MemberRef]:
        """Members of one sample; empty if the key is unknown or malformed."""
        row = self.by_key.get(key) if KEY_RE.match(key or "") else None
        if row is None:
            return {}
        shard = Path(row["shard"]).name
        with self._lock:
            if shard not in self._tar_index:
                path = self.root / layout.shard_path(layout.stem_of(shard))
                self._tar_index[shard] = index_tar(path) if path.is_file() else {}
            return self._tar_index[shard].get(key, {})

    def member(self, key: str, suffix: str) -> MemberRef | None:
        if not SUFFIX_RE.match(suffix or ""):
            return None
        return self.members(key).get(suffix)

    def record(self, key: str) -> dict | None:
        """The sample's ``.json`` member (full LayeredSample incl. provenance)."""
        ref = self.member(key, "json")
        return json.loads(read_member(ref)) if ref else None
