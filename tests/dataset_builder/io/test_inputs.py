"""Input discovery: every named or found path is usable or a reject with a reason; nothing vanishes."""

import os

import pyarrow.parquet as pq
import pytest

from dataset_builder.io import inputs
from dataset_builder.io.inputs import discover, fingerprint, manifest_blocks, write_manifest
from dataset_builder.ops.clips import file_fingerprint


def _reasons(entries):
    return {os.path.relpath(e.uri, e.uri.split("/corpus/")[0] + "/corpus"): e.reason for e in entries}


@pytest.fixture()
def corpus(tmp_path, bikes_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.mp4").write_bytes(bikes_path.read_bytes())
    (root / "sub" / "copy.mp4").write_bytes(bikes_path.read_bytes())  # byte-identical to a.mp4
    (root / "x.mp4").mkdir()  # a directory named like a video
    (root / "loop.mp4").symlink_to(root / "loop.mp4")
    (root / "dangling.mp4").symlink_to(root / "gone.mp4")
    (root / "linked.mp4").symlink_to(bikes_path)  # a good link is an input (its own path, same bytes)
    (root / "notes.txt").write_text("not a video")
    (root / "locked").mkdir()
    (root / "locked" / "hidden.mp4").write_bytes(b"x")
    (root / "up").symlink_to(root)  # a link back to the root must not loop the walk
    return root


def test_bad_input_corpus_is_all_accounted_for(corpus, monkeypatch):
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("/locked"):  # we run as root: simulate a directory we may not list
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(inputs.os, "scandir", scandir)
    entries = discover([str(corpus)], [".mp4"])
    reasons = _reasons(entries)
    assert reasons == {
        "a.mp4": "",
        "dangling.mp4": "dangling_symlink",
        "linked.mp4": "duplicate_input",
        "locked": "unreadable_path",
        "loop.mp4": "symlink_loop",
        "sub/copy.mp4": "duplicate_input",
        "x.mp4": "not_a_file",
    }
    by_name = {os.path.basename(e.uri): e for e in entries}
    assert by_name["copy.mp4"].detail.startswith(f"byte-identical to {corpus / 'a.mp4'}")
    assert "Permission denied" in by_name["locked"].detail
    assert "gone.mp4" in by_name["dangling.mp4"].detail
    assert by_name["a.mp4"].size == os.path.getsize(corpus / "a.mp4")
    assert by_name["a.mp4"].content_hash == file_fingerprint(corpus / "a.mp4")


def test_named_paths_that_cannot_be_used_are_rejects_not_errors(corpus):
    named = [str(corpus / n) for n in ("dangling.mp4", "loop.mp4", "notes.txt", "a.mp4")]
    reasons = _reasons(discover(named, [".mp4"]))
    # an explicitly named file is kept whatever its extension: the decoder will reject it with a reason
    assert reasons == {"dangling.mp4": "dangling_symlink", "loop.mp4": "symlink_loop", "notes.txt": "",
                       "a.mp4": ""}
    with pytest.raises(FileNotFoundError, match="matches no file"):
        discover([str(corpus / "typo*.mp4")], [".mp4"])


def test_fingerprint_collision_is_not_a_duplicate(tmp_path):
    # same size, same first and last MiB, different middle: only the full hash tells them apart
    head, tail = os.urandom(1 << 20), os.urandom(1 << 20)
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.write_bytes(head + b"\x00" * 4096 + tail)
    b.write_bytes(head + b"\x01" * 4096 + tail)
    assert fingerprint(str(a)) == fingerprint(str(b))
    assert [e.reason for e in discover([str(tmp_path)], [".mp4"])] == ["", ""]


def test_max_videos_caps_usable_inputs_but_keeps_rejects(corpus):
    entries = discover([str(corpus)], [".mp4"], max_videos=1)
    assert sum(e.usable for e in entries) == 1
    assert sorted(e.reason for e in entries if not e.usable) == ["dangling_symlink", "not_a_file", "symlink_loop"]


def test_uri_inputs_read_through_pyarrow_fs(tmp_path, bikes_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "b.mp4").write_bytes(bikes_path.read_bytes())
    uri = f"file://{tmp_path / 'v' / 'b.mp4'}"
    assert fingerprint(uri) == fingerprint(str(tmp_path / "v" / "b.mp4"))
    entries = discover([f"file://{tmp_path / 'v'}"], [".mp4"])
    assert [e.uri for e in entries] == [str(tmp_path / "v" / "b.mp4")]


def test_manifest_is_parquet_in_many_rows_per_block(tmp_path, corpus):
    entries = discover([str(corpus)], [".mp4"])
    write_manifest(entries, tmp_path / "inputs.parquet")
    table = pq.read_table(tmp_path / "inputs.parquet")
    assert table.column_names == ["uri", "size", "content_hash", "reason", "detail"]
    assert table.num_rows == len(entries)
    assert manifest_blocks(8) == 8 and manifest_blocks(20_000) == 200 and manifest_blocks(1000) == 64
