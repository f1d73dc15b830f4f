"""Where datasets live: local paths and object stores (``s3://``, ``gs://``, ...) behind ``pyarrow.fs``.

Paths inside a :class:`Storage` are relative to its root and use ``/``. Object-store endpoints and
credentials come from the usual environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...) or from
URI query options (``s3://bucket/out?endpoint_override=127.0.0.1:9000&scheme=http``), as pyarrow reads
them. The one difference layout code must know: only a local filesystem has an atomic rename
(:attr:`Storage.atomic_rename`); on object stores a single object PUT is the atomic step.
"""

from __future__ import annotations

import errno
import os
import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs


def is_remote(uri: str | os.PathLike) -> bool:
    text = str(uri)
    return "://" in text and not text.startswith("file://")


@dataclass
class Storage:
    fs: pafs.FileSystem
    root: str
    #: What the user wrote (for messages and run summaries).
    uri: str

    @classmethod
    def at(cls, root: str | os.PathLike | Storage) -> Storage:
        if isinstance(root, Storage):
            return root
        text = os.fspath(root)
        if is_remote(text):
            fs, path = pafs.FileSystem.from_uri(text)
            return cls(fs, path.rstrip("/"), text.split("?", 1)[0])
        path = os.path.abspath(os.path.expanduser(text.removeprefix("file://")))
        return cls(pafs.LocalFileSystem(), path, path)

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def atomic_rename(self) -> bool:
        return self.local

    def path(self, *parts: str) -> str:
        """Filesystem path of ``parts`` under the root (what pyarrow readers take with ``self.fs``)."""
        return "/".join([self.root, *[p.strip("/") for p in parts if p]])

    def display(self, *parts: str) -> str:
        return "/".join([self.uri.rstrip("/"), *parts])

    def sub(self, *parts: str) -> Storage:
        return Storage(self.fs, self.path(*parts), self.display(*parts))

    # -- queries ------------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type != pafs.FileType.NotFound

    def is_file(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.File

    def is_dir(self, rel: str = "") -> bool:
        return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.Directory

    def size(self, rel: str) -> int:
        return self.fs.get_file_info(self.path(rel)).size

    def stamp(self, rel: str) -> tuple[int, int] | None:
        """(mtime_ns, size) or None if absent: cheap change detection for watchers."""
        info = self.fs.get_file_info(self.path(rel))
        if info.type == pafs.FileType.NotFound:
            return None
        return (info.mtime_ns or 0, info.size or 0)

    def list(self, rel: str, suffix: str = "") -> list[str]:
        """Names of the files directly in ``rel`` ending with ``suffix``, sorted; [] if it does not exist."""
        selector = pafs.FileSelector(self.path(rel), allow_not_found=True, recursive=False)
        names = [info.base_name for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File]
        return sorted(n for n in names if n.endswith(suffix))

    # -- bytes --------------------------------------------------------------------------------
    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as fh:
            return fh.read()

    def read_range(self, rel: str, offset: int, size: int) -> bytes:
        with self.fs.open_input_file(self.path(rel)) as fh:
            fh.seek(offset)
            return fh.read(size)

    def open_input(self, rel: str):
        """Seekable binary file (tar indexing, ranged reads)."""
        return self.fs.open_input_file(self.path(rel))

    def open_output(self, rel: str):
        self.makedirs(rel.rsplit("/", 1)[0] if "/" in rel else "")
        return self.fs.open_output_stream(self.path(rel))

    def write_bytes(self, rel: str, data: bytes, fsync: bool = False) -> None:
        """Write ``data`` so that readers see all of it or nothing: tmp + fsync + rename on a local
        filesystem (the tmp name is ``.<name>.<uuid>.tmp`` beside it), one PUT on object stores."""
        if not self.local:
            with self.open_output(rel) as fh:
                fh.write(data)
            return
        final = self.path(rel)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                if fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` only if absent; False if it exists. Atomic (O_EXCL) on local filesystems;
        check-then-put on object stores (callers re-read to confirm)."""
        if self.local:
            final = self.path(rel)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            try:
                fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return True
        if self.exists(rel):
            return False
        self.write_bytes(rel, data)
        return True

    def move(self, src: str, dst: str) -> None:
        """Rename (atomic locally; copy + delete on object stores)."""
        self.makedirs(dst.rsplit("/", 1)[0] if "/" in dst else "")
        self.fs.move(self.path(src), self.path(dst))

    def delete(self, rel: str) -> None:
        try:
            self.fs.delete_file(self.path(rel))
        except FileNotFoundError:
            pass
        except OSError as exc:  # pyarrow maps some "not found" cases to a plain OSError
            if self.exists(rel):
                raise exc

    def makedirs(self, rel: str = "") -> None:
        if self.local:
            os.makedirs(self.path(rel), exist_ok=True)
        # object stores have no directories; creating a marker object would only confuse listings

    def local_path(self, rel: str = "") -> str | None:
        """The OS path of ``rel`` for libraries that need one (webdataset, PyAV), or None if remote."""
        return self.path(rel) if self.local else None


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
