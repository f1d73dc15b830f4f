"""Pipeline throughput: the Ray Data DAG vs a plain sequential loop over the same stages.

    python benchmarks/bench_pipeline.py [--config configs/cpu.yaml] [key=value ...]

Both runs process the same clips with the same backends and write shards; the sequential loop
(``run_build(use_ray=False)``) calls the same stage objects in this process, one clip at a time.
Writes benchmarks/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_builder.config import load_build_config
from dataset_builder.pipeline import discover_inputs, run_build


def sequential(cfg, inputs) -> dict:
    t0 = time.perf_counter()
    summary = run_build(cfg, inputs, use_ray=False)
    seconds = time.perf_counter() - t0
    clips = summary["clips_processed_now"]
    return {"clips": clips, "seconds": round(seconds, 2), "clips_per_s": round(clips / seconds, 3),
            "samples": summary["samples_total"], "rejects": summary["rejects_total"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pipeline.json"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_build_config(args.config, args.overrides)
    inputs = discover_inputs(cfg.input.paths, cfg.input.extensions, cfg.input.max_videos)
    work = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    try:
        cfg.output.dir = str(work / "sequential")
        seq = sequential(cfg, inputs)
        cfg.output.dir = str(work / "ray")
        t0 = time.perf_counter()
        summary = run_build(cfg, inputs)
        ray_s = time.perf_counter() - t0
        ray_res = {"clips": summary["clips_processed_now"], "seconds_incl_ray_start": round(ray_s, 2),
                   "clips_per_s": round(summary["clips_processed_now"] / ray_s, 3),
                   "samples": summary["samples_total"], "rejects": summary["rejects_total"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {"machine": platform.platform(), "cpus": os.cpu_count(), "config": args.config,
              "overrides": args.overrides, "clip": cfg.clip.model_dump(), "inputs": [Path(p).name for p in inputs],
              "sequential": seq, "ray_data": ray_res,
              "speedup": round(ray_res["clips_per_s"] / seq["clips_per_s"], 2)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
