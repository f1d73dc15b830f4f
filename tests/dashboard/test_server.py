"""The HTTP API end to end on 127.0.0.1 (ephemeral port)."""

import http.client
import io
import json
import tarfile
import threading

import numpy as np
import pytest
from PIL import Image

from dashboard.server import make_server
from dataset_builder.io.video import decode_bytes
from tests.dashboard.conftest import SAMPLES, H, T, W


@pytest.fixture(scope="module")
def server(tiny_dataset):
    srv = make_server(tiny_dataset, "127.0.0.1", 0, cache_bytes=8 << 20)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def get(server, path, headers=None, method="GET"):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), body


def get_json(server, path):
    status, headers, body = get(server, path)
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    return json.loads(body)


def tar_bytes(root, key, suffix):
    for shard in sorted((root / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            if f"{key}.{suffix}" in tar.getnames():
                return tar.extractfile(f"{key}.{suffix}").read()
    raise KeyError(key)


def test_binds_localhost(server):
    assert server.server_address[0] == "127.0.0.1"


def test_page_and_static(server):
    status, headers, body = get(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"/static/app.js" in body and b"/static/style.css" in body
    for asset in ("app.js", "style.css"):
        assert get(server, f"/static/{asset}")[0] == 200
    assert b"http" not in get(server, "/static/app.js")[2].replace(b"http://www.w3.org", b"")  # nothing external


def test_overview(server):
    o = get_json(server, "/api/overview")
    assert (o["samples"], o["shards"], o["rejects"]) == (3, 2, 3)
    assert o["labels"] == {"dog": 2, "ball": 1}
    assert o["reject_reasons"]["filter_foreground"] == {"too_small": 2}
    assert sum(o["score_hists"]["iou"]["counts"]) == 3


def test_samples_filters_and_paging(server):
    assert get_json(server, "/api/samples")["total"] == 3
    res = get_json(server, "/api/samples?label=dog&score=iou&min=0.8")
    assert [r["key"] for r in res["items"]] == ["clipa_00"]
    assert [r["key"] for r in get_json(server, "/api/samples?q=river")["items"]] == ["clipb_00"]
    assert [r["key"] for r in get_json(server, "/api/samples?tag=toy&kind=coarse")["items"]] == ["clipa_01"]
    page = get_json(server, "/api/samples?offset=1&limit=1")
    assert page["total"] == 3 and len(page["items"]) == 1 and page["offset"] == 1
    assert get(server, "/api/samples?min=abc&score=iou")[0] == 400


def test_samples_sort_by_score(server):
    keys = lambda qs: [r["key"] for r in get_json(server, "/api/samples?" + qs)["items"]]  # noqa: E731
    assert keys("sort=iou") == ["clipa_01", "clipb_00", "clipa_00"]
    assert keys("sort=iou&order=desc") == ["clipa_00", "clipb_00", "clipa_01"]
    assert keys("sort=aesthetic&order=desc")[-1] == "clipb_00"  # has no such score: last either way
    assert keys("sort=aesthetic")[-1] == "clipb_00"


def test_sample_detail(server):
    s = get_json(server, "/api/sample/clipb_00")
    assert s["row"]["label"] == "dog" and s["record"]["kind"] == "copypaste"
    assert s["record"]["captions"]["blend"] == SAMPLES["clipb_00"][4]
    assert set(s["layers"]) == {"fg", "alpha", "bg", "blend"}
    assert s["members"]["alpha.mkv"]["url"] == "/media/clipb_00/alpha.mkv"


def test_rejects(server):
    assert get_json(server, "/api/rejects")["total"] == 3
    res = get_json(server, "/api/rejects?stage=inpaint")
    assert [(r["clip_id"], r["reason"]) for r in res["items"]] == [("clipe", "oom")]


def test_member_bytes_equal_tar_bytes(server, tiny_dataset):
    for key in SAMPLES:
        for suffix in ("fg.mp4", "alpha.mkv", "bg.mp4", "blend.mp4", "json"):
            status, headers, body = get(server, f"/media/{key}/{suffix}")
            assert status == 200 and body == tar_bytes(tiny_dataset, key, suffix)
            assert headers["Accept-Ranges"] == "bytes"
    assert get(server, "/media/clipa_00/alpha.mkv")[1]["Content-Type"] == "video/x-matroska"


def test_range_requests(server, tiny_dataset):
    whole = tar_bytes(tiny_dataset, "clipa_01", "blend.mp4")
    status, headers, body = get(server, "/media/clipa_01/blend.mp4", {"Range": "bytes=100-199"})
    assert status == 206 and body == whole[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    status, _, body = get(server, "/media/clipa_01/blend.mp4", {"Range": "bytes=-50"})
    assert status == 206 and body == whole[-50:]
    status, _, body = get(server, "/play/clipa_01/blend.mp4", {"Range": "bytes=10-"})
    assert status == 206 and body == whole[10:]  # H.264 members are served as stored
    status, headers, _ = get(server, "/media/clipa_01/blend.mp4", {"Range": f"bytes={len(whole)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
    status, headers, body = get(server, "/media/clipa_01/blend.mp4", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(whole)


def test_alpha_is_transcoded_for_browsers(server, tiny_dataset):
    status, headers, body = get(server, "/play/clipa_00/alpha.mp4")
    assert status == 200 and headers["Content-Type"] == "video/mp4"
    frames = decode_bytes(body)
    stored = decode_bytes(tar_bytes(tiny_dataset, "clipa_00", "alpha.mkv"), gray=True)
    assert frames.shape == (T, H, W, 3) and stored.shape == (T, H, W)
    assert np.abs(frames[..., 0].astype(int) - stored).mean() < 3
    status, _, part = get(server, "/play/clipa_00/alpha.mp4", {"Range": "bytes=0-63"})
    assert status == 206 and part == body[:64]  # cached transcode, same bytes, ranged


def test_thumb_and_sheet(server):
    for path in ("/thumb/clipa_00.png", "/sheet/clipa_00.png"):
        status, headers, body = get(server, path)
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert Image.open(io.BytesIO(body)).size[0] > 0


@pytest.mark.parametrize("path", ["/api/sample/nope", "/media/nope/fg.mp4", "/media/clipa_00/nope.mp4",
                                  "/play/nope/alpha.mp4", "/play/clipa_00/depth.mp4", "/thumb/nope.png",
                                  "/api/nothing", "/static/nothing.js"])
def test_unknown_is_404(server, path):
    status, _, body = get(server, path)
    assert status == 404 and "error" in json.loads(body)


@pytest.mark.parametrize("path", ["/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py",
                                  "/media/clipa_00/..%2f..%2fmanifest.parquet", "/media/..%2f_stats/x.json",
                                  "/../../etc/passwd", "/static/%2e%2e%2f%2e%2e%2fschemas%2f__init__.py"])
def test_path_traversal_refused(server, path):
    status, _, body = get(server, path)
    assert status in (403, 404)
    assert b"import" not in body and b"root:" not in body and b"PAR1" not in body


def test_media_cache_follows_the_shard_file_version(tiny_dataset, tmp_path, monkeypatch):
    """A rebuilt dataset reuses shard names and member offsets: thumbnails and sheets must not be served
    from the cache of the old file (the /play transcode cache already keyed on the file version)."""
    import os
    import shutil

    from dashboard import server as srv_mod

    root = tmp_path / "ds"
    shutil.copytree(tiny_dataset, root)
    calls = []
    monkeypatch.setattr(srv_mod, "thumbnail", lambda *a, **k: calls.append("thumb") or b"t%d" % len(calls))
    monkeypatch.setattr(srv_mod, "sample_contact_sheet", lambda *a: calls.append("sheet") or b"s%d" % len(calls))
    app = srv_mod.DashboardApp(root)
    first = app.thumb("clipa_00"), app.sheet("clipa_00")
    assert (app.thumb("clipa_00"), app.sheet("clipa_00")) == first and len(calls) == 2  # cached
    shard = app.dataset.member("clipa_00", "json").path
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the shard was written again
    assert (app.thumb("clipa_00"), app.sheet("clipa_00")) != first and len(calls) == 4

    def boom() -> bytes:
        raise RuntimeError("decode failed")

    with pytest.raises(RuntimeError):
        app.cached(("x",), boom)
    assert not app._locks  # a failed computation leaves no per-key lock behind
