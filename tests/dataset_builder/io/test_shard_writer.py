import errno
import json
import tarfile

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from dataset_builder.io import layout
from dataset_builder.io.layout import committed_shards
from dataset_builder.io.shard_writer import DiskFull, OutputDir, OutputDirBusy, SampleToWrite, ShardWriter
from dataset_builder.io.storage import Storage
from schemas import Captions, LayeredSample, Provenance, RejectRecord


def _sample(clip_id: str, obj: int = 0, payload: bytes = b"x" * 100) -> SampleToWrite:
    record = LayeredSample(
        key=f"{clip_id}_{obj:02d}", clip_id=clip_id, object_id=obj, label="person", num_frames=16, height=8,
        width=8, fps=8.0, captions=Captions(fg="a person", bg="a street", blend="a person on a street"),
        tags=["person"], scores={"track": 0.9}, provenance=Provenance(source_uri="/v.mp4", start_frame=0,
                                                                       config_hash="abc"),
    )
    return SampleToWrite(record, {"fg.mp4": payload, "alpha.mkv": payload[:10], "bg.mp4": payload,
                                  "blend.mp4": payload})


def _reject(clip_id: str) -> RejectRecord:
    return RejectRecord(source_uri="/v.mp4", clip_id=clip_id, object_id=1, stage="filter_foreground",
                        reason="sky_like_band")


def _commits(root):
    return layout.list_commits(root)


def test_writes_shards_with_commit_records_manifest_and_rejects_parts(tmp_path):
    with ShardWriter(tmp_path, samples_per_shard=2) as writer:
        writer.add_clip("c0", [_sample("c0", 0), _sample("c0", 1)], [_reject("c0")])
        writer.add_clip("c1", [_sample("c1", 0)], [])
        writer.add_clip("c2", [], [_reject("c2")])
    shards = committed_shards(tmp_path)
    c0, c1 = _commits(tmp_path)
    assert [p.name for p in shards] == [c0.shard, c1.shard]
    assert c0.shard == layout.shard_file(layout.shard_stem(["c0"]))
    assert c0.num_samples == 2 and c0.clip_ids == ["c0"] and c0.keys == ["c0_00", "c0_01"]
    assert c0.reject_reasons == {"filter_foreground:sky_like_band": 1}
    assert c1.clip_ids == ["c1", "c2"] and c1.rejected_clip_ids == ["c2"]
    manifest = layout.read_manifest(tmp_path).to_pylist()
    assert [r["key"] for r in manifest] == ["c0_00", "c0_01", "c1_00"]
    assert manifest[0]["shard"] == c0.shard and manifest[0]["caption_bg"] == "a street"
    rejects = layout.read_rejects(tmp_path).to_pylist()
    assert [(r["clip_id"], r["reason"]) for r in rejects] == [("c0", "sky_like_band"), ("c2", "sky_like_band")]
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
    assert "c0_00.fg.mp4" in names and "c0_01.json" in names and len(names) == 10
    # the parts directories read as one Parquet dataset, present without any consolidation step
    assert pq.read_table(tmp_path / "manifest").num_rows == 3
    assert not (tmp_path / "manifest.parquet").exists()
    assert not any((tmp_path / layout.TMP_DIR).iterdir()) and not any((tmp_path / layout.PENDING_DIR).iterdir())


def test_shards_read_back_with_webdataset_and_layout(tmp_path):
    with ShardWriter(tmp_path, samples_per_shard=10) as writer:
        writer.add_clip("c0", [_sample("c0", 0, b"abc" * 50)], [])
    samples = list(wds.WebDataset([str(p) for p in committed_shards(tmp_path)], shardshuffle=False))
    assert len(samples) == 1
    sample = samples[0]
    assert sample["__key__"] == "c0_00"
    assert sample["fg.mp4"] == b"abc" * 50
    assert json.loads(sample["json"])["captions"]["blend"] == "a person on a street"
    (raw,) = layout.iter_samples(tmp_path)
    assert raw["__key__"] == "c0_00" and raw["fg.mp4"] == b"abc" * 50 and raw["json"] == sample["json"]


def test_identical_input_gives_byte_identical_shards(tmp_path):
    sample = _sample("c0")
    for name in ("a", "b"):
        with ShardWriter(tmp_path / name, samples_per_shard=4) as writer:
            writer.add_clip("c0", [sample], [])
    (a,), (b,) = committed_shards(tmp_path / "a"), committed_shards(tmp_path / "b")
    assert a.name == b.name and a.read_bytes() == b.read_bytes()


def test_resume_skips_committed_clips(tmp_path):
    with ShardWriter(tmp_path, samples_per_shard=1) as writer:
        writer.add_clip("c0", [_sample("c0")], [])
        writer.add_clip("c1", [], [_reject("c1")])
    writer = ShardWriter(tmp_path, samples_per_shard=1)
    assert writer.committed_clip_ids() == {"c0", "c1"}
    assert writer.committed_clip_ids(include_rejected=False) == {"c0"}
    assert writer.add_clip("c0", [_sample("c0")], []) is False
    assert writer.add_clip("c2", [_sample("c2")], []) is True
    summary = writer.close()
    assert summary["samples_total"] == 2 and summary["clips_skipped_as_committed"] == 1
    assert len(committed_shards(tmp_path)) == 2


