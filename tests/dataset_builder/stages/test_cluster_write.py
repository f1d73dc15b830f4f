"""On a 3-node ``ray.cluster_utils.Cluster`` the writer stage runs on every node, each worker writes its
own shards, and the driver receives only commit records (old main: every encoded byte went through a
driver-side writer)."""

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


def test_writers_spread_over_nodes_and_driver_gets_commit_records_only(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
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
    finally:
        ray.shutdown()
        cluster.shutdown()
