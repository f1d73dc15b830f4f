"""Model calls and time per clip of the paper profile's model stages, as batching grows on two axes.

    python benchmarks/bench_paper_profile.py [--clips 8] [--objects 3] [--frames 8]
        [--batches 1 4 16] [--clips-per-batch 1 2 4 8] [--stages tag segment_track filter_foreground caption]
        [--model-root DIR] [--device cpu|cuda] [--repeats 3] [--merge]

benchmarks/results/paper_profile.json (tiny models, CPU) comes from
    python benchmarks/bench_paper_profile.py --stages tag filter_foreground caption
    python benchmarks/bench_paper_profile.py --stages segment_track --clips 4 --batches 8 \
        --clips-per-batch 1 2 4 --repeats 1 --merge      # tiny SAM2 on CPU takes ~16 s per clip

Each stage object (``TagStage``, ``SegmentTrackStage``, ``FilterForegroundStage``, ``CaptionStage``) is
called exactly as the Ray adapter calls it, on Ray batches of ``clips_per_batch`` clips:

* ``max_batch`` axis (one clip per Ray batch): items per model call within a clip (3 caption questions per
  object; ``max_batch`` 1 is the old one-question-per-``generate`` behaviour).
* ``clips_per_batch`` axis (at the largest ``max_batch``): batching across the clips of a Ray batch
  (``stages.base.BackendStage.process_rows``) - model calls per clip fall and items per call rise as
  clips per batch rise. SAM2 keeps one inference session per clip (as the official video predictor), so
  its ``sam2_session`` calls per clip stay 1.

Time per clip by stage: GPU time from ``torch.cuda`` events around each stage call on CUDA (``gpu_s_per_clip``,
plus peak GPU memory), wall time everywhere (``wall_s_per_clip``); medians of ``--repeats`` runs. Without
``--model-root`` tiny random models are built from config (CPU, offline): the calls are real, the seconds
only show the overhead that batching removes, not real speed. On a GPU with the real weights
(``--model-root $LAYERFLOW_MODEL_ROOT --device cuda``, the docs/models.md layout) the ``stage_costs`` block is
what ``ray.stage_costs`` of configs/paper.yaml wants. Writes benchmarks/results/paper_profile.json.
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

from dataset_builder.models.hf import tiny_models  # noqa: E402
from dataset_builder.samples.synthetic import make_synthetic_clip  # noqa: E402
from dataset_builder.stages.base import ClipState, ObjectState, batch_from_rows, rows_from_batch  # noqa: E402
from dataset_builder.stages.caption import CaptionStage  # noqa: E402
from dataset_builder.stages.filter_foreground import FilterForegroundStage  # noqa: E402
from dataset_builder.stages.segment_track import SegmentTrackStage  # noqa: E402
from dataset_builder.stages.tag import TagStage  # noqa: E402

STAGES = {"tag": TagStage, "segment_track": SegmentTrackStage, "filter_foreground": FilterForegroundStage,
          "caption": CaptionStage}
#: The model calls each stage's backend counts (models.hf.batching.CallStats names).
CALLS = {"tag": ("siglip_image",), "segment_track": ("owlv2", "sam2_session"), "filter_foreground": ("score",),
         "caption": ("generate",)}
#: Paper model directories (docs/models.md) -> the tiny builder used without --model-root.
MODEL_DIRS = {"tag": ("siglip-so400m-patch14-384", tiny_models.build_tiny_siglip),
              "segment_track": ("owlv2_sam2", tiny_models.build_tiny_owlv2_sam2),
              "filter_foreground": ("Qwen2.5-VL-7B-Instruct", tiny_models.build_tiny_qwen2_5_vl),
              "caption": ("Qwen2.5-VL-7B-Instruct", tiny_models.build_tiny_qwen2_5_vl)}
LABELS = ["person", "dog", "bike", "car", "tree"]


def clip_rows(n: int, objects: int, frames: int, height: int, width: int) -> list[dict]:
    """Synthetic clips as the stages see them: frames, ``objects`` masks and backgrounds, subject tags."""
    rows = []
    for seed in range(n):
        clip = make_synthetic_clip(seed=seed, num_frames=frames, height=height, width=width, num_objects=1)
        masks = np.stack([np.roll(clip.alpha, shift=8 * k, axis=2) for k in range(objects)])
        labels = [LABELS[(seed + k) % len(LABELS)] for k in range(objects)]
        state = ClipState(clip_id=f"clip{seed}", source_uri=f"v{seed}.mp4",
                          tags=[{"label": label, "score": 0.5, "is_subject": True} for label in labels[:2]]
                          + [{"label": "road", "score": 0.4, "is_subject": False}],
                          objects=[ObjectState(object_id=k, label=label, score=1.0) for k, label in enumerate(labels)])
        rows.append({"meta": state.model_dump_json(), "frames": clip.frames, "masks": masks,
                     "backgrounds": np.repeat(clip.bg[None], objects, 0)})
    return rows


def stage_spec(stage: str, model_dir: Path, device: str, max_batch: int) -> dict:
    options = {"tag": {"threshold": 0.1, "max_tags": 20, "num_frames": 4},
               "segment_track": {"box_threshold": 0.0 if device == "cpu" else 0.25, "redetect_every": 4,
                                 "max_objects": 2, "min_area_frac": 0.0},
               "filter_foreground": {"threshold": 0.0, "num_frames": 4, "max_side": 448},
               "caption": {"num_frames": 8, "max_new_tokens": 16}}[stage]
    return {"name": {"tag": "siglip", "segment_track": "owlv2_sam2"}.get(stage, "qwen2_5_vl"),
            "model_dir": str(model_dir), "device": device, "dtype": "float32" if device == "cpu" else "bfloat16",
            "options": {**options, "max_batch": max_batch}}


def backend_stats(stage):
    backend = stage.backend
    return backend.stats if hasattr(backend, "stats") else backend.vlm.stats


class StageClock:
    """GPU time (``torch.cuda`` events on the current stream) and wall time of one stage call."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def __call__(self, fn, *args):
        """``(fn(*args), GPU seconds or None, wall seconds)``."""
        if not self.cuda:
            t0 = time.perf_counter()
            out = fn(*args)
            return out, None, time.perf_counter() - t0
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        start.record()
        out = fn(*args)
        end.record()
        torch.cuda.synchronize()
        return out, start.elapsed_time(end) / 1000.0, time.perf_counter() - t0


