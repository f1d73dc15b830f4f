"""Real sample clips from the Debian ``opencv-doc`` package: a static-camera street scene (vtest.avi)
and hand-held objects (cup.mp4, box.mp4), for ``make shards``.

The .deb (Apache-2.0 AND BSD-3-Clause, see its ``copyright`` file, copied beside the clips) is
downloaded from the Debian archive, its sha256 checked, and only the listed members are read from
its ``data.tar.xz`` (ar + tar parsed in Python): the package is never installed. Each member is
checked against its own sha256 and written atomically, so a partial or tampered download writes
nothing. Cache: ``$LAYERFLOW_SAMPLE_CLIPS`` or ``~/.cache/layerflow/sample_clips``; idempotent.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dataset_builder.io.inputs import full_hash

DEB_NAME = "opencv-doc_4.6.0+dfsg-12_all.deb"
DEB_URL = "http://deb.debian.org/debian/pool/main/o/opencv/opencv-doc_4.6.0%2bdfsg-12_all.deb"
DEB_SHA256 = "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a"
LICENSE_NAME = "LICENSE-opencv-doc.txt"


class SampleClipError(RuntimeError):
    """A fetch that cannot complete; the message is the one line a user sees."""


@dataclass(frozen=True)
class Member:
    name: str  # file name in the cache
    path: str  # path inside data.tar.xz
    sha256: str  # of the member as stored (before gunzip for .gz members)
    gunzip: bool = False


MEMBERS = (
    Member("vtest.avi", "./usr/share/doc/opencv-doc/examples/data/vtest.avi",
           "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"),
    Member("cup.mp4", "./usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz",
           "d63f6bca6b0722c64486672614351d94dcd7d37a8104dc6e55e12f40fa582a9b", gunzip=True),
    Member("box.mp4", "./usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz",
           "2c38968ca5216a9d9d152913b583c501333f30578f9eedebe6e6d88768754737", gunzip=True),
    Member(LICENSE_NAME, "./usr/share/doc/opencv-doc/copyright",
           "ef9b88286b97b4de2aad6ef9442efc827eaa25564b6658fb96cf5f16c118cabc"),
)
CLIPS = tuple(m.name for m in MEMBERS if m.name != LICENSE_NAME)


def default_cache() -> Path:
    env = os.environ.get("LAYERFLOW_SAMPLE_CLIPS")
    return Path(env) if env else Path.home() / ".cache" / "layerflow" / "sample_clips"


def ar_member(deb: Path, name: str) -> tuple[int, int]:
    """(offset, size) of member ``name`` in an ar archive (a .deb), without reading the rest."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise SampleClipError(f"{deb} is not a .deb (ar) archive")
        while header := f.read(60):
            if len(header) < 60:
                break
            member = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip() or 0)
            if member == name:
                return f.tell(), size
            f.seek(size + (size & 1), 1)  # members are 2-byte aligned
    raise SampleClipError(f"{deb} has no {name}")


def extract(deb: Path, dest: Path, members: tuple[Member, ...] = MEMBERS, sha256: str = DEB_SHA256) -> list[Path]:
    """Verify ``deb`` and write ``members`` from its data.tar.xz into ``dest`` (each sha256-checked)."""
    got = full_hash(deb)
    if got != sha256:
        raise SampleClipError(f"sha256 mismatch for {deb}: got {got}, expected {sha256}; nothing written")
    offset, size = ar_member(deb, "data.tar.xz")
    wanted = {m.path: m for m in members}
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with open(deb, "rb") as f:
        f.seek(offset)
        with tarfile.open(fileobj=_Bounded(f, size), mode="r|xz") as tar:
            for info in tar:
                m = wanted.pop(info.name, None)
                if m is None or not info.isfile():
                    continue
                data = tar.extractfile(info).read()
                digest = hashlib.sha256(data).hexdigest()
                if digest != m.sha256:
                    raise SampleClipError(f"sha256 mismatch for {m.path} in {deb.name}: got {digest}, "
                                          f"expected {m.sha256}; not written")
                written.append(_write(dest / m.name, gzip.decompress(data) if m.gunzip else data))
                if not wanted:
                    break
    if wanted:
        raise SampleClipError(f"{deb.name} lacks {sorted(wanted)}")
    return written


def fetch(dest: Path | None = None, deb: Path | None = None, url: str = DEB_URL, timeout: float = 120) -> list[Path]:
    """The clips (and the licence) in ``dest``; downloads the .deb only when one is missing.

    ``deb``: a local copy of the package (offline machines, tests) instead of ``url``.
    """
    dest = dest or default_cache()
    todo = tuple(m for m in MEMBERS if not (dest / m.name).is_file())
    if todo:
        if deb is not None:
            extract(deb, dest, todo)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="layerflow-opencv-doc-"))
            try:
                local = tmp / DEB_NAME
                try:
                    with urllib.request.urlopen(url, timeout=timeout) as r, open(local, "wb") as f:
                        shutil.copyfileobj(r, f, 1 << 20)
                except OSError as exc:
                    raise SampleClipError(f"could not download {url} ({exc}); pass a local copy with "
                                          f"--opencv-deb (apt-get download opencv-doc)") from exc
                extract(local, dest, todo)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return [dest / m.name for m in MEMBERS]


def _write(target: Path, data: bytes) -> Path:
    part = target.with_name(target.name + ".part")
    part.write_bytes(data)
    part.replace(target)
    return target


class _Bounded:
    """A read-only view of ``size`` bytes of ``f`` from its current position (one ar member)."""

    def __init__(self, f, size: int):
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data
