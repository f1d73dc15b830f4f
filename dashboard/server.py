"""QA dashboard HTTP server (stdlib only): JSON API + static page + shard members with Range support.

    python -m dashboard.server --data out/coarse --port 8765

Binds 127.0.0.1 by default: the data may be non-commercial footage, so exposing it is opt-in (--host).

Routes::

    /                               the single-page app (dashboard/static/)
    /api/overview                   dataset summary (data.summarize)
    /api/samples?label=&tag=&kind=&score=&min=&max=&q=&offset=&limit=
    /api/sample/<key>               manifest row + full .json record + member list
    /api/rejects?stage=&q=&offset=&limit=
    /media/<key>/<suffix>           a member's raw bytes, straight from the tar (Range)
    /play/<key>/<layer>.mp4         browser-playable layer: raw if H.264 MP4, else transcoded (Range)
    /thumb/<key>.png, /sheet/<key>.png   grid thumbnail, first/middle/last contact sheet
"""

from __future__ import annotations

import argparse
import json
import math
import mimetypes
import sys
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from dashboard.data import (
    Dataset,
    MemberRef,
    RangeNotSatisfiable,
    filter_rejects,
    filter_samples,
    iter_member,
    parse_range,
    read_member,
)
from dashboard.media import (
    LRUBytes,
    decode_layer,
    is_browser_playable,
    sample_contact_sheet,
    thumbnail,
    to_browser_mp4,
)
from schemas import LAYER_MEMBERS

STATIC_DIR = Path(__file__).resolve().parent / "static"
_CONTENT_TYPES = {".mp4": "video/mp4", ".mkv": "video/x-matroska", ".json": "application/json",
                  ".png": "image/png", ".html": "text/html; charset=utf-8", ".js": "text/javascript",
                  ".css": "text/css"}
MAX_PAGE = 500