def measure(stage_obj, name: str, max_batch: int, rows: list[dict], clips_per_batch: int, clock: StageClock,
            repeats: int) -> tuple[dict, list[dict]]:
    """One stage over ``rows`` in Ray batches of ``clips_per_batch``: (calls/items per clip and time per
    clip, the output rows)."""
    stats = backend_stats(stage_obj)
    gpu, wall, outputs = [], [], []
    for _ in range(repeats):
        stats.calls.clear()
        stats.items.clear()
        g_total, w_total, outputs = 0.0, 0.0, []
        for first in range(0, len(rows), clips_per_batch):
            out, g, w = clock(stage_obj, batch_from_rows(rows[first:first + clips_per_batch]))
            g_total += g or 0.0
            w_total += w
            outputs.append(out)
        gpu.append(g_total / len(rows))
        wall.append(w_total / len(rows))
    row = {"stage": name, "clips_per_batch": clips_per_batch, "max_batch": max_batch,
           "clips": len(rows), "repeats": repeats, "batch_fallbacks": stage_obj.batch_fallbacks}
    for what in CALLS[name]:
        calls, items = stats.calls.get(what, 0), stats.items.get(what, 0)
        row[what] = {"calls_per_clip": round(calls / len(rows), 3), "items_per_call": round(items / max(calls, 1), 2)}
    row["gpu_s_per_clip"] = round(statistics.median(gpu), 4) if clock.cuda else None
    row["wall_s_per_clip"] = round(statistics.median(wall), 4)
    row["oom_retries"] = stats.oom_retries
    row["peak_gpu_gib"] = _peak_mem(clock.cuda)
    return row, [r for out in outputs for r in rows_from_batch(out)]


def _peak_mem(cuda: bool) -> float | None:
    if not cuda:
        return None
    import torch

    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return round(peak, 3)


