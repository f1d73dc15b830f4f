"""Text-prompted segmentation + tracking: OWLv2 boxes -> SAM2 video propagation (backend ``owlv2_sam2``).

SAM-Track style, in ONE SAM2 inference session per clip: OWLv2 runs on every ``redetect_every``-th frame
(all keyframes of the clip in one forward). Frames are propagated forward once; at each keyframe every
detection is turned into a mask (SAM2 prompted by its box, all detections of the keyframe in one call)
and compared with the tracked masks there (:func:`assign_detections`): a detection whose mask matches a
track (mask IoU >= ``reanchor_iou``) re-anchors that track with the box (corrects drift), one whose mask
is mostly not covered by tracked masks (coverage ratio < ``new_object_max_coverage``) starts a new track
(an object entering the clip), the rest are parts of tracked objects and are dropped. Tracks started
after frame 0 are completed by one backward pass from the latest start.

SAM2 preprocessing (resize to the model's square input, ImageNet normalisation) is done here with
OpenCV/numpy and boxes are rescaled by hand: transformers' Sam2 image/video processors need
torchvision, which we do not require. The model receives exactly what those processors would give it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_builder.config import BackendSpec, Resources
from dataset_builder.models.base import TrackedObject
from dataset_builder.models.hf import loading
from dataset_builder.models.hf.batching import BatchRunner, CallStats

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass(frozen=True)
class Detection:
    frame: int
    #: xyxy in pixels of the original frame.
    box: tuple[float, float, float, float]
    score: float
    label: str


def owl_boxes_to_pixels(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """OWLv2 ``(cx, cy, w, h)`` normalised to the *padded square* input -> pixel xyxy, clipped.

    OWLv2 pads images bottom/right to a square before resizing, so both axes scale by the longer side.
    """
    side = max(height, width)
    cx, cy, w, h = (boxes[..., i] * side for i in range(4))
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    xyxy[..., 0::2] = xyxy[..., 0::2].clip(0, width)
    xyxy[..., 1::2] = xyxy[..., 1::2].clip(0, height)
    return xyxy


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes, ``(N, 4) x (M, 4) -> (N, M)``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod((rb - lt).clip(0), -1)
    area_a = np.prod((a[:, 2:] - a[:, :2]).clip(0), -1)
    area_b = np.prod((b[:, 2:] - b[:, :2]).clip(0), -1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy class-agnostic non-maximum suppression; indices kept, best first."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        if order:
            ious = box_iou(boxes[best][None], boxes[order])[0]
            order = [i for i, iou in zip(order, ious) if iou <= iou_threshold]
    return keep


def box_coverage(box: tuple[float, float, float, float], mask: np.ndarray) -> float:
    """Fraction of the box's pixels already inside ``mask`` (bool ``(H, W)``)."""
    x0, y0, x1, y1 = (round(v) for v in box)
    region = mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
    return float(region.mean()) if region.size else 1.0


def soft_alpha(prob: np.ndarray, band: int) -> np.ndarray:
    """uint8 alpha ``(T, H, W)`` from SAM2 probabilities ``(T, H, W)`` in 0..1.

    The object is ``prob > 0.5`` (SAM2's logit-0 threshold); soft values are kept only within
    ``band`` pixels of it, everything farther is 0. Raw sigmoid tails (logits above about -6 round to
    alpha >= 1) would otherwise leave faint ghost alpha on background and on similar objects, and
    downstream any alpha > 0 counts as object (fg layer pixels, inpainting hole).
    """
    import cv2

    hard = (prob > 0.5).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    near = np.stack([cv2.dilate(m, kernel) for m in hard]).astype(bool) if band > 0 else hard.astype(bool)
    return np.where(near, np.round(prob * 255), 0).astype(np.uint8)


def select_new(detections: list[Detection], tracked: np.ndarray, max_coverage: float) -> list[Detection]:
    """Detections of a keyframe whose box is not already tracked (box-level pre-filter)."""
    return [d for d in detections if box_coverage(d.box, tracked) < max_coverage]


