import shutil
import tarfile

import pytest

from dashboard.data import (
    Dataset,
    RangeNotSatisfiable,
    filter_rejects,
    filter_samples,
    histogram,
    index_tar,
    iter_member,
    load_manifest,
    load_rejects,
    load_stats,
    parse_range,
    read_member,
    summarize,
)
from dataset_builder.io import layout
from dataset_builder.io.layout import split_member_name
from dataset_builder.io.shard_writer import ShardWriter
from tests.dashboard.conftest import REJECT_F, REJECTS, SAMPLES, write_samples_for, write_tiny_dataset


def test_tables_load(tiny_dataset):
    stats = load_stats(tiny_dataset)
    assert [s["shard"] for s in stats] == [layout.shard_file(layout.shard_stem(ids)) for ids in
                                           (["clipa"], ["clipb", "clipc", "clipd", "clipe"])]
    rows = load_manifest(tiny_dataset)
    assert sorted(r["key"] for r in rows) == sorted(SAMPLES)
    by_key = {r["key"]: r for r in rows}
    for key, (label, kind, tags, scores, _) in SAMPLES.items():
        assert by_key[key]["label"] == label and by_key[key]["kind"] == kind and by_key[key]["tags"] == tags
        assert by_key[key]["scores"] == pytest.approx(scores)
    rejects = load_rejects(tiny_dataset)
    assert sorted((r["clip_id"], r["stage"], r["reason"]) for r in rejects) == sorted(REJECTS)


def test_summary(tiny_dataset):
    s = summarize(load_manifest(tiny_dataset), load_rejects(tiny_dataset), load_stats(tiny_dataset), bins=4)
    assert (s["samples"], s["shards"], s["rejects"], s["clips"]) == (3, 2, 3, 2)
    assert s["labels"] == {"dog": 2, "ball": 1}
    assert s["kinds"] == {"coarse": 2, "copypaste": 1}
    assert s["tags"] == {"animal": 2, "outdoor": 1, "toy": 1}
    assert s["reject_reasons"] == {"filter_foreground": {"too_small": 2}, "inpaint": {"oom": 1}}
    assert list(s["reject_stages"]) == ["filter_foreground", "inpaint"]  # most rejects first
    assert s["score_names"] == ["aesthetic", "iou"]
    # scores in [0, 1] get fixed 0..1 bins: iou 0.4 -> bin 1, 0.75 -> bin 3 (0.75 is its lower edge), 0.9 -> bin 3
    assert s["score_hists"]["iou"]["edges"] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert s["score_hists"]["iou"]["counts"] == [0, 1, 0, 2]
    assert s["score_hists"]["aesthetic"]["counts"] == [0, 2, 0, 0]
    assert s["shapes"] == {"8x16x32": 3}


def test_histogram_edges():
    h = histogram([0, 1, 2, 3, 4, float("nan")], bins=2)
    assert h["counts"] == [2, 3] and h["n"] == 5  # the top edge belongs to the last bin
    assert histogram([], bins=3)["counts"] == []
    assert histogram([5, 5], bins=2)["counts"] == [2, 0]  # degenerate range still counts


def test_filters(tiny_dataset):
    rows = load_manifest(tiny_dataset)

    def keys(**kw):
        return sorted(r["key"] for r in filter_samples(rows, **kw))

    assert keys(label="dog") == ["clipa_00", "clipb_00"]
    assert keys(tag="toy") == ["clipa_01"]
    assert keys(kind="copypaste") == ["clipb_00"]
    assert keys(score="iou", score_min=0.5) == ["clipa_00", "clipb_00"]
    assert keys(score="iou", score_min=0.5, score_max=0.8) == ["clipb_00"]
    assert keys(score="aesthetic", score_min=0.0) == ["clipa_00", "clipa_01"]  # rows lacking it drop out
    assert keys(q="RIVER") == ["clipb_00"]
    assert keys(label="dog", q="grass") == ["clipa_00"]
    assert keys(q="no such words") == []
    rejects = load_rejects(tiny_dataset)
    assert len(filter_rejects(rejects, stage="filter_foreground")) == 2
    assert [r["clip_id"] for r in filter_rejects(rejects, q="oom")] == ["clipe"]


