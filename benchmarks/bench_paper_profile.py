"""Model calls of the paper profile's batched stages, per clip and per call, as the batch size grows.

    python benchmarks/bench_paper_profile.py [--clips 4] [--objects 3] [--batches 1 2 4 8 16]
        [--model-dir DIR] [--device cpu|cuda] [--repeats 3]

Without ``--model-dir`` a tiny random Qwen2.5-VL is built from config (CPU, offline): the numbers then
show the batching (generate/forward calls per clip fall as ``max_batch`` rises, items per call rise),
not real speed. With ``--model-dir $LAYERFLOW_MODEL_ROOT/Qwen2.5-VL-7B-Instruct --device cuda`` on a GPU
the same script reports real seconds per clip per stage (the ``ray.stage_costs`` of configs/paper.yaml)
and peak GPU memory. ``max_batch`` 1 is the old behaviour: one batch-1 call per question (3 per object
for captions). Writes benchmarks/results/paper_profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dataset_builder.config import BackendSpec  # noqa: E402
from dataset_builder.models.hf.qwen_captioner import QwenCaptioner  # noqa: E402
from dataset_builder.models.hf.qwen_judge import QwenFgJudge  # noqa: E402
from dataset_builder.models.hf.tiny_models import build_tiny_qwen2_5_vl  # noqa: E402
from dataset_builder.samples.synthetic import make_synthetic_clip  # noqa: E402


def _clips(n: int, objects: int, frames: int, height: int, width: int):
    out = []
    for seed in range(n):
        clip = make_synthetic_clip(seed=seed, num_frames=frames, height=height, width=width, num_objects=1)
        masks = np.stack([np.roll(clip.alpha, shift=8 * k, axis=2) for k in range(objects)])
        labels = [f"object{k}" for k in range(objects)]
        out.append((clip.frames, masks, np.repeat(clip.frames[None], objects, 0), labels))
    return out


def _peak_mem(device: str) -> float | None:
    if device != "cuda":
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def run(model_dir: Path, device: str, batches: list[int], clips, repeats: int) -> list[dict]:
    rows = []
    for max_batch in batches:
        spec = BackendSpec(name="qwen2_5_vl", model_dir=str(model_dir), device=device,
                           options={"num_frames": 4, "max_new_tokens": 16, "max_batch": max_batch})
        judge, captioner = QwenFgJudge(spec), QwenCaptioner(spec)
        calls = {"filter_foreground": lambda c, b=judge: b.judge_objects(c[0], c[1], c[3]),
                 "caption": lambda c, b=captioner: b.caption_objects(c[0], c[1], c[2], c[3], ["road"])}
        timings = {"filter_foreground": [], "caption": []}
        for _ in range(repeats):
            for backend in (judge, captioner):
                backend.vlm.stats.calls.clear()
                backend.vlm.stats.items.clear()
            for stage, fn in calls.items():
                t0 = time.perf_counter()
                for clip in clips:
                    fn(clip)
                timings[stage].append((time.perf_counter() - t0) / len(clips))
        for stage, stats, what in (("filter_foreground", judge.vlm.stats, "score"),
                                   ("caption", captioner.vlm.stats, "generate")):
            calls, items = stats.calls.get(what, 0), stats.items.get(what, 0)
            rows.append({"stage": stage, "max_batch": max_batch, "model_calls_per_clip": calls / len(clips),
                         "items_per_call": round(items / max(calls, 1), 2),
                         "seconds_per_clip_median": round(statistics.median(timings[stage]), 4),
                         "oom_retries": stats.oom_retries, "peak_gpu_gib": _peak_mem(device)})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "paper_profile.json")
    args = parser.parse_args(argv)
    clips = _clips(args.clips, args.objects, args.frames, 64, 96)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or build_tiny_qwen2_5_vl(Path(tmp) / "qwen")
        rows = run(model_dir, args.device, args.batches, clips, args.repeats)
    result = {
        "what": "Qwen2.5-VL judge (1 scored question per object) and captioner (3 generations per object), "
                "batched per clip with max_batch requests per model call",
        "model": "tiny random (config-built)" if args.model_dir is None else str(args.model_dir),
        "device": args.device, "clips": args.clips, "objects_per_clip": args.objects, "frames": args.frames,
        "repeats": args.repeats, "machine": platform.platform(), "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for row in rows:
        print(f"{row['stage']:18s} max_batch={row['max_batch']:2d}  calls/clip={row['model_calls_per_clip']:5.2f}  "
              f"items/call={row['items_per_call']:5.2f}  s/clip={row['seconds_per_clip_median']:.3f}")


if __name__ == "__main__":
    main()
