import json
import tarfile

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from dataset_builder.io.shard_writer import SampleToWrite, ShardWriter, committed_shards
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


def test_writes_deterministic_shards_with_stats_manifest_and_rejects(tmp_path):
    with ShardWriter(tmp_path, samples_per_shard=2) as writer:
        writer.add_clip("c0", [_sample("c0", 0), _sample("c0", 1)], [_reject("c0")])
        writer.add_clip("c1", [_sample("c1", 0)], [])
        writer.add_clip("c2", [], [_reject("c2")])
    shards = committed_shards(tmp_path)
    assert [p.name for p in shards] == ["shard-000000.tar", "shard-000001.tar"]
    stats0 = json.loads((tmp_path / "_stats" / "shard-000000_stats.json").read_text())
    assert stats0["num_samples"] == 2 and stats0["clip_ids"] == ["c0"]
    assert stats0["reject_reasons"] == {"filter_foreground:sky_like_band": 1}
    stats1 = json.loads((tmp_path / "_stats" / "shard-000001_stats.json").read_text())
    assert stats1["clip_ids"] == ["c1", "c2"] and stats1["rejected_clip_ids"] == ["c2"]
    manifest = pq.read_table(tmp_path / "manifest.parquet").to_pylist()
    assert [r["key"] for r in manifest] == ["c0_00", "c0_01", "c1_00"]
    assert manifest[0]["shard"] == "shard-000000.tar" and manifest[0]["caption_bg"] == "a street"
    rejects = pq.read_table(tmp_path / "rejects.parquet").to_pylist()
    assert [(r["clip_id"], r["reason"]) for r in rejects] == [("c0", "sky_like_band"), ("c2", "sky_like_band")]
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
    assert "c0_00.fg.mp4" in names and "c0_01.json" in names and len(names) == 10


def test_shards_read_back_with_webdataset(tmp_path):
    with ShardWriter(tmp_path, samples_per_shard=10) as writer:
        writer.add_clip("c0", [_sample("c0", 0, b"abc" * 50)], [])
    samples = list(wds.WebDataset([str(p) for p in committed_shards(tmp_path)], shardshuffle=False))
    assert len(samples) == 1
    sample = samples[0]
    assert sample["__key__"] == "c0_00"
    assert sample["fg.mp4"] == b"abc" * 50
    assert json.loads(sample["json"])["captions"]["blend"] == "a person on a street"


def test_identical_input_gives_byte_identical_shards(tmp_path):
    sample = _sample("c0")
    for name in ("a", "b"):
        with ShardWriter(tmp_path / name, samples_per_shard=4) as writer:
            writer.add_clip("c0", [sample], [])
    a = (tmp_path / "a" / "shards" / "shard-000000.tar").read_bytes()
    b = (tmp_path / "b" / "shards" / "shard-000000.tar").read_bytes()
    assert a == b


def test_resume_skips_committed_clips_and_removes_uncommitted_files(tmp_path):
    with ShardWriter(tmp_path, samples_per_shard=1) as writer:
        writer.add_clip("c0", [_sample("c0")], [])
        writer.add_clip("c1", [], [_reject("c1")])
    # Simulate a crash: a shard without commit marker and a temp file.
    (tmp_path / "shards" / "shard-000007.tar").write_bytes(b"partial")
    (tmp_path / "shards" / "shard-000008.tar.tmp").write_bytes(b"partial")
    writer = ShardWriter(tmp_path, samples_per_shard=1)
    assert not (tmp_path / "shards" / "shard-000007.tar").exists()
    assert not (tmp_path / "shards" / "shard-000008.tar.tmp").exists()
    assert writer.committed_clip_ids() == {"c0", "c1"}
    assert writer.committed_clip_ids(include_rejected=False) == {"c0"}
    assert writer.add_clip("c0", [_sample("c0")], []) is False
    assert writer.add_clip("c2", [_sample("c2")], []) is True
    summary = writer.close()
    assert summary["samples_total"] == 2 and summary["clips_skipped_as_committed"] == 1
    assert [p.name for p in committed_shards(tmp_path)] == ["shard-000000.tar", "shard-000002.tar"]


def test_retry_rejects_reprocesses_only_rejected_clips(tmp_path):
    with ShardWriter(tmp_path) as writer:
        writer.add_clip("c0", [_sample("c0")], [])
        writer.add_clip("c1", [], [_reject("c1")])
    writer = ShardWriter(tmp_path, retry_rejects=True)
    assert writer.add_clip("c0", [_sample("c0")], []) is False
    assert writer.add_clip("c1", [_sample("c1")], []) is True
    summary = writer.close()
    # the retried clip's latest outcome (a sample) replaces its old reject in the consolidated tables
    assert summary["rejects_total"] == 0 and summary["samples_total"] == 2
    assert pq.read_table(tmp_path / "rejects.parquet").num_rows == 0


def test_crash_inside_context_leaves_nothing_committed(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path) as writer:
            writer.add_clip("c0", [_sample("c0")], [])
            raise RuntimeError("boom")
    assert committed_shards(tmp_path) == []
    assert not list((tmp_path / "shards").iterdir())
    assert ShardWriter(tmp_path).committed_clip_ids() == set()


def test_keys_with_dots_are_refused(tmp_path):
    bad = _sample("c0")
    bad.record.key = "c0.x"
    with pytest.raises(ValueError, match="must not contain"):
        ShardWriter(tmp_path).add_clip("c0", [bad], [])