def _finite(obj):
    """JSON for browsers: NaN/inf are not valid JSON, so they become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _content_type(name: str) -> str:
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


class HTTPError(Exception):
    def __init__(self, status: HTTPStatus, message: str = ""):
        super().__init__(message or status.phrase)
        self.status = status


class DashboardApp:
    """State shared by all request threads: the dataset and the derived-media cache."""

    def __init__(self, data_dir: str | Path, cache_bytes: int = 256 << 20):
        self.dataset = Dataset(data_dir)
        self.cache = LRUBytes(cache_bytes)
        self._locks: dict[tuple, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def cached(self, key: tuple, make: Callable[[], bytes]) -> bytes:
        """Compute once per key even under concurrent requests (a video page asks for 4 at once)."""
        value = self.cache.get(key)
        if value is not None:
            return value
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        try:
            with lock:
                value = self.cache.get(key)
                if value is None:
                    value = make()
                    self.cache.put(key, value)
        finally:
            with self._locks_guard:
                self._locks.pop(key, None)
        return value

    # -- JSON endpoints -------------------------------------------------------------------------
    def overview(self) -> dict:
        summary = self.dataset.summary()
        summary["root"] = str(self.dataset.root)
        return summary

    def samples(self, query: dict[str, str]) -> dict:
        def num(name: str) -> float | None:
            value = query.get(name, "").strip()
            if not value:
                return None
            try:
                return float(value)
            except ValueError as exc:
                raise HTTPError(HTTPStatus.BAD_REQUEST, f"{name} must be a number") from exc

        rows = filter_samples(self.dataset.manifest, label=query.get("label") or None,
                              tag=query.get("tag") or None, kind=query.get("kind") or None,
                              score=query.get("score") or None, score_min=num("min"), score_max=num("max"),
                              q=query.get("q") or None)
        sort = query.get("sort") or None
        if sort:  # by one score; samples without it go last whatever the order
            sign = -1.0 if query.get("order") == "desc" else 1.0
            rows = sorted(rows, key=lambda r: (sort not in r["scores"], sign * r["scores"].get(sort, 0.0)))
        offset, limit = _page(query)
        return {"total": len(rows), "offset": offset, "limit": limit, "items": rows[offset:offset + limit]}

    def sample(self, key: str) -> dict:
        row = self.dataset.by_key.get(key)
        members = self.dataset.members(key)
        if row is None or not members:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"unknown sample {key!r}")
        layers = {name: f"/play/{key}/{name}.mp4" for name, suffix in LAYER_MEMBERS.items() if suffix in members}
        return {
            "row": row,
            "record": self.dataset.record(key),
            "members": {s: {"size": m.size, "url": f"/media/{key}/{s}"} for s, m in sorted(members.items())},
            "layers": layers,
            "thumb": f"/thumb/{key}.png",
            "sheet": f"/sheet/{key}.png",
        }

    def rejects(self, query: dict[str, str]) -> dict:
        rows = filter_rejects(self.dataset.rejects, stage=query.get("stage") or None, q=query.get("q") or None)
        offset, limit = _page(query)
        return {"total": len(rows), "offset": offset, "limit": limit, "items": rows[offset:offset + limit]}

    # -- media ----------------------------------------------------------------------------------
    def member_ref(self, key: str, suffix: str) -> MemberRef:
        ref = self.dataset.member(key, suffix)
        if ref is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no member {suffix!r} for sample {key!r}")
        return ref

    def _decoded(self, key: str, layer: str):
        ref = self.member_ref(key, LAYER_MEMBERS[layer])
        return decode_layer(read_member(ref), LAYER_MEMBERS[layer])

    def playable(self, key: str, layer: str) -> MemberRef | bytes:
        """A browser-playable version of one layer: the member itself when it already is one."""
        if layer not in LAYER_MEMBERS:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"unknown layer {layer!r}")
        suffix = LAYER_MEMBERS[layer]
        ref = self.member_ref(key, suffix)
        ident = _ident(ref)
        playable = self.cached(("playable?",) + ident, lambda: b"1" if is_browser_playable(
            read_member(ref), suffix) else b"0")
        if playable == b"1":
            return ref
        fps = float(self.dataset.by_key[key]["fps"] or 0.0)
        return self.cached(("h264",) + ident, lambda: to_browser_mp4(read_member(ref), suffix, fps))

    def thumb(self, key: str) -> bytes:
        ref = self.member_ref(key, LAYER_MEMBERS["blend"])
        alpha = self.dataset.member(key, LAYER_MEMBERS["alpha"])

        def make() -> bytes:
            return thumbnail(self._decoded(key, "blend"), self._decoded(key, "alpha") if alpha else None)

        return self.cached(("thumb",) + _ident(ref), make)

    def sheet(self, key: str) -> bytes:
        ref = self.member_ref(key, "json")
        return self.cached(("sheet",) + _ident(ref), lambda: sample_contact_sheet(self.dataset, key))


def _ident(ref: MemberRef) -> tuple:
    """Cache identity of a member: where it is and which version of the file (a rebuilt dataset reuses
    shard names and offsets, so path + offset alone would serve the old sample's media)."""
    return str(ref.path), ref.offset, ref.size, ref.path.stat().st_mtime_ns


def _page(query: dict[str, str]) -> tuple[int, int]:
    try:
        offset = max(0, int(query.get("offset") or 0))
        limit = min(MAX_PAGE, max(1, int(query.get("limit") or 100)))
    except ValueError as exc:
        raise HTTPError(HTTPStatus.BAD_REQUEST, "offset/limit must be integers") from exc
    return offset, limit


def _segments(path: str) -> list[str]:
    """Decoded path segments; any that could climb or smuggle a separator is refused."""
    segments = [unquote(s) for s in path.split("/") if s]
    for s in segments:
        if s in (".", "..") or "/" in s or "\\" in s or "\x00" in s:
            raise HTTPError(HTTPStatus.FORBIDDEN, "path refused")
    return segments


class Handler(BaseHTTPRequestHandler):
    server_version = "LayerflowQA/1.0"
    app: DashboardApp
    verbose = False

    def log_message(self, fmt: str, *args) -> None:
        if self.verbose:
            super().log_message(fmt, *args)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        try:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            self._route(_segments(url.path), query, head)
        except HTTPError as err:
            self._send_json({"error": str(err)}, err.status, head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser cancelled (normal when a <video> seeks)
        except Exception as exc:  # noqa: BLE001 - one bad sample must not take the dashboard down
            self.log_error("error serving %s: %r", self.path, exc)
            try:
                self._send_json({"error": f"{type(exc).__name__}: {exc}"}, HTTPStatus.INTERNAL_SERVER_ERROR, head)
            except OSError:
                pass

    def _route(self, seg: list[str], query: dict[str, str], head: bool) -> None:
        app = self.app
        if seg and seg[0] in ("api", "media", "play", "thumb", "sheet"):
            app.dataset.reload_if_changed()
        if not seg:
            return self._send_static("index.html", head)
        match seg:
            case ["static", *rest] if rest:
                return self._send_static("/".join(rest), head)
            case ["api", "overview"]:
                return self._send_json(app.overview(), head=head)
            case ["api", "samples"]:
                return self._send_json(app.samples(query), head=head)
            case ["api", "sample", key]:
                return self._send_json(app.sample(key), head=head)
            case ["api", "rejects"]:
                return self._send_json(app.rejects(query), head=head)
            case ["media", key, suffix]:
                ref = app.member_ref(key, suffix)
                return self._send_ranged(_content_type(suffix), ref.size, lambda s, e: iter_member(ref, s, e), head)
            case ["play", key, name] if name.endswith(".mp4"):
                out = app.playable(key, name[:-len(".mp4")])
                if isinstance(out, MemberRef):
                    ref = out
                    return self._send_ranged("video/mp4", ref.size, lambda s, e: iter_member(ref, s, e), head)
                return self._send_ranged("video/mp4", len(out), lambda s, e: [out[s:e + 1]], head)
            case ["thumb", name] if name.endswith(".png"):
                return self._send_bytes(app.thumb(name[:-4]), "image/png", head)
            case ["sheet", name] if name.endswith(".png"):
                return self._send_bytes(app.sheet(name[:-4]), "image/png", head)
        raise HTTPError(HTTPStatus.NOT_FOUND, "not found")

    # -- responses ------------------------------------------------------------------------------
    def _send_json(self, obj, status: HTTPStatus = HTTPStatus.OK, head: bool = False) -> None:
        body = json.dumps(_finite(obj), allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_bytes(self, body: bytes, content_type: str, head: bool) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_static(self, rel: str, head: bool) -> None:
        path = (STATIC_DIR / rel).resolve()
        if not path.is_relative_to(STATIC_DIR):
            raise HTTPError(HTTPStatus.FORBIDDEN, "path refused")
        if not path.is_file():
            raise HTTPError(HTTPStatus.NOT_FOUND, "not found")
        body = path.read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", _content_type(path.name))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_ranged(self, content_type: str, size: int, chunks: Callable[[int, int], Iterable[bytes]],
                     head: bool) -> None:
        """200 with the whole body, or 206/416 for a ``Range`` request (what <video> seeking uses)."""
        try:
            rng = parse_range(self.headers.get("Range"), size)
        except RangeNotSatisfiable:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = rng if rng else (0, size - 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if rng else HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(max(0, end - start + 1)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head or size == 0:
            return
        for chunk in chunks(start, end):
            self.wfile.write(chunk)


def make_server(data_dir: str | Path, host: str = "127.0.0.1", port: int = 8765,
                cache_bytes: int = 256 << 20, verbose: bool = False) -> ThreadingHTTPServer:
    """A ready-to-serve server (``port=0`` picks a free one; see ``server.server_address``)."""
    app = DashboardApp(data_dir, cache_bytes)
    handler = type("BoundHandler", (Handler,), {"app": app, "verbose": verbose})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.app = app  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="dataset directory (contains shards/, _stats/)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: localhost only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--cache-mb", type=int, default=256, help="bound of the transcode/thumbnail cache")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    server = make_server(args.data, args.host, args.port, args.cache_mb << 20, args.verbose)
    host, port = server.server_address[:2]
    summary = server.app.dataset.summary()  # type: ignore[attr-defined]
    print(f"QA dashboard for {args.data}: {summary['samples']} samples, {summary['shards']} shards, "
          f"{summary['rejects']} rejects -> http://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
