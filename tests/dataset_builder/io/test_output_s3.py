"""Outputs in object storage: a build writes committed shards to a loopback S3 (moto server), a
kill -9 leaves nothing readers see as committed, and the rerun resumes there without duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataset_builder.io import layout
from dataset_builder.io.shard_writer import OutputDir, OutputDirBusy, ShardWriter
from dataset_builder.io.storage import Storage

REPO = Path(__file__).resolve().parents[3]
N_VIDEOS = 3

BUILD = """
import sys
from dataset_builder.config import BuildConfig
from dataset_builder.pipeline import run_build
cfg = BuildConfig.model_validate({
    "input": {"paths": [sys.argv[1]]},
    "clip": {"num_frames": 8, "height": 64, "width": 96, "max_clips_per_video": 1},
    "output": {"dir": sys.argv[2], "samples_per_shard": 1},
    "ray": {"max_objects_per_clip": 2},
})
print(run_build(cfg, use_ray=False)["samples_written_now"])
"""


@pytest.fixture(scope="module")
def s3_videos(moto_s3, tmp_path_factory):
    from dataset_builder.samples.synthetic import write_synthetic_video

    _, fs = moto_s3
    local = tmp_path_factory.mktemp("s3videos")
    fs.create_dir("layin")
    for i in range(N_VIDEOS):
        path = local / f"v{i}.mp4"
        write_synthetic_video(path, seed=10 + i, num_frames=8, height=64, width=96, num_objects=1, camera_pan=False)
        with fs.open_output_stream(f"layin/videos/v{i}.mp4") as fh:
            fh.write(path.read_bytes())
    return "s3://layin/videos"


def _child(inputs: str, out: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-c", BUILD, inputs, out], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.integration
def test_build_writes_to_s3_and_resumes_after_kill9(moto_s3, s3_videos):
    _, fs = moto_s3
    fs.create_dir("layout")
    out = "s3://layout/run1"
    store = Storage.at(out)
    proc = _child(s3_videos, out)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None and not store.list(layout.COMMITS_DIR,
                                                                                 layout.COMMIT_SUFFIX):
            time.sleep(0.05)
        assert proc.poll() is None, f"build ended before it could be killed: {proc.communicate()[1][-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = layout.list_commits(out)
    assert 1 <= len(before) < N_VIDEOS + 1  # killed mid-run: some, not all, inputs committed
    manifest = layout.read_manifest(out, before)  # readers see exactly the committed shards
    assert sorted(manifest.column("shard").unique().to_pylist()) == sorted(c.shard for c in before if c.num_samples)
    assert not any(name.endswith(".tmp") for name in store.list(layout.SHARDS_DIR))

    # the dead build's lease is stale (same host, pid gone): the rerun takes it over and resumes
    from dataset_builder.config import BuildConfig
    from dataset_builder.pipeline import run_build

    cfg = BuildConfig.model_validate({
        "input": {"paths": [s3_videos]},
        "clip": {"num_frames": 8, "height": 64, "width": 96, "max_clips_per_video": 1},
        "output": {"dir": out, "samples_per_shard": 1}, "ray": {"max_objects_per_clip": 2},
    })
    summary = run_build(cfg, use_ray=False)
    assert summary["unaccounted_inputs"] == [] and summary["inputs"] == N_VIDEOS
    assert summary["inputs_skipped_as_committed"] >= 1
    after = layout.list_commits(out)
    assert {c.shard for c in before} <= {c.shard for c in after}  # nothing committed was lost or rewritten
    clip_ids = [c for record in after for c in record.clip_ids]
    assert len(clip_ids) == len(set(clip_ids)) == N_VIDEOS  # every clip committed exactly once
    keys = layout.read_manifest(out).column("key").to_pylist()
    assert len(keys) == len(set(keys))
    # the shard listing holds committed shards only (the killed writer's moved-in leftovers were removed)
    assert set(store.list(layout.SHARDS_DIR)) == {c.shard for c in after}
    assert not store.list(layout.TMP_DIR) and not store.list(layout.PENDING_DIR)
    samples = list(layout.iter_samples(out))
    assert len(samples) == len(keys) and all(s["fg.mp4"] and s["json"] for s in samples)
    assert not store.exists(layout.LEASE_FILE)  # released


def test_s3_lease_refuses_a_second_build_and_writer_commits(moto_s3):
    _, fs = moto_s3
    fs.create_dir("laylease")
    out = "s3://laylease/run"
    with OutputDir(out):
        with pytest.raises(OutputDirBusy, match="in use by build"):
            OutputDir(out).acquire()
        with ShardWriter(out) as writer:
            writer.add_clip("c0", [], [], source="s3://x/v.mp4", planned=1)
    (record,) = layout.list_commits(out)
    assert record.clip_ids == ["c0"] and layout.resume_plan(out).inputs_done == {"s3://x/v.mp4"}