def stage_outputs_agree(outputs: dict[int, list[dict]]) -> bool:
    """Same decisions/tags/captions at every clips-per-batch setting (greedy decoding: must hold)."""
    def summary(row):
        state = ClipState.model_validate_json(row["meta"])
        return (state.rejected, [(r.stage, r.reason) for r in state.rejects],
                [(o.label, o.captions) for o in state.objects], [t["label"] for t in state.tags])
    views = [[summary(r) for r in rows] for rows in outputs.values()]
    return all(v == views[0] for v in views)


def run(args, model_dirs: dict[str, Path]) -> tuple[list[dict], dict[str, bool]]:
    rows_in = clip_rows(args.clips, args.objects, args.frames, args.height, args.width)
    clock = StageClock(args.device)
    top = max(args.batches)
    results, agree = [], {}
    for name in args.stages:
        settings = [(mb, 1) for mb in args.batches] + [(top, c) for c in args.clips_per_batch if c != 1]
        outputs: dict[int, list[dict]] = {}
        built: dict[int, object] = {}
        for max_batch, cpb in settings:
            if max_batch not in built:  # one model in memory at a time
                built = {max_batch: STAGES[name](stage_spec(name, model_dirs[name], args.device, max_batch))}
            row, out_rows = measure(built[max_batch], name, max_batch, rows_in, cpb, clock, args.repeats)
            if max_batch == top:
                outputs[cpb] = out_rows
            results.append(row)
            calls = "  ".join(f"{w}: {row[w]['calls_per_clip']:.2f}/clip x {row[w]['items_per_call']:.1f}"
                              for w in CALLS[name])
            print(f"{name:18s} max_batch={max_batch:2d} clips/batch={cpb:2d}  {calls}  "
                  f"wall {row['wall_s_per_clip']:.3f} s/clip" + (f"  gpu {row['gpu_s_per_clip']:.3f} s/clip"
                                                                 if row["gpu_s_per_clip"] is not None else ""),
                  flush=True)
        agree[name] = stage_outputs_agree(outputs)
        built.clear()
    return results, agree


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16], help="backend max_batch values")
    parser.add_argument("--clips-per-batch", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--model-root", type=Path, default=None,
                        help="paper model directories (docs/models.md); default: tiny random models")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "paper_profile.json")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other stages' rows of an existing --out (e.g. SAM2 run with fewer clips)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model_dirs = {}
        for name in args.stages:
            subdir, build_tiny = MODEL_DIRS[name]
            if args.model_root is not None:
                model_dirs[name] = args.model_root / subdir
            elif (Path(tmp) / subdir).is_dir():
                model_dirs[name] = Path(tmp) / subdir
            else:
                model_dirs[name] = build_tiny(Path(tmp) / subdir)
        rows, agree = run(args, model_dirs)
    top = max(args.batches)
    biggest = max(args.clips_per_batch)
    time_key = "gpu_s_per_clip" if args.device.startswith("cuda") else "wall_s_per_clip"
    stage_costs = {r["stage"]: r[time_key] for r in rows if r["max_batch"] == top and r["clips_per_batch"] == biggest}
    if args.merge and args.out.is_file():
        old = json.loads(args.out.read_text())
        rows = [r for r in old["rows"] if r["stage"] not in args.stages] + rows
        agree = {**{k: v for k, v in old["outputs_identical_across_clips_per_batch"].items()
                    if k not in args.stages}, **agree}
        stage_costs = {**{k: v for k, v in old["stage_costs"].items() if k not in args.stages}, **stage_costs}
    order = list(STAGES)
    rows.sort(key=lambda r: order.index(r["stage"]))
    result = {
        "what": "model calls per clip, items per model call and time per clip of each paper model stage, called "
                "as the Ray adapter calls it on Ray batches of clips_per_batch clips, with backend max_batch "
                "(rows give clips and repeats each)",
        "model": "tiny random (config-built)" if args.model_root is None else str(args.model_root),
        "device": args.device, "objects_per_clip": args.objects, "frames": args.frames,
        "frame_size": [args.height, args.width], "machine": platform.platform(), "time": time_key,
        "outputs_identical_across_clips_per_batch": agree,
        "stage_costs": {name: stage_costs[name] for name in order if name in stage_costs},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"outputs identical across clips per batch: {agree}\nwrote {args.out}")


if __name__ == "__main__":
    main()