def test_opening_a_dir_never_deletes_foreign_files(tmp_path):
    """Old main deleted every file under shards/ without a commit marker, e.g. a user's own x.tar."""
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "x.tar").write_bytes(b"u" * 1000)
    (tmp_path / "shards" / "shard-000007.tar").write_bytes(b"mine, not the builder's")
    with OutputDir(tmp_path), ShardWriter(tmp_path) as writer:
        writer.add_clip("c0", [_sample("c0")], [])
    assert (tmp_path / "shards" / "x.tar").read_bytes() == b"u" * 1000
    assert (tmp_path / "shards" / "shard-000007.tar").exists()
    assert len(committed_shards(tmp_path)) == 1  # and readers still see only the committed one


def test_retry_rejects_reprocesses_only_rejected_clips(tmp_path):
    with ShardWriter(tmp_path) as writer:
        writer.add_clip("c0", [_sample("c0")], [])
        writer.add_clip("c1", [], [_reject("c1")])
    writer = ShardWriter(tmp_path, retry_rejects=True)
    assert writer.add_clip("c0", [_sample("c0")], []) is False
    assert writer.add_clip("c1", [_sample("c1")], []) is True
    summary = writer.close()
    # the retried clip's latest outcome (a sample) replaces its old reject for every reader
    assert summary["rejects_total"] == 0 and summary["samples_total"] == 2
    assert layout.read_rejects(tmp_path).num_rows == 0
    assert layout.committed_clip_ids(tmp_path, include_rejected=False) == {"c0", "c1"}


def test_crash_inside_context_leaves_nothing_committed(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path) as writer:
            writer.add_clip("c0", [_sample("c0")], [])
            raise RuntimeError("boom")
    assert committed_shards(tmp_path) == []
    assert not list((tmp_path / "shards").iterdir()) and not list((tmp_path / layout.TMP_DIR).iterdir())
    assert ShardWriter(tmp_path).committed_clip_ids() == set()


def _die_before(monkeypatch, store_method: str, rel_prefix: str):
    """Make the writer 'die' (raise SystemExit, which skips every except-OSError cleanup) on the first
    ``store_method`` call whose first path starts with ``rel_prefix`` (a kill -9 at that point)."""
    original = getattr(Storage, store_method)

    def dying(self, rel, *args, **kwargs):
        if rel.startswith(rel_prefix):
            raise SystemExit("killed")
        return original(self, rel, *args, **kwargs)

    monkeypatch.setattr(Storage, store_method, dying)


@pytest.mark.parametrize("where", [("move", layout.TMP_DIR), ("write_bytes", layout.COMMITS_DIR)])
def test_kill_mid_shard_or_inside_commit_leaves_nothing_committed_and_resume_cleans(tmp_path, monkeypatch, where):
    """Old main left shards/*.tar.tmp (breaking read_webdataset on shards/) after a kill mid-shard, and a
    complete but uncommitted tar under its final name after a kill inside the commit."""
    with ShardWriter(tmp_path, samples_per_shard=1) as writer:
        writer.add_clip("c0", [_sample("c0")], [])
    _die_before(monkeypatch, *where)
    writer = ShardWriter(tmp_path, samples_per_shard=5)
    writer.add_clip("c1", [_sample("c1")], [])
    with pytest.raises(SystemExit):
        writer.flush()
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "shards").iterdir() if p.name.endswith(".tmp")] == []
    assert len(committed_shards(tmp_path)) == 1 and layout.read_manifest(tmp_path).num_rows == 1
    assert layout.committed_clip_ids(tmp_path) == {"c0"}
    with OutputDir(tmp_path) as out:  # the next run removes exactly the dead writer's files
        assert not list((tmp_path / layout.TMP_DIR).iterdir())
        left = sorted(p.name for p in (tmp_path / "shards").iterdir())
        assert left == [p.name for p in committed_shards(out.store.root)]
    with ShardWriter(tmp_path) as writer:
        assert writer.add_clip("c1", [_sample("c1")], [])
    assert layout.read_manifest(tmp_path).column("key").to_pylist() == ["c0_00", "c1_00"]


def test_full_disk_removes_own_partials_and_says_so(tmp_path, monkeypatch):
    writer = ShardWriter(tmp_path, samples_per_shard=5)
    writer.add_clip("c0", [_sample("c0")], [])
    original = Storage.move

    def full(self, src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Storage, "move", full)
    with pytest.raises(DiskFull, match="output filesystem full"):
        writer.flush()
    monkeypatch.setattr(Storage, "move", original)
    assert not list((tmp_path / layout.TMP_DIR).iterdir()) and committed_shards(tmp_path) == []


def test_second_build_on_same_dir_fails_at_once_naming_the_holder(tmp_path):
    with OutputDir(tmp_path):
        with pytest.raises(OutputDirBusy, match=r"in use by build .*:\d+ since"):
            OutputDir(tmp_path).acquire()
    with OutputDir(tmp_path):  # released: the next build may start
        pass


def test_stale_lease_of_a_dead_process_is_taken_over(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    lease = OutputDir(tmp_path)
    lease.acquire()
    holder = json.loads((tmp_path / layout.LEASE_FILE).read_text())
    lease._stop.set()
    (tmp_path / layout.LEASE_FILE).write_text(json.dumps({**holder, "pid": dead_pid, "token": "old"}))
    with OutputDir(tmp_path) as out:
        assert out.holder()["token"] == out.token


def test_keys_with_dots_are_refused(tmp_path):
    bad = _sample("c0")
    bad.record.key = "c0.x"
    with pytest.raises(ValueError, match="must be non-empty without"):
        ShardWriter(tmp_path).add_clip("c0", [bad], [])
