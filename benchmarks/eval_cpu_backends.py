"""Evaluate the CPU segmenter (DAVIS-2016 J) and inpainter (PSNR vs. ground truth) and write JSON.

    .venv/bin/python benchmarks/eval_cpu_backends.py [--frames 16] [--height 240 --width 426]

Segmenter: first ``--frames`` frames of each DAVIS-2016 sequence in $LAYERFLOW_SHARED_DATA
(default /work/shared/data), resized; J = mean per-frame IoU of the best-matching returned track vs.
the GT mask (0 if nothing is returned). Inpainter: synthetic clips with exact background GT, PSNR
inside the (dilated) hole vs. a per-frame Telea baseline; on DAVIS (GT masks, no GT background) only
the share of the hole filled from other frames is reported. DAVIS is non-commercial evaluation data:
it is read in place, never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from dataset_builder.config import BackendSpec
from dataset_builder.models.cpu.inpainter import TemporalSpatialInpainter
from dataset_builder.models.cpu.segmenter import MotionSegmenterTracker
from dataset_builder.ops.inpaint import dilate_masks, naive_inpaint
from dataset_builder.ops.masks import temporal_iou
from dataset_builder.samples import make_synthetic_clip

RESULTS = Path(__file__).parent / "results" / "eval_cpu_backends.json"


def load_davis(root: Path, seq: str, count: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    img_dir = root / "davis2016" / "JPEGImages" / "480p" / seq
    gt_dir = root / "davis2016" / "Annotations" / "480p" / seq
    names = sorted(p.name for p in img_dir.glob("*.jpg"))[:count]
    frames = np.stack([cv2.resize(cv2.cvtColor(cv2.imread(str(img_dir / n)), cv2.COLOR_BGR2RGB), (width, height),
                                  interpolation=cv2.INTER_AREA) for n in names])
    gts = np.stack([cv2.resize(cv2.imread(str(gt_dir / n.replace(".jpg", ".png")), cv2.IMREAD_GRAYSCALE),
                               (width, height), interpolation=cv2.INTER_NEAREST) for n in names])
    return frames, gts


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    err = (a.astype(np.float64) - b.astype(np.float64))[region]
    return float(10 * np.log10(255.0**2 / max(float((err**2).mean()), 1e-10)))


def eval_segmenter(root: Path, frames_n: int, height: int, width: int) -> dict:
    seg = MotionSegmenterTracker(BackendSpec())
    rows = {}
    seqs = sorted(p.name for p in (root / "davis2016" / "JPEGImages" / "480p").iterdir() if p.is_dir())
    for seq in seqs:
        frames, gt = load_davis(root, seq, frames_n, height, width)
        start = time.perf_counter()
        objs = seg.segment(frames, ["moving object"])
        secs = time.perf_counter() - start
        ious = [temporal_iou(o.masks, gt) for o in objs]
        best = int(np.argmax(ious)) if ious else -1
        rows[seq] = {
            "J_best": float(max(ious, default=0.0)),
            "J_top1": float(ious[0]) if ious else 0.0,
            "num_tracks": len(objs),
            "best_rank": best,
            "seconds": secs,
        }
    return {
        "sequences": rows,
        "mean_J_best": float(np.mean([r["J_best"] for r in rows.values()])) if rows else None,
        "mean_J_top1": float(np.mean([r["J_top1"] for r in rows.values()])) if rows else None,
        "mean_seconds": float(np.mean([r["seconds"] for r in rows.values()])) if rows else None,
    }


def eval_inpainter_synthetic(frames_n: int, height: int, width: int, seeds: range) -> dict:
    inp = TemporalSpatialInpainter(BackendSpec())
    rows = {}
    for seed in seeds:
        for pan in (False, True):
            clip = make_synthetic_clip(seed=seed, num_frames=frames_n, height=height, width=width, camera_pan=pan)
            hole = dilate_masks(clip.alpha, inp.options.dilate)
            start = time.perf_counter()
            bg = inp.inpaint(clip.frames, clip.alpha)
            secs = time.perf_counter() - start
            naive = naive_inpaint(clip.frames, clip.alpha, inp.options.dilate)
            rows[f"seed{seed}_{'pan' if pan else 'static'}"] = {
                "psnr_hole": psnr(bg, clip.bg, hole),
                "psnr_hole_naive_telea": psnr(naive, clip.bg, hole),
                "outside_hole_exact": bool((bg[~hole] == clip.frames[~hole]).all()),
                "temporal_fill_fraction": inp.last_stats["temporal_fill_fraction"],
                "seconds": secs,
            }
    return {
        "clips": rows,
        "mean_psnr_hole": float(np.mean([r["psnr_hole"] for r in rows.values()])),
        "mean_psnr_hole_naive_telea": float(np.mean([r["psnr_hole_naive_telea"] for r in rows.values()])),
    }


def eval_inpainter_davis(root: Path, frames_n: int, height: int, width: int) -> dict:
    inp = TemporalSpatialInpainter(BackendSpec())
    rows = {}
    for seq in sorted(p.name for p in (root / "davis2016" / "JPEGImages" / "480p").iterdir() if p.is_dir()):
        frames, gt = load_davis(root, seq, frames_n, height, width)
        start = time.perf_counter()
        inp.inpaint(frames, gt)
        rows[seq] = {**inp.last_stats, "seconds": time.perf_counter() - start}
    return {"sequences": rows,
            "mean_temporal_fill_fraction": float(np.mean([r["temporal_fill_fraction"] for r in rows.values()]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=426)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    root = Path(os.environ.get("LAYERFLOW_SHARED_DATA", "/work/shared/data"))
    result: dict = {"frames": args.frames, "height": args.height, "width": args.width}
    if (root / "davis2016").is_dir():
        result["segmenter_davis"] = eval_segmenter(root, args.frames, args.height, args.width)
        result["inpainter_davis"] = eval_inpainter_davis(root, args.frames, args.height, args.width)
    else:
        print(f"no DAVIS data under {root}; skipping the real-video part")
    result["inpainter_synthetic"] = eval_inpainter_synthetic(args.frames, args.height, args.width, range(3))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    if "segmenter_davis" in result:
        seg = result["segmenter_davis"]
        print(f"{'sequence':<22}{'J_best':>8}{'J_top1':>8}{'tracks':>8}{'sec':>7}  fill")
        for seq, r in seg["sequences"].items():
            fill = result["inpainter_davis"]["sequences"][seq]["temporal_fill_fraction"]
            print(f"{seq:<22}{r['J_best']:>8.3f}{r['J_top1']:>8.3f}{r['num_tracks']:>8d}{r['seconds']:>7.2f}  {fill:.3f}")
        print(f"{'mean':<22}{seg['mean_J_best']:>8.3f}{seg['mean_J_top1']:>8.3f}{'':>8}{seg['mean_seconds']:>7.2f}")
    syn = result["inpainter_synthetic"]
    print(f"\n{'synthetic clip':<22}{'PSNR':>8}{'Telea':>8}")
    for name, r in syn["clips"].items():
        print(f"{name:<22}{r['psnr_hole']:>8.2f}{r['psnr_hole_naive_telea']:>8.2f}")
    print(f"{'mean':<22}{syn['mean_psnr_hole']:>8.2f}{syn['mean_psnr_hole_naive_telea']:>8.2f}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