def test_tar_index_matches_tarfile(tiny_dataset):
    for shard in sorted((tiny_dataset / "shards").glob("*.tar")):
        index = index_tar(shard)
        with tarfile.open(shard) as tar:
            names = tar.getnames()
            assert sum(len(m) for m in index.values()) == len(names)
            for name in names:
                key, suffix = split_member_name(name)
                assert read_member(index[key][suffix]) == tar.extractfile(name).read()
    ref = index_tar(layout.committed_shards(tiny_dataset)[0])["clipa_00"]["fg.mp4"]
    whole = read_member(ref)
    assert b"".join(iter_member(ref, 10, 99, chunk=7)) == whole[10:100]
    with pytest.raises(ValueError):
        list(iter_member(ref, 0, ref.size))


def test_parse_range():
    assert parse_range(None, 100) is None
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=90-500", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=0-0,5-9", 100) == (0, 0)
    for bad in ("bytes=100-", "bytes=5-2", "bytes=x-1", "bytes=-0"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(bad, 100)


def test_dataset_members_and_records(tiny_dataset):
    ds = Dataset(tiny_dataset)
    assert set(ds.members("clipb_00")) == {"fg.mp4", "alpha.mkv", "bg.mp4", "blend.mp4", "json"}
    assert ds.record("clipb_00")["captions"]["blend"] == SAMPLES["clipb_00"][4]
    assert ds.record("clipb_00")["provenance"]["source_uri"] == "/videos/clipb.mp4"
    for bad in ("nope", "../clipa_00", "clipa_00/../x", ""):
        assert ds.members(bad) == {}
    assert ds.member("clipa_00", "../../etc/passwd") is None


def test_mid_build_reads_committed_parts_and_reloads(tmp_path, tiny_dataset):
    """There is no consolidated manifest; committed per-shard parts are read, and new commits show up."""
    root = tmp_path / "copy"
    shutil.copytree(tiny_dataset, root)
    ds = Dataset(root)
    assert len(ds.manifest) == 3 and len(ds.rejects) == 3
    assert not ds.reload_if_changed()
    with ShardWriter(root) as writer:  # a later (resumed) run commits one more shard
        writer.add_clip("clipf", [], [REJECT_F])
    assert ds.reload_if_changed()
    assert len(ds.rejects) == 4 and len(ds.stats) == 3


def test_retry_rejects_run_matches_the_writer(tmp_path, tiny_dataset):
    """Old main: after a retry_rejects run the dashboard still counted the retried clip's old rejects,
    while the writer's tables had replaced them by the clip's new sample."""
    root = tmp_path / "copy"
    shutil.copytree(tiny_dataset, root)
    ds = Dataset(root)
    (retried,) = write_samples_for("clipc")
    with ShardWriter(root, retry_rejects=True) as writer:
        assert writer.add_clip("clipc", [retried], [])
        summary = writer.close()
    assert ds.reload_if_changed()
    assert len(ds.rejects) == summary["rejects_total"] == 2
    assert len(ds.manifest) == summary["samples_total"] == 4
    assert "clipc" not in {r["clip_id"] for r in ds.rejects} and ds.summary()["clips"] == 3


def test_uncommitted_shard_is_ignored(tmp_path):
    root = tmp_path / "ds"
    write_tiny_dataset(root)
    last = layout.list_commits(root)[-1]
    (root / layout.commit_path(layout.stem_of(last.shard))).unlink()  # as if the run died before committing
    ds = Dataset(root)
    assert sorted(ds.by_key) == ["clipa_00", "clipa_01"]
