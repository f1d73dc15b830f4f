"""Segment + track on CPU like SAM-Track: detect and segment on keyframes, propagate by optical flow.

On each keyframe (every ``keyframe_interval`` frames and the last; see ``skip_iou`` for the ones left out):
- U^2-Net on the whole frame gives salient regions; each connected component is a candidate.
- YOLOv3-tiny gives class boxes. A box the salient regions do not cover (a second person in a crowd,
  a small object) is segmented on its own: U^2-Net on the enlarged box crop, the component that fills
  the box best. Candidates take the class of the boxes they cover ("person and bicycle" for a rider).
  A region that merged objects (boxes of two distinct objects, or most of it outside its one box)
  also gives each box's crop segmentation as a candidate; the tracks choose.
Between keyframes, masks are carried by DIS optical flow (:mod:`dataset_builder.ops.flow`); at each
keyframe, tracks are re-anchored on the detected masks by IoU (:mod:`dataset_builder.ops.track`), so
identities do not switch and drift is reset. Fast movers at 8 fps outrun the flow: fragments are
stitched end to start, the frames between anchors are drift-corrected towards the next anchor, and
(``redetect_lost``, off by default) a track no candidate matched can be looked for again by U^2-Net
on a box where flow predicts it.
With ``skip_iou`` > 0, a keyframe right after one where flow held every track (re-anchoring IoU >=
``skip_iou``) is not detected on (up to ``max_skips`` in a row): U^2-Net (~0.6 s a run in bf16, ~0.7 s
in int8 on an AVX2 CPU without bf16, 1.25-1.6 s in fp32) is most of the cost. By default only where
U^2-Net does not run bf16: with bf16 every frame is affordable. Offline, track fragments
are joined (end to start, and where they interleave: a keyframe region that lost most of the
object starts a fragment of its own), and anchors whose size disagrees with their neighbours are dropped
(:mod:`dataset_builder.ops.track`). Only tracks found on most keyframes
detected on are returned (precision first); motion relative to the camera is a ranking cue, not a
requirement. Labels come from confidence-weighted class votes over the keyframes (:func:`vote_label`):
a class only on consistent evidence, else its group ("animal"), else a placeholder.

When the model files are missing (``workflows/fetch_cpu_models.py`` not run) the backend logs one
line naming the fetch command and falls back to the motion-only segmenter, unless
``require_models`` is set, in which case construction fails with that line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from dataset_builder.config import BackendSpec
from dataset_builder.models.base import TrackedObject
from dataset_builder.models.cpu._common import Options, parse_options, resize_masks
from dataset_builder.models.cpu.classes import GROUP_OF, SALIENT_LABEL, rider_pair, vote_label
from dataset_builder.models.cpu.nets import SaliencyPrecision, SaliencyRuntime, scale_detections
from dataset_builder.models.cpu.zoo import FETCH_COMMAND, U2NET_INT8, U2NET_INT8_RECORD, ModelFileMissing
from dataset_builder.ops.flow import clip_flows, interpolate_anchors, propagate
from dataset_builder.ops.motion import work_scale
from dataset_builder.ops.person import load_person_net, merge_person_masks
from dataset_builder.ops.track import keyframe_indices, track_keyframes

log = logging.getLogger(__name__)

#: ``skip_iou`` where U^2-Net runs fp32 or int8 (the measured default before bf16 paid for every frame).
FP32_SKIP_IOU = 0.85


class KeyframeSegmenterOptions(Options):
    model_dir: Path | None = None
    #: Fail (one line naming the fetch command) instead of falling back to motion-only when files are missing.
    require_models: bool = False
    #: Every frame is a keyframe candidate; ``skip_iou``/``max_skips`` leave out the ones flow carries
    #: well. Measured on the 12 DAVIS clips (segmenter alone): interval 2 -> 1 lifts mean best J 0.63 ->
    #: 0.68 (tennis 0.77 -> 0.89); easy clips keep ~7 detections, fast movers get one per frame.
    keyframe_interval: int = Field(1, ge=1)
    #: Longer side of the tracking resolution (flow, masks); masks are upscaled to the clip after.
    work_max_side: int = Field(426, ge=64)
    saliency_threshold: float = Field(0.5, gt=0, lt=1)
    #: Candidate size limits as a fraction of the frame.
    min_area_fraction: float = Field(0.004, gt=0, lt=1)
    max_area_fraction: float = Field(0.6, gt=0, le=1)
    #: YOLO: confidence, and how many uncovered boxes per keyframe get their own crop segmentation.
    detection_confidence: float = Field(0.3, ge=0, le=1)
    max_box_crops: int = Field(3, ge=0)
    #: A box counts as covered by a salient region holding this share of the box's area.
    box_covered: float = Field(0.3, ge=0, le=1)
    crop_margin: float = Field(0.15, ge=0)
    #: A salient region covering boxes of two distinct named objects (overlapping by less than this
    #: share of the smaller box; a rider and their bike are one) also gives each box's crop
    #: segmentation as a candidate, up to ``max_box_crops`` a keyframe (0: off). On DAVIS
    #: scooter-black the region held the scooter and the parked car.
    split_overlap: float = Field(0.4, ge=0, le=1)
    #: A region with more than this share outside its only class box (enlarged by ``crop_margin``)
    #: merged the object with its surroundings: the box's crop segmentation is also a candidate (0: off).
    merge_outside: float = Field(0.3, ge=0, le=1)
    #: People: every YOLO ``person`` box (up to ``max_person_crops``) is segmented on its crop by a
    #: person model; a region holding several people is split into them (ops.person.merge_person_masks).
    #: "selfie" (MediaPipe) measured best on the crowd clip; "none": U^2-Net for everybody. A missing
    #: model file or interpreter falls back to "none" with one line.
    person_model: Literal["none", "modnet", "selfie"] = "selfie"
    max_person_crops: int = Field(6, ge=0)
    #: Association: min IoU of a propagated track with a keyframe candidate.
    match_iou: float = Field(0.2, gt=0, le=1)
    #: Second-chance association by position for fast movers flow lost (0: off; see ops.track).
    match_reach: float = Field(1.5, ge=0)
    #: A keyframe region whose area differs from the propagated track's by more than this is not its match.
    match_area_ratio: float = Field(2.5, ge=1)
    #: Fragments of one track (broken by a keyframe region of very different size) are joined end to
    #: start when the next one begins where flow carries the last (areas within this ratio; 0: off).
    stitch_area_ratio: float = Field(4.0, ge=0)
    #: A keyframe region whose area is off by more than this from what its track's neighbouring anchors
    #: agree on (half the object lost, or merged with the ground) is dropped as an anchor (0: off).
    prune_area_ratio: float = Field(2.0, ge=0)
    #: A track no keyframe candidate matched is looked for again by U^2-Net on a box around where flow
    #: predicts it (margin: share of the box size added on each side, for fast movers). Off by default:
    #: on DAVIS it anchored the dog on fragments (J 0.88 -> 0.84) and kept a wrong track on horsejump,
    #: and the fast movers it recovers (bmx-trees, J ~0.5) are rejected by the QA gate anyway.
    redetect_lost: bool = False
    redetect_margin: float = Field(0.5, ge=0)
    #: Tracks must be anchored on at least this share of keyframes.
    min_keyframe_share: float = Field(0.6, ge=0, le=1)
    #: Skip the keyframe after one where flow held every track (re-anchoring IoU >= this; 0: never).
    #: Pipeline output on the 12 DAVIS clips, bf16 U^2-Net: 0.85 (at most 2 skips) -> 0 lifts mean best J
    #: 0.544 -> 0.552 (dog 0.86 -> 0.90, tennis 0.88 -> 0.90, blackswan 0.91 -> 0.93; fp32 with skips:
    #: 0.550), true-object pixels left in bg 4.2 -> 3.8 %, CPU per 16 x 480x720 clip 18.7 -> 19.7 s.
    #: None: 0 where U^2-Net runs bf16, FP32_SKIP_IOU elsewhere (fp32: a call costs twice as much; int8
    #: costs a little more than bf16 on a slower CPU).
    skip_iou: float | None = Field(None, ge=0, le=1)
    #: At most this many keyframes skipped in a row (flow is trusted over that many frames at most).
    max_skips: int = Field(2, ge=1)
    #: Detections per clip at most, spread evenly on a clip flow cannot carry (0: no budget); U^2-Net is
    #: ~1.2 CPU s a call, most of the clip's cost. Off by default: at 12 on DAVIS, tennis J 0.88 -> 0.86
    #: and two fast movers whose bg kept 23-47 % of the object got past the QA gate.
    max_detections: int = Field(0, ge=0)
    flow_preset: str = Field("medium", pattern="^(ultrafast|fast|medium)$")
    max_objects: int = Field(4, ge=1)
    #: Naming a class (see vote_label): share of keyframes its boxes were seen on, their mean confidence.
    label_min_share: float = Field(0.5, ge=0, le=1)
    label_min_confidence: float = Field(0.5, ge=0, le=1)
    threads: int = Field(1, ge=1)
    #: U^2-Net runtime and precision (see models.cpu.nets.U2Net): bf16 on OpenVINO halves the segmenter's
    #: cost on CPUs that have it (U^2-Net 1.25 -> 0.6 s a call; segment_track 21.0 -> 10.6 s a 480x720
    #: clip with skips), segmenter-level J within 0.01 on 11 of 12 DAVIS clips (drift-chicane's J 0.48
    #: track, rejected by the QA gate anyway, is not found), pipeline mean best J 0.550 -> 0.544 at
    #: equal skips. "auto" runs the int8 model (models.cpu.quantize) on CPUs without bf16: U^2-Net
    #: ~1.5 -> ~0.7 s a call on an AVX2 CPU. "onnxruntime" (fp32) reproduces the reference outputs exactly.
    saliency_runtime: SaliencyRuntime = "openvino"
    saliency_precision: SaliencyPrecision = "auto"
    #: Options of the motion-only fallback (see MotionSegmenterTracker).
    fallback: dict = Field(default_factory=dict)


def _model_files(options: dict) -> tuple[str, ...]:
    """The zoo files these options read on this machine (the stage revision fingerprints them,
    models.provenance): the int8 U^2-Net where it runs (models.cpu.nets.u2net_precision)."""
    from dataset_builder.models.cpu.nets import u2net_precision

    person = {"selfie": ("selfie_segmentation.tflite",), "modnet": ("modnet.onnx",)}
    precision = u2net_precision(*(KeyframeSegmenterOptions.from_raw(options, n) for n in
                                  ("saliency_runtime", "saliency_precision", "model_dir")))
    int8 = (*U2NET_INT8, U2NET_INT8_RECORD) if precision == "int8" else ()  # the record: sha256s, versions
    return ("u2net.onnx", *int8, "yolov3-tiny.weights", "yolov3-tiny.cfg", "coco.names",
            *person.get(KeyframeSegmenterOptions.from_raw(options, "person_model"), ()))


class KeyframeSegmenterTracker:
    cpu_model_files = staticmethod(_model_files)
    #: U^2-Net runs bf16 only where the CPU has it (slightly different masks): recorded in the revision.
    cpu_bf16_sensitive = True
    #: Runtimes behind ImportError fallbacks (U^2-Net: OpenVINO else onnxruntime; the selfie model's
    #: TFLite interpreter, ai-edge-litert else tflite-runtime): their versions, or "absent", go into the
    #: revision too.
    optional_distributions = ("openvino", "onnxruntime", "ai-edge-litert", "tflite-runtime")

    def __init__(self, spec: BackendSpec):
        self.options = parse_options(KeyframeSegmenterOptions, spec, "segment_track/cpu")
        o = self.options
        self.fallback = None
        try:
            from dataset_builder.models.cpu.nets import U2Net, YoloV3Tiny

            self.u2net = U2Net(o.model_dir, o.threads, o.saliency_runtime, o.saliency_precision)
            log.info("segment_track/cpu: U^2-Net on %s", self.u2net.runtime)
            self.skip_iou = o.skip_iou if o.skip_iou is not None else (
                0.0 if self.u2net.precision == "bf16" else FP32_SKIP_IOU)
            try:
                self.yolo = YoloV3Tiny(o.model_dir, o.detection_confidence)
            except ModelFileMissing as exc:
                log.warning("no class boxes: %s", exc)
                self.yolo = None
            self.person = load_person_net(o.person_model, o.model_dir, o.threads) if self.yolo else None
        except (ModelFileMissing, ImportError) as exc:
            if o.require_models:
                raise
            from dataset_builder.models.cpu.segmenter import MotionSegmenterTracker

            log.warning("segment_track/cpu: motion-only fallback (%s; run `%s`)", exc, FETCH_COMMAND)
            self.fallback = MotionSegmenterTracker(BackendSpec(options=o.fallback))

    # -- public -------------------------------------------------------------------------------
    def segment(self, frames: np.ndarray, prompts: list[str]) -> list[TrackedObject]:
        if self.fallback is not None:
            return self.fallback.segment(frames, prompts)
        o = self.options
        t, h, w = frames.shape[:3]
        if t < 2:
            return []
        scale = work_scale(h, w, o.work_max_side)
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        small = np.stack([cv2.resize(f, (sw, sh), interpolation=cv2.INTER_AREA) for f in frames]) \
            if (sh, sw) != (h, w) else frames
        to_prev, to_next = clip_flows(small, o.flow_preset)
        keys = keyframe_indices(t, o.keyframe_interval)
        found: dict[int, list] = {}  # keyframe index -> candidates, detected when the tracker asks

        class _Lazy:
            def __getitem__(_, k: int) -> list[np.ndarray]:
                if k not in found:
                    found[k] = self._candidates(frames[keys[k]], (sh, sw))
                    masks_by_key[k] = [c[0] for c in found[k]]
                return masks_by_key[k]

            def __setitem__(_, k: int, masks: list[np.ndarray]) -> None:
                masks_by_key[k] = masks

        masks_by_key: dict[int, list[np.ndarray]] = {}

        def carry(mask: np.ndarray, src: int, dst: int) -> np.ndarray:
            return propagate(mask.astype(np.float32), src, dst, to_prev, to_next)[-1] >= 0.5

        redetected: dict[int, tuple[np.ndarray, str, float]] = {}

        def redetect(predicted: np.ndarray, frame: int) -> np.ndarray | None:
            hit = self._segment_near(frames[frame], predicted, (sh, sw), (h / sh, w / sw))
            if hit is not None:
                redetected[id(hit[0])] = hit
            return None if hit is None else hit[0]

        tracks = track_keyframes(keys, _Lazy(), carry, o.match_iou, o.match_reach, o.match_area_ratio,
                                 o.stitch_area_ratio, redetect if o.redetect_lost else None,
                                 skip_iou=self.skip_iou, max_skips=o.max_skips, max_detections=o.max_detections,
                                 prune_ratio=o.prune_area_ratio)
        for k, masks in masks_by_key.items():  # re-detections that anchored a track join the candidates
            found[k] += [redetected[id(m)] for m in masks[len(found[k]):]]
        used = len(found)  # keyframes detected on (the others were skipped: flow held)
        need = max(2, int(np.ceil(o.min_keyframe_share * used)))
        out = []
        for tr in tracks:
            if len(tr.anchors) < need:
                continue
            anchors = {keys[k]: found[k][ci][0].astype(np.float32) for k, ci in tr.anchors.items()}
            soft = interpolate_anchors(anchors, t, to_prev, to_next)
            label = vote_label([found[k][ci][1] for k, ci in tr.anchors.items()], used,
                               o.label_min_share, o.label_min_confidence)
            saliency = float(np.mean([found[k][ci][2] for k, ci in tr.anchors.items()]))
            hit = len(tr.anchors) / used
            drift = float(np.mean(tr.match_ious)) if tr.match_ious else 1.0
            motion = _relative_motion(soft >= 0.5, to_prev)
            score = hit * saliency * (0.75 + 0.25 * min(1.0, motion))
            # Hard masks: the shared matte stage turns them into a core plus a thin soft band.
            masks = (resize_masks((soft >= 0.5).astype(np.uint8) * 255, h, w) >= 128).astype(np.uint8) * 255
            out.append(TrackedObject(
                label=label, masks=masks, score=float(score),
                extras={"keyframe_share": hit, "saliency": saliency, "match_iou": drift,
                        "relative_motion": float(motion)},
            ))
        out.sort(key=lambda ob: -ob.score)
        return out[: o.max_objects]

    # -- keyframe candidates ------------------------------------------------------------------
    def _candidates(self, frame: np.ndarray, size: tuple[int, int]) -> list[tuple[np.ndarray, dict, float]]:
        """[(bool mask at work size, {class: best box confidence}, mean saliency)] for one keyframe."""
        o = self.options
        sh, sw = size
        sal = cv2.resize(self.u2net(frame), (sw, sh), interpolation=cv2.INTER_LINEAR)
        fh, fw = frame.shape[:2]
        # YOLO on the frame itself (it resizes to 416 anyway): the tagger saw these frames, so the
        # detections come from the memo (nets._MEMO); boxes scaled to the work size.
        dets = scale_detections(self.yolo(frame), sw / fw, sh / fh, (sh, sw)) if self.yolo else []
        comps = _components(sal >= o.saliency_threshold, o.min_area_fraction, o.max_area_fraction)
        cands = []
        used = [False] * len(dets)
        budget = o.max_box_crops  # crops of merged regions per keyframe (U^2-Net ~1 s a call)
        for comp in comps:
            classes: dict[str, float] = {}
            covered = []
            for i, d in enumerate(dets):
                x0, y0, x1, y1 = d.box
                box_area = max(1, (x1 - x0) * (y1 - y0))
                if comp[y0:y1, x0:x1].sum() >= o.box_covered * box_area:
                    classes[d.label] = max(classes.get(d.label, 0.0), d.score)
                    used[i] = True
                    covered.append(d)
            # People are told apart by the person model below (merge_person_masks), not by U^2-Net crops.
            split = self._merged_objects(comp, [d for d in covered if self.person is None or d.label != "person"])
            split = split[:budget]
            budget -= len(split)
            parts = [(m, {d.label: d.score}, d.score) for d in split
                     if (m := self._segment_box(frame, d.box, (sh, sw), (fh / sh, fw / sw))) is not None]
            cands.append((comp, classes, float(sal[comp].mean())))
            # One region over two objects (a scooter and the car behind it): each also on its own; the
            # tracks choose (by IoU with what flow carried), the region alone would merge them.
            cands += parts
        crops = [d for d, u in zip(dets, used) if not u][: o.max_box_crops]
        for d in crops:
            mask = self._segment_box(frame, d.box, (sh, sw), (fh / sh, fw / sw))
            if mask is not None and not any(_iou(mask, c[0]) > 0.5 for c in cands):
                cands.append((mask, {d.label: d.score}, d.score))
        if self.person is not None:
            people = [d for d in dets if d.label == "person"][: o.max_person_crops]
            found = [(self._segment_box(frame, d.box, (sh, sw), (fh / sh, fw / sw), self.person), d.score)
                     for d in people]
            cands = _merge_people(cands, [(pm, sc) for pm, sc in found if pm is not None])
        return cands

    def _merged_objects(self, comp: np.ndarray, covered: list) -> list:
        """The class boxes to segment one by one besides ``comp``, which merged them with each other
        (two distinct objects, :func:`separate_objects`) or with what is around them (more than
        ``merge_outside`` of the region lies outside its only named box, enlarged by the crop margin);
        [] when ``comp`` is one object."""
        o = self.options
        if o.split_overlap > 0 and (split := separate_objects(covered, o.split_overlap)):
            return split
        named = [d for d in covered if d.label in GROUP_OF]
        if o.merge_outside <= 0 or len(named) != 1:
            return []
        cx0, cy0, cx1, cy1 = _crop_window(named[0].box, o.crop_margin, comp.shape)
        inside = comp[cy0:cy1, cx0:cx1].sum()
        return named if comp.sum() - inside > o.merge_outside * comp.sum() else []

    def _segment_near(self, frame: np.ndarray, predicted: np.ndarray, size, ratio):
        """U^2-Net on an enlarged box around where a lost track is predicted; the component that overlaps
        the prediction most (by IoU with the prediction grown by the margin), as (mask, label, saliency)."""
        o = self.options
        sh, sw = size
        ys, xs = np.nonzero(predicted)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        mx, my = o.redetect_margin * (x1 - x0) + 4, o.redetect_margin * (y1 - y0) + 4
        cx0, cy0 = max(0, int(x0 - mx)), max(0, int(y0 - my))
        cx1, cy1 = min(sw, int(np.ceil(x1 + mx))), min(sh, int(np.ceil(y1 + my)))
        if (cx1 - cx0) * (cy1 - cy0) > o.max_area_fraction * sh * sw:
            return None  # as large as the frame: the whole-frame pass already looked there
        fx0, fy0 = int(cx0 * ratio[1]), int(cy0 * ratio[0])
        fx1, fy1 = max(fx0 + 8, int(cx1 * ratio[1])), max(fy0 + 8, int(cy1 * ratio[0]))
        prob = cv2.resize(self.u2net(frame[fy0:fy1, fx0:fx1]), (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_LINEAR)
        full = np.zeros((sh, sw), np.float32)
        full[cy0:cy1, cx0:cx1] = prob
        grown = cv2.dilate(predicted.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        best, best_iou = None, 0.0
        for comp in _components(full >= o.saliency_threshold, o.min_area_fraction / 4, o.max_area_fraction):
            score = _iou(comp, grown)
            if score > best_iou:
                best, best_iou = comp, score
        if best is None or best_iou < o.match_iou:
            return None
        return best, {}, float(full[best].mean())

    def _segment_box(self, frame: np.ndarray, box, size, ratio, net=None) -> np.ndarray | None:
        """``net`` (default U^2-Net) on the enlarged box crop (full resolution); the component filling
        the box best."""
        o = self.options
        sh, sw = size
        x0, y0, x1, y1 = box
        cx0, cy0, cx1, cy1 = _crop_window(box, o.crop_margin, (sh, sw))
        fx0, fy0 = int(cx0 * ratio[1]), int(cy0 * ratio[0])
        fx1, fy1 = max(fx0 + 8, int(cx1 * ratio[1])), max(fy0 + 8, int(cy1 * ratio[0]))
        prob = (net or self.u2net)(frame[fy0:fy1, fx0:fx1])
        prob = cv2.resize(prob, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_LINEAR)
        full = np.zeros((sh, sw), bool)
        full[cy0:cy1, cx0:cx1] = prob >= o.saliency_threshold
        inbox = np.zeros_like(full)
        inbox[y0:y1, x0:x1] = True
        best, best_fill = None, 0.0
        for comp in _components(full, o.min_area_fraction / 4, o.max_area_fraction):
            fill = (comp & inbox).sum() / max(1, inbox.sum())
            if fill > best_fill and (comp & inbox).sum() >= 0.7 * comp.sum():
                best, best_fill = comp, fill
        return best if best_fill >= 0.2 else None


def _crop_window(box, margin: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``box`` (x0, y0, x1, y1) grown by ``margin`` of its size on each side, clipped to ``size`` (h, w)."""
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return (max(0, int(x0 - mx)), max(0, int(y0 - my)),
            min(size[1], int(np.ceil(x1 + mx))), min(size[0], int(np.ceil(y1 + my))))


