"""The shared runtime: the writer stage emits only commit records, the local executor fills shards
across batches, and resume plans are anti-joins on commit records."""

from __future__ import annotations

import json

import numpy as np

from dataset_builder.io import layout
from dataset_builder.io.shard_writer import ShardWriter, pack_fragment
from dataset_builder.stages.base import ClipState, ClipStage, batch_from_rows
from dataset_builder.stages.runtime import StageSpec, WriteShards, run_local, writer_spec
from schemas import Captions, CommitRecord, LayeredSample, Provenance


def _row(clip_id: str, source: str, planned: int, n_objects: int = 1, reject: bool = False) -> dict:
    state = ClipState(clip_id=clip_id, source_uri=source, clips_planned=planned)
    samples = {}
    if reject:
        state.reject_clip("tag", "no_subject")
    for k in range(0 if reject else n_objects):
        key = layout.sample_key(clip_id, k)
        record = LayeredSample(key=key, clip_id=clip_id, object_id=k, label="dog", num_frames=2, height=2, width=2,
                               fps=8.0, captions=Captions(fg="a", bg="b", blend="c"),
                               provenance=Provenance(source_uri=source, start_frame=0, config_hash="h"))
        samples[key] = {"fg.mp4": b"f" * 50, "alpha.mkv": b"a", "bg.mp4": b"b", "blend.mp4": b"x",
                        "json": record.model_dump_json().encode()}
    return {"meta": state.model_dump_json(), "payload": pack_fragment(samples)}


def test_writer_stage_writes_shards_and_returns_only_commit_records(tmp_path):
    stage = WriteShards(str(tmp_path), ClipState, samples_per_shard=2)
    out = stage(batch_from_rows([_row("c0", "/v/a.mp4", 2), _row("c1", "/v/a.mp4", 2), _row("c2", "/v/b.mp4", 1)]))
    assert list(out) == ["commit"] and len(out["commit"]) == 2  # 3 samples, 2 per shard
    records = [CommitRecord.model_validate_json(j) for j in out["commit"]]
    assert [r.clip_ids for r in records] == [["c0", "c1"], ["c2"]]
    assert records[0].planned == {"/v/a.mp4": 2} and records[0].clip_sources == ["/v/a.mp4", "/v/a.mp4"]
    assert sum(len(j) for j in out["commit"]) / 3 < 1024  # what the driver gets per sample
    assert [c.shard for c in layout.list_commits(tmp_path)] == [r.shard for r in records]
    assert layout.read_manifest(tmp_path).column("key").to_pylist() == ["c0_00", "c1_00", "c2_00"]
    assert stage(batch_from_rows([_row("c3", "/v/c.mp4", 1)]))["commit"].shape == (1,)


class _Upper(ClipStage):
    stage = "tag"

    def process(self, state, row):
        if state.clip_id == "boom":
            raise RuntimeError("bad clip")
        state.tags.append({"label": "seen"})


def test_local_executor_runs_stages_then_writer_and_fills_shards_across_batches(tmp_path):
    rows = [_row(f"c{i}", f"/v/{i}.mp4", 1) for i in range(5)] + [_row("boom", "/v/boom.mp4", 1)]
    spec = writer_spec(tmp_path, ClipState, samples_per_shard=4, max_shard_bytes=1 << 20)
    commits = list(run_local((batch_from_rows([r]) for r in rows), [StageSpec(_Upper)], spec))
    assert [len(c.clip_ids) for c in commits] == [4, 2]
    rejects = layout.read_rejects(tmp_path).to_pylist()
    assert [(r["clip_id"], r["stage"], r["reason"]) for r in rejects] == [("boom", "tag", "error")]


def test_resume_plan_anti_joins_inputs_and_keeps_partial_ids_only(tmp_path):
    with ShardWriter(tmp_path, samples_per_shard=1) as writer:
        writer.add_clip("a0", [], [], source="/v/a.mp4", planned=2)
        writer.add_clip("a1", [], [], source="/v/a.mp4", planned=2)
        writer.add_clip("b0", [], [], source="/v/b.mp4", planned=3)
    plan = layout.resume_plan(tmp_path)
    assert plan.inputs_done == {"/v/a.mp4"} and plan.partial == {"/v/b.mp4": ["b0"]}
    assert plan.pending_inputs(["/v/a.mp4", "/v/b.mp4", "/v/c.mp4"]) == ["/v/b.mp4", "/v/c.mp4"]
    assert plan.partial_clip_ids == {"b0"}
    # clips that ended only in rejects are not done under retry_rejects
    retry = layout.resume_plan(tmp_path, include_rejected=False)
    assert retry.inputs_done == set() and retry.done == set()
    assert plan.pending_units(["a0", "zz"]) == [False, True]


def test_commit_record_is_small_and_versioned(tmp_path):
    stage = WriteShards(str(tmp_path), ClipState, samples_per_shard=64)
    out = stage(batch_from_rows([_row(f"clip{i:04d}", f"/videos/v{i}.mp4", 1, n_objects=3) for i in range(20)]))
    (record,) = out["commit"]
    data = json.loads(record)
    assert data["num_samples"] == 60 and data["schema_version"]
    assert len(record) / 60 < 1024
    assert np.all([layout.check_key(k) for k in data["keys"]])
