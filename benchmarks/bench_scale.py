"""Scale behaviour of the worker-writes design -> benchmarks/results/scale.json.

For 1, 4, 16, 64 small synthetic inputs (8 frames, 64x96), each build in a fresh process:
wall time, driver peak RSS, object-store peak (sampled from the GCS every 0.2 s), and the bytes the
driver received per sample (commit records only). Clips/s of the Ray build vs the in-process loop
(``run_build(use_ray=False)``) on the same inputs. And the time to plan a rerun over 1M committed
clip ids (list the commit records, group by input, anti-join the inputs), next to what the old design
pickled into the decode actor.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1 4 16 64] [--repeats 1] [--ids 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = r"""
import json, resource, sys, threading, time
from dataset_builder.config import BuildConfig
from dataset_builder.pipeline import run_build
videos, out, use_ray = sys.argv[1], sys.argv[2], sys.argv[3] == "ray"
cfg = BuildConfig.model_validate({
    "input": {"paths": [videos]},
    "clip": {"num_frames": 8, "height": 64, "width": 96, "max_clips_per_video": 1},
    "output": {"dir": out, "samples_per_shard": 8},
    "ray": {"max_objects_per_clip": 2, "num_cpus": 2},
})
peak = {"store": 0}
stop = threading.Event()
def sample():
    import ray
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address
    while not stop.wait(0.2):
        try:
            if ray.is_initialized():
                reply = get_memory_info_reply(get_state_from_address(ray.get_runtime_context().gcs_address))
                peak["store"] = max(peak["store"], int(reply.store_stats.object_store_bytes_used))
        except Exception:
            pass
if use_ray:
    threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
summary = run_build(cfg, use_ray=use_ray)
wall = time.perf_counter() - t0
stop.set()
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps({"wall_s": wall, "driver_peak_rss_mb": rss_mb,
      "object_store_peak_mb": peak["store"] / 2**20 if use_ray else None, "summary": summary}))
"""


def make_inputs(folder: Path, n: int) -> None:
    from dataset_builder.samples.synthetic import write_synthetic_video

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_synthetic_video(folder / f"v{i:03d}.mp4", seed=100 + i, num_frames=8, height=64, width=96,
                              num_objects=1, camera_pan=False)


def run_child(videos: Path, out: Path, mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(videos), str(out), mode], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"build failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def build_row(tmp: Path, n: int, mode: str, repeats: int) -> dict:
    videos = tmp / f"in{n}"
    if not videos.exists():
        make_inputs(videos, n)
    runs = []
    for r in range(repeats):
        runs.append(run_child(videos, tmp / f"out-{mode}-{n}-{r}", mode))
    s = runs[0]["summary"]
    samples = max(1, s["samples_written_now"])
    clips = s["clips_processed_now"]
    wall = statistics.median(x["wall_s"] for x in runs)
    return {
        "inputs": n, "executor": mode, "runs": repeats, "wall_s": round(wall, 2),
        "driver_peak_rss_mb": round(statistics.median(x["driver_peak_rss_mb"] for x in runs), 1),
        "object_store_peak_mb": (round(statistics.median(x["object_store_peak_mb"] for x in runs), 2)
                                 if mode == "ray" else None),
        "clips": clips, "samples": s["samples_written_now"], "shards": s["shards_committed_now"],
        "clips_per_s": round(clips / wall, 3),
        "driver_bytes_received_per_sample": round(s["commit_bytes_received"] / samples, 1),
        "unaccounted_inputs": len(s["unaccounted_inputs"]),
    }


def plan_million(tmp: Path, n_ids: int, per_shard: int = 64) -> dict:
    """Commit records for ``n_ids`` clips (one clip per input), then time a rerun's planning."""
    from dataset_builder.io import layout
    from schemas import CommitRecord

    root = tmp / "million"
    (root / layout.COMMITS_DIR).mkdir(parents=True, exist_ok=True)
    ids = [f"{i:016x}" for i in range(n_ids)]
    t0 = time.perf_counter()
    for start in range(0, n_ids, per_shard):
        chunk = ids[start:start + per_shard]
        stem = layout.shard_stem(chunk)
        sources = [f"/videos/{c}.mp4" for c in chunk]
        record = CommitRecord(shard=layout.shard_file(stem), num_samples=len(chunk), clip_ids=chunk,
                              clip_sources=sources, planned={s: 1 for s in sources}, keys=[f"{c}_00" for c in chunk])
        (root / layout.commit_path(stem)).write_text(record.model_dump_json())
    write_s = time.perf_counter() - t0
    inputs = [f"/videos/{c}.mp4" for c in ids] + [f"/videos/new{i}.mp4" for i in range(1000)]
    t0 = time.perf_counter()
    commits = layout.list_commits(root)
    t1 = time.perf_counter()
    plan = layout.resume_plan(root, commits=commits)
    t2 = time.perf_counter()
    pending = plan.pending_inputs(inputs)
    t3 = time.perf_counter()
    assert len(pending) == 1000 and not plan.partial_clip_ids
    return {
        "committed_ids": n_ids, "commit_records": len(commits), "write_records_s": round(write_s, 2),
        "list_commit_records_s": round(t1 - t0, 2), "group_by_input_s": round(t2 - t1, 2),
        "anti_join_inputs_s": round(t3 - t2, 2), "plan_total_s": round(t3 - t0, 2),
        "skip_ids_sent_to_decode_actors": len(plan.partial_clip_ids),
        "old_design_pickled_skip_set_mb": round(len(pickle.dumps(frozenset(ids))) / 2**20, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--local-size", type=int, default=16, help="inputs of the Ray vs in-process comparison")
    ap.add_argument("--ids", type=int, default=1_000_000)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scale.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmp = Path(tmp)
        rows = [build_row(tmp, n, "ray", args.repeats) for n in args.sizes]
        local = build_row(tmp, args.local_size, "local", args.repeats)
        ray_same = next((r for r in rows if r["inputs"] == args.local_size), None)
        result = {
            "machine": f"{os.cpu_count()} cores (shared; medians of {args.repeats} run(s) per point)",
            "clip": "8 frames, 64x96, synthetic, 1 clip per input, cpu profile",
            "builds": rows,
            "in_process_loop": local,
            "ray_over_in_process_clips_per_s": (round(ray_same["clips_per_s"] / local["clips_per_s"], 3)
                                                if ray_same else None),
            "plan_rerun": plan_million(tmp, args.ids),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