def assign_detections(candidates: np.ndarray, tracks: np.ndarray, max_coverage: float, reanchor_iou: float,
                      min_area: int = 0) -> list[tuple[str, int | None]]:
    """SAM-Track's keyframe rule on masks. ``candidates`` (N, H, W) bool: detection masks, best first;
    ``tracks`` (M, H, W) bool: tracked masks at the keyframe. Per candidate: ``("reanchor", j)`` when its
    mask IoU with track ``j`` is the best and >= ``reanchor_iou`` (each track re-anchored once),
    ``("new", None)`` when less than ``max_coverage`` of its mask is covered by tracked masks (accepted new
    tracks count as tracked for later candidates), else ``("covered", None)``; ``("empty", None)`` for a
    mask under ``min_area`` pixels."""
    covered = tracks.any(0) if len(tracks) else np.zeros(candidates.shape[1:], bool)
    track_area = tracks.reshape(len(tracks), -1).sum(1) if len(tracks) else np.zeros(0, np.int64)
    anchored: set[int] = set()
    out: list[tuple[str, int | None]] = []
    for cand in candidates:
        area = int(cand.sum())
        if area < min_area:
            out.append(("empty", None))
            continue
        if len(tracks):
            inter = (tracks & cand).reshape(len(tracks), -1).sum(1)
            iou = inter / np.maximum(track_area + area - inter, 1)
            j = int(iou.argmax())
            if iou[j] >= reanchor_iou and j not in anchored:
                anchored.add(j)
                out.append(("reanchor", j))
                continue
        if (cand & covered).sum() / max(area, 1) < max_coverage:
            covered = covered | cand
            out.append(("new", None))
        else:
            out.append(("covered", None))
    return out