def separate_objects(boxes: list, max_overlap: float) -> list:
    """The boxes (highest score first) that are distinct objects: named classes (see :data:`GROUP_OF`),
    each overlapping every other kept one by less than ``max_overlap`` of the smaller box, never a
    person with what they ride. Two or more back one salient region: it merged them."""
    kept: list = []
    for d in sorted(boxes, key=lambda d: -d.score):
        if d.label not in GROUP_OF:
            continue
        if all(_box_overlap(d.box, k.box) < max_overlap and not rider_pair(d.label, k.label) for k in kept):
            kept.append(d)
    return kept if len(kept) >= 2 else []


def _box_overlap(a, b) -> float:
    """Intersection over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(1, small)


def _merge_people(cands: list[tuple[np.ndarray, dict, float]], people: list[tuple[np.ndarray, float]],
                  ) -> list[tuple[np.ndarray, dict, float]]:
    """:func:`~dataset_builder.ops.person.merge_person_masks` on candidates that carry class votes
    ({class: confidence}): a region whose only class is person is "person" there; a mask it puts in
    (a person's own, or the person model's outline of a person-only region) votes person."""
    classes = {id(m): c for m, c, _ in cands}
    merged = merge_person_masks([(m, " and ".join(sorted(c)) or SALIENT_LABEL, sc) for m, c, sc in cands], people)
    return [(m, classes.get(id(m), {"person": sc}), sc) for m, _, sc in merged]


def _components(mask: np.ndarray, min_frac: float, max_frac: float) -> list[np.ndarray]:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    area = mask.size
    out = []
    for i in range(1, n):
        a = stats[i, cv2.CC_STAT_AREA]
        if min_frac * area <= a <= max_frac * area:
            comp = lab == i
            out.append(_fill_holes(comp))
    return sorted(out, key=lambda c: -int(c.sum()))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Close small gaps (a racket string, a leg gap stays): morphological closing only."""
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _relative_motion(masks: np.ndarray, to_prev: np.ndarray) -> float:
    """Median flow magnitude inside the object minus outside it (camera), in pixels per frame."""
    vals = []
    for t in range(len(to_prev)):
        m = masks[t + 1]
        if m.any() and (~m).any():
            mag = np.linalg.norm(to_prev[t] - np.median(to_prev[t][~m], axis=0), axis=-1)
            vals.append(float(np.median(mag[m])))
    return float(np.median(vals)) if vals else 0.0
