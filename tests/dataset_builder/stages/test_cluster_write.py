"""On a 3-node ``ray.cluster_utils.Cluster`` the decode pool and the writer stage run on every node, each
worker writes its own shards, and the driver receives only commit records (old main: one decode actor for
the whole cluster, and every encoded byte went through a driver-side writer)."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_builder.config import Resources
from dataset_builder.io import layout
from dataset_builder.io.shard_writer import pack_fragment
from dataset_builder.stages.base import ClipState
from dataset_builder.stages.runtime import COMMIT_COLUMN, map_stage, writer_spec
from schemas import Captions, CommitRecord, LayeredSample, Provenance

pytestmark = [pytest.mark.ray, pytest.mark.slow]
N_CLIPS = 24


def _row(i: int) -> dict:
    clip_id = f"clip{i:03d}"
    state = ClipState(clip_id=clip_id, source_uri=f"/v/{i}.mp4", clips_planned=1)
    key = layout.sample_key(clip_id, 0)
    record = LayeredSample(key=key, clip_id=clip_id, object_id=0, label="dog", num_frames=8, height=8, width=8,
                           fps=8.0, captions=Captions(fg="a dog", bg="grass", blend="a dog on grass"),
                           provenance=Provenance(source_uri=state.source_uri, start_frame=0, config_hash="h"))
    payload = np.random.default_rng(i).bytes(20_000)  # stands in for encoded video members
    members = {"fg.mp4": payload, "alpha.mkv": payload[:2000], "bg.mp4": payload, "blend.mp4": payload,
               "json": record.model_dump_json().encode()}
    return {"meta": state.model_dump_json(), "payload": pack_fragment({key: members})}


@pytest.fixture(scope="module")
def cluster3():
    """Three 1-CPU nodes on this machine; one Ray session for the module's tests. The session's private
    Ray (``ray_local``, started by tests before these) is shut down for them and started again after:
    one process holds one Ray connection."""
    import ray
    from ray.cluster_utils import Cluster

    from tests.conftest import start_private_ray

    had_private = ray.is_initialized()
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if had_private:
            start_private_ray()


def test_decode_pool_spreads_over_nodes(cluster3, tmp_path, monkeypatch):
    """The decode stage of the real pipeline is a pool of actors placed across the cluster (old main: one
    decode actor, so one node decoded every video)."""
    import os

    from dataset_builder import pipeline
    from dataset_builder.config import BuildConfig
    from dataset_builder.io.inputs import discover
    from dataset_builder.samples.synthetic import write_synthetic_video
    from dataset_builder.stages.sample_clips import SampleClips

    n_videos = 12
    for i in range(n_videos):
        write_synthetic_video(tmp_path / "in" / f"v{i:02d}.mp4", seed=i, num_frames=10, height=48, width=64)
    seen = tmp_path / "decoded_on"
    seen.mkdir()

    class NodeRecordingDecode(SampleClips):  # local class: shipped to the workers by value
        def __call__(self, batch):
            import ray

            out = super().__call__(batch)
            node = ray.get_runtime_context().get_node_id()
            for uri in batch["uri"]:
                (seen / f"{os.path.basename(str(uri))}.{node}").touch()
            return out

    monkeypatch.setattr(pipeline, "SampleClips", NodeRecordingDecode)
    cfg = BuildConfig.model_validate({
        "input": {"paths": [str(tmp_path / "in")]}, "output": {"dir": str(tmp_path / "out")},
        "clip": {"num_frames": 8, "height": 48, "width": 64, "detect_cuts": False},
        "ray": {"decode_num_cpus": 1, "decode_min_actors": 3, "decode_max_actors": 3},
    })
    inputs = discover(cfg.input.paths, cfg.input.extensions)
    rows = list(pipeline.decode_stage(pipeline.input_dataset(inputs, rows_per_block=1), cfg, set()).iter_rows())
    assert len({r["meta"] for r in rows}) >= n_videos  # every video decoded into at least one clip row
    decoded = [p.name.rsplit(".", 1) for p in seen.iterdir()]
    assert sorted(v for v, _ in decoded) == sorted(f"v{i:02d}.mp4" for i in range(n_videos))  # each once
    assert len({node for _, node in decoded}) == 3  # one 1-CPU decode actor per node, all of them working


def test_writers_spread_over_nodes_and_driver_gets_commit_records_only(cluster3, tmp_path):
    import ray

    ds = ray.data.from_items([_row(i) for i in range(N_CLIPS)], override_num_blocks=N_CLIPS)
    spec = writer_spec(tmp_path, ClipState, samples_per_shard=2, max_shard_bytes=1 << 30,
                       resources=Resources(num_cpus=1, concurrency=3, batch_size=2))
    received, rows = 0, []
    for row in map_stage(ds, spec).iter_rows():
        assert set(row) == {COMMIT_COLUMN}  # nothing but the commit record reaches the driver
        received += len(row[COMMIT_COLUMN])
        rows.append(CommitRecord.model_validate_json(row[COMMIT_COLUMN]))
    nodes = {r.writer.rsplit("@", 1)[-1] for r in rows}
    assert len(nodes) == 3, nodes  # every node wrote shards
    assert sorted(c for r in rows for c in r.clip_ids) == [f"clip{i:03d}" for i in range(N_CLIPS)]
    samples = sum(r.num_samples for r in rows)
    payload_bytes = sum(r.bytes for r in rows)
    assert samples == N_CLIPS and received / samples < 1024 and payload_bytes / received > 50
    assert layout.read_manifest(tmp_path).num_rows == N_CLIPS