class Owlv2Sam2SegmenterTracker:
    """Options: ``box_threshold`` (0.25), ``nms_iou`` (0.5), ``redetect_every`` (8 frames),
    ``max_objects`` (8), ``new_object_max_coverage`` (0.3, mask coverage ratio), ``reanchor_iou`` (0.5),
    ``min_area_frac`` (0.001), ``max_batch`` (8 keyframe images per OWLv2 forward, across the clips of a
    batch), ``detector_subdir`` ("owlv2"), ``tracker_subdir`` ("sam2"). ``model_dir``
    holds both models. ``stats`` counts model calls (benchmarks/bench_paper_profile.py)."""

    default_subdir = "owlv2_sam2"
    default_resources = Resources(num_cpus=2, num_gpus=0.5, batch_size=4, concurrency=8)

    def __init__(self, spec: BackendSpec) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, Owlv2ForObjectDetection, Sam2VideoModel

        opts = spec.options
        self.box_threshold = float(opts.get("box_threshold", 0.25))
        self.nms_iou = float(opts.get("nms_iou", 0.5))
        self.redetect_every = max(1, int(opts.get("redetect_every", 8)))
        self.max_objects = int(opts.get("max_objects", 8))
        self.max_coverage = float(opts.get("new_object_max_coverage", 0.3))
        self.reanchor_iou = float(opts.get("reanchor_iou", 0.5))
        self.stats = CallStats()
        self.runner = BatchRunner(int(opts.get("max_batch", 8)), self.stats)
        self.min_area_frac = float(opts.get("min_area_frac", 0.001))

        base = loading.resolve_model_dir(spec, self.default_subdir, required=())
        det_dir = _subdir(spec, base, opts.get("detector_subdir", "owlv2"))
        sam_dir = _subdir(spec, base, opts.get("tracker_subdir", "sam2"))
        self.detector, self.device, self.dtype = loading.load_model(Owlv2ForObjectDetection, det_dir, spec)
        self.det_processor = loading.load_pretrained(AutoImageProcessor, det_dir, spec)
        self.tokenizer = loading.load_pretrained(AutoTokenizer, det_dir, spec)
        self.tracker, _, _ = loading.load_model(Sam2VideoModel, sam_dir, spec)
        self.sam_size = int(self.tracker.config.image_size)

    # -- detection ---------------------------------------------------------------------------------
    def detect(self, frames: np.ndarray, prompts: list[str]) -> list[Detection]:
        """OWLv2 on every keyframe, thresholded and NMS-ed per keyframe (class-agnostic)."""
        return self.detect_clips([(frames, prompts)])[0]

    def detect_clips(self, clips: list[tuple[np.ndarray, list[str]]]) -> list[list[Detection]]:
        """:meth:`detect` for several clips: the keyframes of all of them go through OWLv2 together, at
        most ``max_batch`` images per forward (halved on out-of-memory). Clips with different prompts
        share a forward: each image's text queries are padded to the chunk's longest prompt list with
        copies of its own last prompt, and only its own queries are read back, so every clip gets the
        logits it would get alone (OWLv2 scores each (image, query) pair independently)."""
        items = [(c, frame, frames[frame], prompts) for c, (frames, prompts) in enumerate(clips)
                 for frame in range(0, len(frames), self.redetect_every)]
        per_image = self.runner.run("owlv2", items, self._detect_images)
        out: list[list[Detection]] = [[] for _ in clips]
        for (c, *_), detections in zip(items, per_image):
            out[c] += detections
        return out

    def _detect_images(self, items: list[tuple[int, int, np.ndarray, list[str]]]) -> list[list[Detection]]:
        import torch

        width_q = max(len(prompts) for *_, prompts in items)
        queries = [prompts + [prompts[-1]] * (width_q - len(prompts)) for *_, prompts in items]
        text = self.tokenizer(
            [q for qs in queries for q in qs], padding="max_length", truncation=True,
            max_length=self.detector.config.text_config.max_position_embeddings, return_tensors="pt",
        )
        pixels = self.det_processor(images=[image for _, _, image, _ in items], return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            out = self.detector(
                input_ids=text["input_ids"].to(self.device), attention_mask=text["attention_mask"].to(self.device),
                pixel_values=pixels.to(self.device, self.dtype),
            )
        all_probs = torch.sigmoid(out.logits.float()).cpu().numpy()  # (n, patches, queries)
        all_boxes = out.pred_boxes.float().cpu().numpy()
        results = []
        for k, (_, frame, image, prompts) in enumerate(items):
            probs = all_probs[k, :, :len(prompts)]
            boxes = owl_boxes_to_pixels(all_boxes[k], *image.shape[:2])
            best_q, best = probs.argmax(-1), probs.max(-1)
            cand = np.flatnonzero(best >= self.box_threshold)
            keep = nms(boxes[cand], best[cand], self.nms_iou) if len(cand) else []
            results.append([Detection(frame, tuple(map(float, boxes[cand[i]])), float(best[cand[i]]),
                                      prompts[int(best_q[cand[i]])]) for i in keep])
        return results

    # -- tracking ----------------------------------------------------------------------------------
    def _pixels(self, frames: np.ndarray):
        import cv2
        import torch

        size = (self.sam_size, self.sam_size)
        resized = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])
        norm = (resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return torch.from_numpy(norm).permute(0, 3, 1, 2).contiguous()

    def _session(self, pixels, height: int, width: int, what: str = "sam2_session"):
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        self.stats.record(what, 1)
        return Sam2VideoInferenceSession(
            video=pixels, video_height=height, video_width=width, inference_device=self.device,
            inference_state_device=self.device, video_storage_device=self.device, dtype=self.dtype,
        )

    def _add_box(self, session, obj_id: int, frame: int, box: tuple, height: int, width: int) -> None:
        import torch

        scale = torch.tensor([self.sam_size / width, self.sam_size / height] * 2, dtype=torch.float32)
        coords = (torch.tensor(box, dtype=torch.float32) * scale).view(1, 1, 2, 2)
        labels = torch.tensor([[[2, 3]]], dtype=torch.int32)  # SAM's box-corner point labels
        session.add_point_inputs(session.obj_id_to_idx(obj_id), frame, {"point_coords": coords,
                                                                      "point_labels": labels})
        if obj_id not in session.obj_with_new_inputs:
            session.obj_with_new_inputs.append(obj_id)

    def _step(self, session, frame: int, height: int, width: int, reverse: bool = False) -> dict[int, np.ndarray]:
        """Run SAM2 on one frame for every object of the session: {obj_id: probabilities (H, W)}."""
        import torch

        self.stats.record("sam2_frame", session.get_obj_num())
        with torch.inference_mode():
            out = self.tracker(inference_session=session, frame_idx=frame, reverse=reverse)
            logits = torch.nn.functional.interpolate(
                out.pred_masks.float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0]
            probs = torch.sigmoid(logits).cpu().numpy()
        return {int(obj_id): probs[row] for row, obj_id in enumerate(out.object_ids)}

    def prompt_masks(self, pixels, frame: int, boxes: list[tuple], height: int, width: int) -> np.ndarray:
        """Box-prompted SAM2 masks of all ``boxes`` on one frame, one call (no memory): (N, H, W) 0..1."""
        scratch = self._session(pixels[frame:frame + 1], height, width, what="sam2_prompt")
        for i, box in enumerate(boxes):
            self._add_box(scratch, i, 0, box, height, width)
        probs = self._step(scratch, 0, height, width)
        return np.stack([probs[i] for i in range(len(boxes))])

    def track_clip(self, pixels, height: int, width: int, detections: list[Detection]):
        """One session for the clip; returns (tracks, probabilities (N, T, H, W), re-anchor counts)."""
        num_frames = len(pixels)
        by_frame: dict[int, list[Detection]] = {}
        for det in sorted(detections, key=lambda d: -d.score):
            by_frame.setdefault(det.frame, []).append(det)
        session = self._session(pixels, height, width)
        tracks: list[Detection] = []  # the detection that started each track (obj_id = index)
        reanchors: list[int] = []
        probs = np.zeros((0, num_frames, height, width), np.float32)
        for t in range(num_frames):
            current = self._step(session, t, height, width) if tracks else {}
            cands = by_frame.get(t, [])
            changed = False
            if cands:
                cand_probs = self.prompt_masks(pixels, t, [d.box for d in cands], height, width)
                tracked = np.stack([current[i] > 0.5 for i in range(len(tracks))]) if tracks else \
                    np.zeros((0, height, width), bool)
                min_area = int(self.min_area_frac * height * width)
                for det, (action, j) in zip(cands, assign_detections(
                        cand_probs > 0.5, tracked, self.max_coverage, self.reanchor_iou, min_area)):
                    if action == "reanchor":
                        self._add_box(session, j, t, det.box, height, width)
                        reanchors[j] += 1
                        changed = True
                    elif action == "new" and len(tracks) < self.max_objects:
                        self._add_box(session, len(tracks), t, det.box, height, width)
                        tracks.append(det)
                        reanchors.append(0)
                        probs = np.concatenate([probs, np.zeros((1, num_frames, height, width), np.float32)])
                        changed = True
            if changed:
                current = self._step(session, t, height, width)
            for obj_id, p in current.items():
                probs[obj_id, t] = p
        late = [i for i, det in enumerate(tracks) if det.frame > 0]
        if late:  # objects that entered later: one backward pass from the latest start fills earlier frames
            for t in range(max(tracks[i].frame for i in late) - 1, -1, -1):
                back = self._step(session, t, height, width, reverse=True)
                for i in late:
                    if t < tracks[i].frame:
                        probs[i, t] = back[i]
        return tracks, probs, reanchors

    def segment(self, frames: np.ndarray, prompts: list[str]) -> list[TrackedObject]:
        return self.segment_clips([(frames, prompts)])[0]

    def segment_clips(self, clips: list[tuple[np.ndarray, list[str]]]) -> list[list[TrackedObject]]:
        """Several clips: one batched OWLv2 detection over all their keyframes (:meth:`detect_clips`),
        then one SAM2 inference session per clip - the official ``SAM2VideoPredictor`` state holds one
        video's frames and memory bank, so sessions are not batched across clips."""
        clips = [(frames, [p for p in dict.fromkeys(prompts) if p.strip()]) for frames, prompts in clips]
        todo = [i for i, (frames, prompts) in enumerate(clips) if prompts and len(frames)]
        detections = dict(zip(todo, self.detect_clips([clips[i] for i in todo])))
        return [self._track(clips[i][0], detections[i]) if detections.get(i) else [] for i in range(len(clips))]

    def _track(self, frames: np.ndarray, detections: list[Detection]) -> list[TrackedObject]:
        num_frames, height, width = frames.shape[:3]
        tracks, probs, reanchors = self.track_clip(self._pixels(frames), height, width, detections)
        # Soft edge band: two of SAM2's low-res mask pixels (masks are predicted at 1/4 input size).
        band = math.ceil(2 * max(height, width) / (self.sam_size / 4))
        objects: list[TrackedObject] = []
        for det, mask, anchors in zip(tracks, probs, reanchors):
            hard = mask > 0.5
            if hard.mean() < self.min_area_frac:
                continue  # SAM2 lost it or the box held nothing segmentable
            objects.append(TrackedObject(
                label=det.label, masks=soft_alpha(mask, band), score=det.score,
                extras={"start_frame": float(det.frame), "visible_frac": float(hard.any((1, 2)).mean()),
                        "reanchors": float(anchors)},
            ))
        return objects


def _subdir(spec: BackendSpec, base: Path, name: str) -> Path:
    path = base / name
    if not (path / "config.json").is_file():
        raise loading.ModelNotFoundError(
            f"{spec.name}: expected model directory {path} (with config.json) inside {base}; "
            f"see docs/models.md"
        )
    return path
