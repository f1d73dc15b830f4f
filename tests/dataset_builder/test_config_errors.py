"""User errors: bad values, bad YAML, an unwritable output dir, a cluster too small -> one line, exit 2."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from dataset_builder.cluster import ClusterError, check_resources, init_ray, unplaceable
from dataset_builder.config import BuildConfig, load_build_config, load_yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("override", [
    {"clip": {"height": -4}}, {"output": {"crf": 99}}, {"clip": {"num_frames": 0}},
    {"clip": {"frame_stride": 0}}, {"output": {"samples_per_shard": 0}}, {"input": {"max_videos": 0}},
    {"stages": {"tag": {"resources": {"num_gpus": -1}}}},
])
def test_out_of_range_values_are_rejected(override):
    with pytest.raises(ValidationError):
        BuildConfig.model_validate(override)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("clip:\n  height: 240\n   width: [320\n")
    with pytest.raises(ValueError, match=r"bad.yaml: line \d+, column \d+: invalid YAML"):
        load_yaml(bad)
    with pytest.raises(ValueError, match="not valid YAML"):
        load_build_config(REPO / "configs" / "cpu.yaml", ["clip.height=[1"])


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "workflows/build_coarse.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["clip.height=-4"], "clip.height"),
    (["output.crf=99"], "output.crf"),
    (["output.dir=/sys/layerflow-cannot-write-here"], "is not writable"),
])
def test_cli_user_errors_are_one_line_and_exit_2(args, message):
    proc = _cli("--config", "configs/cpu.yaml", *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_yaml_syntax_error_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("clip: {height: 240\n")
    proc = _cli("--config", str(bad))
    assert proc.returncode == 2 and "invalid YAML" in proc.stderr and "Traceback" not in proc.stderr


def test_unplaceable_stages_are_named():
    nodes = [{"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}]
    assert unplaceable([("tag", 1, 1), ("encode", 4, 0)], nodes) == []
    problems = unplaceable([("SegmentTrackStage", 1, 2), ("clip", 16, 0)], nodes)
    assert len(problems) == 2 and "SegmentTrackStage needs 1 CPU + 2 GPU per actor" in problems[0]
    assert "largest node has 8 CPU / 1 GPU" in problems[1]


def test_unreachable_ray_address_fails_in_seconds(monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray runtime is already up in this process")
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="cannot reach the Ray cluster"):
        init_ray(None)
    assert time.monotonic() - t0 < 10


def test_plain_build_starts_a_private_ray(monkeypatch):
    """Without ray.address / RAY_ADDRESS the build must not attach to a head running on the host."""
    import ray

    calls = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    assert init_ray(None, num_cpus=2)
    assert calls[0]["address"] == "local" and calls[0]["num_cpus"] == 2
    init_ray("auto")
    assert calls[1]["address"] == "auto"


@pytest.mark.ray
def test_gpu_stage_on_a_cpu_cluster_fails_fast(ray_local):
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="needs 1 CPU \\+ 1 GPU"):
        check_resources([("clip", 0.5, 0), ("TagStage", 1, 1)], wait_s=1)
    assert time.monotonic() - t0 < 10
    check_resources([("clip", 0.5, 0)], wait_s=0)


@pytest.mark.ray
@pytest.mark.slow
def test_paper_profile_on_a_machine_without_gpus_fails_in_seconds(tmp_path, bikes_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "RAY_ADDRESS"}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "workflows/build_coarse.py", "--config", "configs/paper.yaml", f"output.dir={tmp_path}/out",
         f"input.paths=[{bikes_path}]", "ray.resource_wait_s=2", "ray.num_cpus=2"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "the Ray cluster cannot run this build" in proc.stderr and "GPU per actor" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 120  # Ray start-up included; the old build waited forever


def test_derived_builds_start_a_private_ray_too(monkeypatch):
    import ray

    from dataset_builder.config import RayConfig
    from dataset_builder.derived.pipeline import _init_ray

    calls = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    assert _init_ray(RayConfig(num_cpus=1))
    assert calls[0]["address"] == "local"
