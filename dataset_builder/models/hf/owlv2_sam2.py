"""Text-prompted segmentation + tracking: OWLv2 boxes -> SAM2 video propagation (backend ``owlv2_sam2``).

SAM-Track style: the detector runs on keyframes every ``redetect_every`` frames; boxes on frame 0
start tracks, and boxes on later keyframes that are not already covered by a tracked mask start new
tracks (objects entering the clip). Each group of new tracks is propagated forward and backward
from its keyframe with SAM2's memory, so an object detected late still gets masks for earlier frames
where it is visible.

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
    """Detections of a keyframe that are not already tracked (SAM-Track's new-object rule)."""
    return [d for d in detections if box_coverage(d.box, tracked) < max_coverage]


class Owlv2Sam2SegmenterTracker:
    """Options: ``box_threshold`` (0.25), ``nms_iou`` (0.5), ``redetect_every`` (8 frames),
    ``max_objects`` (8), ``new_object_max_coverage`` (0.3), ``min_area_frac`` (0.001),
    ``detector_subdir`` ("owlv2"), ``tracker_subdir`` ("sam2"). ``model_dir`` holds both models."""

    default_subdir = "owlv2_sam2"
    default_resources = Resources(num_cpus=2, num_gpus=0.5, batch_size=1, concurrency=8)

    def __init__(self, spec: BackendSpec) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, Owlv2ForObjectDetection, Sam2VideoModel

        opts = spec.options
        self.box_threshold = float(opts.get("box_threshold", 0.25))
        self.nms_iou = float(opts.get("nms_iou", 0.5))
        self.redetect_every = max(1, int(opts.get("redetect_every", 8)))
        self.max_objects = int(opts.get("max_objects", 8))
        self.max_coverage = float(opts.get("new_object_max_coverage", 0.3))
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
        import torch

        keyframes = list(range(0, len(frames), self.redetect_every))
        height, width = frames.shape[1:3]
        text = self.tokenizer(
            prompts, padding="max_length", truncation=True,
            max_length=self.detector.config.text_config.max_position_embeddings, return_tensors="pt",
        )
        pixels = self.det_processor(images=list(frames[keyframes]), return_tensors="pt")["pixel_values"]
        n = len(keyframes)
        with torch.inference_mode():
            out = self.detector(
                input_ids=text["input_ids"].repeat(n, 1).to(self.device),
                attention_mask=text["attention_mask"].repeat(n, 1).to(self.device),
                pixel_values=pixels.to(self.device, self.dtype),
            )
        probs = torch.sigmoid(out.logits.float()).cpu().numpy()  # (n, patches, queries)
        boxes = owl_boxes_to_pixels(out.pred_boxes.float().cpu().numpy(), height, width)
        detections: list[Detection] = []
        for k, frame in enumerate(keyframes):
            best_q = probs[k].argmax(-1)
            best = probs[k].max(-1)
            cand = np.flatnonzero(best >= self.box_threshold)
            keep = nms(boxes[k][cand], best[cand], self.nms_iou) if len(cand) else []
            detections += [
                Detection(frame, tuple(map(float, boxes[k][cand[i]])), float(best[cand[i]]),
                          prompts[int(best_q[cand[i]])])
                for i in keep
            ]
        return detections

    # -- tracking ----------------------------------------------------------------------------------
    def _pixels(self, frames: np.ndarray):
        import cv2
        import torch

        size = (self.sam_size, self.sam_size)
        resized = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])
        norm = (resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return torch.from_numpy(norm).permute(0, 3, 1, 2).contiguous()

    def track(self, pixels, height: int, width: int, frame: int, boxes: list[tuple]) -> np.ndarray:
        """Propagate box prompts given on ``frame`` over the whole clip: soft masks ``(N, T, H, W)`` 0..1."""
        import torch
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        num_frames = len(pixels)
        session = Sam2VideoInferenceSession(
            video=pixels, video_height=height, video_width=width, inference_device=self.device,
            inference_state_device=self.device, video_storage_device=self.device, dtype=self.dtype,
        )
        scale = torch.tensor([self.sam_size / width, self.sam_size / height] * 2, dtype=torch.float32)
        obj_ids = list(range(len(boxes)))
        for obj_id, box in zip(obj_ids, boxes):
            coords = (torch.tensor(box, dtype=torch.float32) * scale).view(1, 1, 2, 2)
            labels = torch.tensor([[[2, 3]]], dtype=torch.int32)  # SAM's box-corner point labels
            session.add_point_inputs(session.obj_id_to_idx(obj_id), frame, {"point_coords": coords,
                                                                          "point_labels": labels})
        session.obj_with_new_inputs = obj_ids
        masks = torch.zeros(len(boxes), num_frames, height, width)
        with torch.inference_mode():
            for reverse in (False, True):
                if reverse and frame == 0:
                    break
                for out in self.tracker.propagate_in_video_iterator(session, start_frame_idx=frame,
                                                                    reverse=reverse):
                    logits = torch.nn.functional.interpolate(
                        out.pred_masks.float(), size=(height, width), mode="bilinear", align_corners=False
                    )[:, 0]
                    for row, obj_id in enumerate(out.object_ids):
                        masks[obj_id, out.frame_idx] = torch.sigmoid(logits[row]).cpu()
        return masks.numpy()

    def segment(self, frames: np.ndarray, prompts: list[str]) -> list[TrackedObject]:
        prompts = [p for p in dict.fromkeys(prompts) if p.strip()]
        if not prompts or len(frames) == 0:
            return []
        num_frames, height, width = frames.shape[:3]
        detections = self.detect(frames, prompts)
        pixels = self._pixels(frames)
        objects: list[TrackedObject] = []
        tracked = np.zeros((num_frames, height, width), bool)
        # Soft edge band: two of SAM2's low-res mask pixels (masks are predicted at 1/4 input size).
        band = math.ceil(2 * max(height, width) / (self.sam_size / 4))
        for frame in sorted({d.frame for d in detections}):
            budget = self.max_objects - len(objects)
            if budget <= 0:
                break
            new = select_new([d for d in detections if d.frame == frame], tracked[frame], self.max_coverage)
            new = sorted(new, key=lambda d: -d.score)[:budget]
            if not new:
                continue
            soft = self.track(pixels, height, width, frame, [d.box for d in new])
            for det, mask in zip(new, soft):
                hard = mask > 0.5
                if hard.mean() < self.min_area_frac:
                    continue  # SAM2 lost it or the box held nothing segmentable
                tracked |= hard
                objects.append(TrackedObject(
                    label=det.label, masks=soft_alpha(mask, band), score=det.score,
                    extras={"start_frame": float(frame), "visible_frac": float(hard.any((1, 2)).mean())},
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
