"""CPU seconds per 16-frame 480x720 clip of the CPU profile's whole local pipeline, per stage.

    .venv/bin/python benchmarks/cpu_clip_timing.py [--seqs blackswan,dog] [--rounds 3] [--out FILE]

The figure of ``eval_layer_quality.py`` (``time_clips``: process CPU seconds of the local pipeline per
clip, one clip per DAVIS sequence; building the stages, once per actor, reported apart), repeated
``--rounds`` times in one process after a warm-up round (imports, caches: as in the eval, where the
quality run comes first), with each stage's own process CPU seconds (``decode`` = clip planning +
decode + resize). The machine's load moves these figures by 10-20 %: compare two trees by alternating
(or simultaneous) runs of this script, e.g.
``PYTHONPATH=<tree> python <tree>/benchmarks/cpu_clip_timing.py``. Needs DAVIS (see eval_layer_quality).
Results: benchmarks/results/cpu_clip_timing.json (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_layer_quality as elq  # noqa: E402

from dataset_builder.io.inputs import discover  # noqa: E402
from dataset_builder.models.cpu import nets  # noqa: E402
from dataset_builder.pipeline import decoded_batches, rows_from_batch, stage_specs  # noqa: E402
from dataset_builder.stages.runtime import limit_cpu_threads  # noqa: E402

RESULTS = elq.REPO / "benchmarks" / "results" / "cpu_clip_timing.json"


def one_round(cfg, inputs) -> list[dict[str, float]]:
    """Per clip: {stage: CPU s}, the first clip's with ``build`` (stage construction: once per actor, not
    in the clip's ``total``, as time_clips counts it)."""
    c0 = time.process_time()
    stages = [spec.build() for spec in stage_specs(cfg, fuse=False)]
    build = time.process_time() - c0
    clips = []
    batches = decoded_batches(cfg, inputs, set())
    while True:
        nets._MEMO.clear()  # rounds repeat the clips: only a clip's own stages may share YOLO results
        c0 = time.process_time()
        batch = next(batches, None)
        if batch is None:
            break
        per = {"build": build} if not clips else {}
        per["decode"] = time.process_time() - c0
        for stage in stages:
            c0 = time.process_time()
            batch = stage(batch)
            per[stage.stage] = time.process_time() - c0
        rows_from_batch(batch)
        per["total"] = sum(v for k, v in per.items() if k != "build")
        clips.append(per)
    return clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqs", default="blackswan,dog")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--config", default=str(elq.REPO / "configs" / "cpu.yaml"))
    ap.add_argument("--fps", type=float, default=8.0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    root = elq.find_data_root()
    if root is None:
        raise SystemExit("no DAVIS data: set LAYERFLOW_SHARED_DATA or put shared/data beside the checkout")
    seqs = args.seqs.split(",")
    limit_cpu_threads(1)  # one core, as a pipeline actor of <= 1 CPU runs (old trees: OPENCV_FOR_THREADS_NUM=1)
    with tempfile.TemporaryDirectory(prefix="layerflow-timing-") as tmp:
        elq.write_videos(root, seqs, Path(tmp) / "videos")
        cfg = elq.build_config(args, Path(tmp) / "videos", Path(tmp) / "out", 480, 720, ["clip.max_clips_per_video=1"])
        inputs = [e for e in discover(cfg.input.paths, cfg.input.extensions) if e.usable]
        one_round(cfg, inputs)  # warm-up: imports and caches, as the eval's quality run before its timing
        rounds = []
        for r in range(args.rounds):
            clips = one_round(cfg, inputs)
            rounds.append(clips)
            print(f"round {r}: " + ", ".join(f"{s} {c['total']:.2f}" for s, c in zip(seqs, clips)), flush=True)
    per_clip = [statistics.median(c["total"] for c in clips) for clips in rounds]  # time_clips' figure
    stages = sorted({k for clips in rounds for c in clips for k in c} - {"total"})
    by_stage = {k: round(statistics.median(c[k] for clips in rounds for c in clips if k in c), 3) for k in stages}
    result = {"sequences": seqs, "rounds": args.rounds, "overrides": args.overrides,
              "cpu_seconds_per_clip_480x720": round(statistics.median(per_clip), 2),
              "per_round": [round(x, 2) for x in per_clip],
              "per_clip": [[round(c["total"], 2) for c in clips] for clips in rounds],
              "stage_cpu_seconds_median": by_stage}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
