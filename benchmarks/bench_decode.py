"""Decode throughput on the sample clips: PyAV, OpenCV and the pipeline's iter_frames vs the ffmpeg CLI
(rawvideo to a pipe, the usual reference) and decord when installed.

    python benchmarks/bench_decode.py [--video data/samples/videos/bikes.mp4] [--repeats 3]

Writes benchmarks/results/decode.json. Frames are decoded to RGB24 numpy in every case.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_builder.io.video import iter_frames, probe_video


def _pyav(path):
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        return sum(1 for f in c.decode(s) if f.to_ndarray(format="rgb24") is not None)


def _pipeline_iter(path):
    return sum(1 for _ in iter_frames(path)[1])


def _cv2(path):
    import cv2

    cap, n = cv2.VideoCapture(str(path)), 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        n += 1
    cap.release()
    return n


def _ffmpeg(path):
    info = probe_video(path)
    frame_bytes = info.width * info.height * 3
    proc = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                          capture_output=True, check=True)
    frames = np.frombuffer(proc.stdout, np.uint8).reshape(-1, info.height, info.width, 3)
    assert frames.nbytes == len(proc.stdout) and len(proc.stdout) % frame_bytes == 0
    return len(frames)


def _decord(path):
    import decord

    vr = decord.VideoReader(str(path))
    return sum(1 for i in range(len(vr)) if vr[i].asnumpy() is not None)


def bench(path: Path, repeats: int) -> dict:
    methods = {"pyav": _pyav, "pipeline_iter_frames": _pipeline_iter, "opencv": _cv2}
    if shutil.which("ffmpeg"):
        methods["ffmpeg_cli_rawvideo"] = _ffmpeg
    try:
        import decord  # noqa: F401

        methods["decord"] = _decord
    except ImportError:
        pass
    results = {}
    for name, fn in methods.items():
        fn(path)  # warm-up (page cache, lazy imports)
        times, frames = [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            frames = fn(path)
            times.append(time.perf_counter() - t0)
        best = min(times)
        results[name] = {"frames": frames, "best_s": round(best, 4), "fps": round(frames / best, 1)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--video", action="append", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "decode.json"))
    args = parser.parse_args()
    videos = args.video or [p for p in ("data/samples/videos/bikes.mp4", "data/samples/videos/carphone_pristine.mp4")
                            if Path(p).exists()]
    if not videos:
        raise SystemExit("no sample videos: run `make samples` first or pass --video")
    report = {"machine": platform.platform(), "cpus": __import__("os").cpu_count(),
              "ffmpeg": shutil.which("ffmpeg") is not None, "videos": {}}
    for video in videos:
        info = probe_video(video)
        report["videos"][Path(video).name] = {"resolution": f"{info.width}x{info.height}", "codec": info.codec,
                                               "results": bench(Path(video), args.repeats)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    for name, entry in report["videos"].items():
        print(f"{name} ({entry['resolution']}, {entry['codec']})")
        for method, r in entry["results"].items():
            print(f"  {method:24s} {r['fps']:8.1f} fps  ({r['frames']} frames, {r['best_s']} s)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
