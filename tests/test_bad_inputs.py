"""A new user's bad-input corpus through the whole build: every path ends in a shard or in the rejects
table with a reason, and the run exits cleanly (no unaccounted inputs)."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from dataset_builder.config import BuildConfig
from dataset_builder.io import inputs, layout
from dataset_builder.pipeline import run_build

T, H, W = 8, 64, 96


@pytest.fixture()
def corpus(tmp_path, monkeypatch):
    from dataset_builder.samples.synthetic import write_synthetic_video

    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    write_synthetic_video(videos / "good.mp4", seed=3, num_frames=T, height=H, width=W, num_objects=1,
                          camera_pan=False)
    write_synthetic_video(videos / "big.mp4", seed=4, num_frames=T, height=2 * H, width=2 * W, num_objects=1,
                          camera_pan=False)
    (videos / "sub" / "copy.mp4").write_bytes((videos / "good.mp4").read_bytes())
    (videos / "x.mp4").mkdir()
    (videos / "loop.mp4").symlink_to(videos / "loop.mp4")
    (videos / "dangling.mp4").symlink_to(videos / "gone.mp4")
    (videos / "junk.mp4").write_bytes(b"\x00garbage" * 300)
    (videos / "locked").mkdir()
    (videos / "locked" / "hidden.mp4").write_bytes(b"x")
    clip = write_synthetic_video(tmp_path / "long.mkv", seed=5, num_frames=40, height=H, width=W, num_objects=1)
    del clip
    _remux_mkv(tmp_path / "long.mkv", videos / "cut.mkv", keep=0.4)
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("/locked"):  # root ignores chmod: simulate a directory we may not list
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(inputs.os, "scandir", scandir)
    return videos


def _remux_mkv(src, dst, keep):
    """Matroska copy of ``src`` cut to ``keep`` of its bytes (header still promises every frame)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="matroska") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    data = dst.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])


EXPECTED = {
    "good.mp4": None, "big.mp4": "too_large", "sub/copy.mp4": "duplicate_input", "x.mp4": "not_a_file",
    "loop.mp4": "symlink_loop", "dangling.mp4": "dangling_symlink", "junk.mp4": "unreadable",
    "locked": "unreadable_path", "cut.mkv": "truncated",
}


@pytest.mark.parametrize("use_ray", [False, pytest.param(True, marks=[pytest.mark.ray, pytest.mark.slow])])
def test_bad_input_corpus_loses_nothing(corpus, tmp_path, use_ray, request):
    if use_ray:
        request.getfixturevalue("ray_local")
    cfg = BuildConfig.model_validate({
        "input": {"paths": [str(corpus)], "max_pixels": H * W * 2},
        "clip": {"num_frames": T, "height": H, "width": W, "max_clips_per_video": 1},
        "output": {"dir": str(tmp_path / "out")},
        "ray": {"max_objects_per_clip": 2},
    })
    summary = run_build(cfg, use_ray=use_ray)
    assert summary["unaccounted_inputs"] == []
    assert summary["inputs"] == len(EXPECTED)
    rejects = layout.read_rejects(tmp_path / "out").to_pylist()
    video_rejects = {os.path.relpath(r["source_uri"], corpus): r["reason"] for r in rejects if r["stage"] == "clip"}
    assert video_rejects == {k: v for k, v in EXPECTED.items() if v}
    copy = next(r for r in rejects if r["source_uri"].endswith("copy.mp4"))
    assert copy["detail"].startswith(f"byte-identical to {corpus / 'good.mp4'}")
    manifest = pq.read_table(tmp_path / "out" / "inputs.parquet").to_pylist()
    assert {os.path.relpath(m["uri"], corpus) for m in manifest} == set(EXPECTED)
    # the rerun resumes: nothing new processed, still nothing unaccounted, exit status clean
    again = run_build(cfg, use_ray=use_ray)
    assert again["unaccounted_inputs"] == [] and again["clips_processed_now"] == 0
