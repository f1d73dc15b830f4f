"""Pipeline throughput: the Ray Data DAG vs a plain sequential loop over the same stages.

    python benchmarks/bench_pipeline.py [--config configs/cpu.yaml] [key=value ...]

Both runs process the same clips with the same backends and write shards; the sequential loop calls
the stage objects directly in this process (no Ray). Writes benchmarks/results/pipeline.json.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_builder.config import load_build_config  # noqa: E402
from dataset_builder.io.shard_writer import SampleToWrite, ShardWriter  # noqa: E402
from dataset_builder.pipeline import discover_inputs, run_build, stage_plan  # noqa: E402
from dataset_builder.stages.base import ClipState, rows_from_batch  # noqa: E402
from dataset_builder.stages.encode import read_payload  # noqa: E402
from dataset_builder.stages.sample_clips import SampleClips  # noqa: E402


def sequential(cfg, inputs, out_dir) -> dict:
    t0 = time.perf_counter()
    sampler = SampleClips(cfg.clip, cfg.processing_hash())
    stages = [cls(**kwargs) for cls, kwargs, _ in stage_plan(cfg)]
    clips = 0
    with ShardWriter(out_dir, cfg.output.samples_per_shard) as writer:
        for uri in inputs:
            batch = sampler({"uri": np.array([uri])})
            for row in rows_from_batch(batch):
                one = {k: (np.array([v]) if not isinstance(v, np.ndarray) else v[None]) for k, v in row.items()}
                for stage in stages:
                    one = stage(one)
                out = rows_from_batch(one)[0]
                state = ClipState.model_validate_json(out["meta"])
                writer.add_clip(state.clip_id, [SampleToWrite(r, m) for r, m in read_payload(out["payload"])],
                                state.rejects)
                clips += 1
    seconds = time.perf_counter() - t0
    return {"clips": clips, "seconds": round(seconds, 2), "clips_per_s": round(clips / seconds, 3)}


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
        seq = sequential(cfg, inputs, work / "sequential")
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
