"""Inputs in object storage: listed, hashed, de-duplicated and decoded straight from a loopback S3."""

import pytest

from dataset_builder.config import BuildConfig
from dataset_builder.io import layout
from dataset_builder.io.inputs import discover, fingerprint
from dataset_builder.pipeline import run_build


@pytest.fixture(scope="module")
def bucket(moto_s3, bikes_path):
    _, fs = moto_s3
    fs.create_dir("inputs")
    data = bikes_path.read_bytes()
    for key in ("videos/bikes.mp4", "videos/nested/copy.mp4", "videos/x.mp4/inner.txt"):
        with fs.open_output_stream(f"inputs/{key}") as fh:
            fh.write(data if key.endswith(".mp4") else b"x")
    return "s3://inputs/videos", data


def test_s3_listing_hashes_and_duplicates(bucket, bikes_path):
    root, _ = bucket
    entries = {e.uri: e for e in discover([root], [".mp4"])}
    assert set(entries) == {f"{root}/bikes.mp4", f"{root}/nested/copy.mp4", f"{root}/x.mp4"}
    assert entries[f"{root}/bikes.mp4"].reason == ""
    assert entries[f"{root}/bikes.mp4"].content_hash == fingerprint(str(bikes_path))
    assert entries[f"{root}/nested/copy.mp4"].reason == "duplicate_input"
    assert entries[f"{root}/x.mp4"].reason == "not_a_file"


def test_build_reads_inputs_from_s3(bucket, tmp_path):
    root, _ = bucket
    cfg = BuildConfig.model_validate({
        "input": {"paths": [root]},
        "clip": {"num_frames": 8, "height": 64, "width": 96, "max_clips_per_video": 1},
        "output": {"dir": str(tmp_path / "out")},
        "ray": {"max_objects_per_clip": 2},
    })
    summary = run_build(cfg, use_ray=False)
    assert summary["unaccounted_inputs"] == [] and summary["inputs"] == 3
    rejects = {r["source_uri"]: r["reason"] for r in layout.read_rejects(tmp_path / "out").to_pylist()
               if r["stage"] == "clip"}
    assert rejects == {f"{root}/nested/copy.mp4": "duplicate_input", f"{root}/x.mp4": "not_a_file"}
    # bikes.mp4 was decoded from S3: it became samples, or clips rejected by a later stage with reasons
    samples = [m for m in layout.read_manifest(tmp_path / "out").to_pylist() if m["source_uri"] == f"{root}/bikes.mp4"]
    later = [r for r in layout.read_rejects(tmp_path / "out").to_pylist()
             if r["source_uri"] == f"{root}/bikes.mp4" and r["stage"] != "clip"]
    assert samples or later
