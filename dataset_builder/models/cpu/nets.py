"""Runners for the pretrained CPU networks (files from :mod:`dataset_builder.models.cpu.zoo`).

U^2-Net runs on OpenVINO (bf16 where the CPU has it, else the int8 model :mod:`.quantize` made at fetch
time) or onnxruntime, MODNet on onnxruntime (both in the ``cpu-models`` extra), YOLOv3-tiny on
``cv2.dnn``. Each takes uint8 RGB and does its published pre/post-processing; constructing one with a
missing file raises :class:`~dataset_builder.models.cpu.zoo.ModelFileMissing`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from dataset_builder.models.cpu.zoo import (
    FETCH_COMMAND,
    U2NET_INT8,
    U2NET_INT8_RECORD,
    default_model_dir,
    derived_path,
    model_path,
)

log = logging.getLogger(__name__)

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _session(path: Path, threads: int):
    try:
        import onnxruntime as ort
    except ImportError as exc:  # the cpu-models extra
        raise ImportError("onnxruntime is not installed: pip install -e '.[cpu-models]'") from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


#: "openvino" runs bf16 convolutions where the CPU has them (AVX512-BF16 / AMX): U^2-Net is ~88 % of
#: its time in Conv and ~2x faster than fp32 on one core (1.25 -> 0.6 s). Elsewhere it runs the int8
#: model where the fetch command made it (see SaliencyPrecision), else fp32 (OpenVINO fp32 matches
#: onnxruntime exactly on DAVIS frames).
SaliencyRuntime = Literal["openvino", "onnxruntime"]
#: "auto": bf16 where the CPU has it, else the int8 model where the fetch command made it (on an AVX2
#: CPU 1.55 -> 0.79 s a call), else fp32; "bf16": bf16 where the CPU has it, else fp32; "int8": the int8
#: model (missing: ModelFileMissing); "f32": fp32. onnxruntime runs fp32 whatever is asked.
SaliencyPrecision = Literal["auto", "bf16", "int8", "f32"]


def _openvino(ov, path: Path, threads: int, precision: str):
    """(infer(x) -> d0, the precision that runs) on OpenVINO's (module ``ov``) CPU plugin."""
    compiled = ov.Core().compile_model(str(path), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"})
    request, d0 = compiled.create_infer_request(), compiled.outputs[0]  # d0 ("1959") is the first output
    effective = str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower()  # "<Type: 'bfloat16'>"
    effective = "bf16" if "bf16" in effective or "bfloat16" in effective else "f32"
    return (lambda x: request.infer({0: x})[d0]), effective


@lru_cache(maxsize=1)
def _cpu_runs_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 here (what it reports; /proc/cpuinfo's flags can differ)."""
    try:
        import openvino as ov  # optional (see U2Net)
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def int8_present(model_dir: Path | str | None = None) -> bool:
    """The int8 U^2-Net is complete in ``model_dir``: both files non-empty and its record, written last."""
    root = Path(model_dir or default_model_dir())
    return all((root / n).is_file() and (root / n).stat().st_size > 0 for n in (*U2NET_INT8, U2NET_INT8_RECORD))


def u2net_precision(runtime: str, precision: str, model_dir: Path | str | None = None) -> str:
    """The precision U^2-Net runs in ("bf16", "int8" or "f32") for these options on this machine: what
    :class:`U2Net` runs, and what the segmenter's revision fingerprints (the int8 files where "int8")."""
    if runtime != "openvino" or precision == "f32" or importlib.util.find_spec("openvino") is None:
        return "f32"
    if precision == "int8":
        return "int8"
    if _cpu_runs_bf16():
        return "bf16"
    return "int8" if precision == "auto" and int8_present(model_dir) else "f32"


def u2net_input(image: np.ndarray, size: int = 320) -> np.ndarray:
    """U^2-Net's published preprocessing: (1, 3, size, size) float32 of a uint8 RGB image (Lanczos resize,
    scaled by its max, ImageNet mean/std). The int8 model is calibrated on exactly these inputs."""
    x = cv2.resize(image, (size, size), interpolation=cv2.INTER_LANCZOS4).astype(np.float32)
    x = (x / max(float(x.max()), 1.0) - _MEAN) / _STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


class U2Net:
    """Class-agnostic salient-object probability (U^2-Net full, 320x320, output d0).

    ``runtime``/``precision``: see :data:`SaliencyRuntime`, :data:`SaliencyPrecision`. OpenVINO missing
    falls back to onnxruntime (fp32) with one warning; ``self.precision`` is what runs ("bf16" only where
    the CPU has it, "int8" on the model :mod:`.quantize` made) and ``self.runtime`` says on what
    ("openvino-2026.4.1/bf16", "onnxruntime-1.32.0/f32"). Neither is bit-identical to fp32: on DAVIS
    frames the thresholded masks agree with fp32's at mean IoU 0.979 (bf16, 108 frames; segmenter-level
    best-track J within 0.01 on 11 of 12 sequences) and 0.95 (int8, 66 frames; re-encoding the frame as
    JPEG q90 gives 0.97 in fp32 itself)."""

    size = 320

    def __init__(self, model_dir: Path | None = None, threads: int = 1, runtime: SaliencyRuntime = "openvino",
                 precision: SaliencyPrecision = "auto"):
        path = model_path("u2net.onnx", model_dir)
        if runtime == "openvino":
            try:
                import openvino as ov  # the cpu-models extra; optional: onnxruntime is the fallback
            except ImportError:
                log.warning("U^2-Net: openvino is not installed (pip install -e '.[cpu-models]'); "
                            "running onnxruntime fp32 (~2x slower on bf16 CPUs)")
            else:
                chosen = u2net_precision(runtime, precision, model_dir)
                if precision == "auto" and chosen == "f32":
                    log.warning("U^2-Net: no int8 model on this CPU without bf16 (run `%s`); running fp32, "
                                "~2x slower", FETCH_COMMAND)
                if chosen == "int8":
                    xml, _, _ = (derived_path(n, model_dir) for n in (*U2NET_INT8, U2NET_INT8_RECORD))
                    self._infer, _ = _openvino(ov, xml, threads, "f32")  # its quantized convolutions run int8
                    self.precision = "int8"
                else:
                    self._infer, self.precision = _openvino(ov, path, threads, chosen)
                self.runtime = f"openvino-{ov.__version__.split('-')[0]}/{self.precision}"
                return
        session = _session(path, threads)
        feed, d0 = session.get_inputs()[0].name, session.get_outputs()[0].name
        self._infer = lambda x: session.run([d0], {feed: x})[0]
        self.precision = "f32"
        self.runtime = f"onnxruntime-{metadata.version('onnxruntime')}/f32"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Float32 (H, W) saliency in 0..1 (min-max normalised) for a uint8 RGB image (H, W, 3)."""
        h, w = image.shape[:2]
        y = np.asarray(self._infer(u2net_input(image)), np.float32)[0, 0]
        lo, hi = float(y.min()), float(y.max())
        y = (y - lo) / (hi - lo) if hi > lo else np.zeros_like(y)
        return cv2.resize(y, (w, h), interpolation=cv2.INTER_LINEAR)


class Modnet:
    """Soft person alpha (MODNet); short side ``short_side``, both sides multiples of 32."""

    def __init__(self, model_dir: Path | None = None, threads: int = 1, short_side: int = 288):
        self.session = _session(model_path("modnet.onnx", model_dir), threads)
        self.input = self.session.get_inputs()[0].name
        self.short_side = short_side

    def __call__(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        s = self.short_side / min(h, w)
        rh, rw = max(32, round(h * s / 32) * 32), max(32, round(w * s / 32) * 32)
        x = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1.0
        y = self.session.run(None, {self.input: x.transpose(2, 0, 1)[None]})[0][0, 0]
        return cv2.resize(y.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR).clip(0, 1)


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, exclusive end)
    label: str
    score: float


#: YOLO results of the last images seen in this process, by (weights, thresholds, image digest): the
#: tagger and the segmenter of one clip (one fused actor) look at the same frames; the second asks
#: for free (YOLOv3-tiny is ~60 ms a frame on one core, a digest ~1 ms). MEMO_SIZE holds 4 clips of 16
#: frames: reuse needs a stage batch (batch_size x frames) to fit, as the CPU profile's batch_size 1 does;
#: past it the segmenter detects again (same results, the cost of no memo).
_MEMO: OrderedDict[tuple, list[Detection]] = OrderedDict()
MEMO_SIZE = 64


def scale_detections(dets: list[Detection], sx: float, sy: float, size: tuple[int, int]) -> list[Detection]:
    """Boxes of ``dets`` scaled by (``sx``, ``sy``) into an image of ``size`` (h, w)."""
    h, w = size
    out = []
    for d in dets:
        x0, y0, x1, y1 = d.box
        box = (max(0, int(x0 * sx)), max(0, int(y0 * sy)), min(w, int(np.ceil(x1 * sx))), min(h, int(np.ceil(y1 * sy))))
        if box[2] > box[0] and box[3] > box[1]:
            out.append(replace(d, box=box))
    return out


class YoloV3Tiny:
    """80-class COCO boxes (Darknet YOLOv3-tiny on cv2.dnn, 416x416); results memoised per image
    (:data:`_MEMO`)."""

    def __init__(self, model_dir: Path | None = None, confidence: float = 0.3, nms: float = 0.4):
        cfg, weights = model_path("yolov3-tiny.cfg", model_dir), model_path("yolov3-tiny.weights", model_dir)
        self._key = (str(weights), confidence, nms)
        self.names = model_path("coco.names", model_dir).read_text().split("\n")
        self.names = [n.strip() for n in self.names if n.strip()]
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.layers = self.net.getUnconnectedOutLayersNames()
        self.confidence, self.nms = confidence, nms

    def __call__(self, image: np.ndarray) -> list[Detection]:
        image = np.ascontiguousarray(image)
        key = (*self._key, image.shape, hashlib.blake2b(image.data, digest_size=16).digest())
        if key in _MEMO:
            _MEMO.move_to_end(key)
            return list(_MEMO[key])
        dets = self._detect(image)
        _MEMO[key] = dets
        while len(_MEMO) > MEMO_SIZE:
            _MEMO.popitem(last=False)
        return list(dets)

    def _detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        self.net.setInput(cv2.dnn.blobFromImage(image, 1 / 255.0, (416, 416), swapRB=False, crop=False))
        # All rows of both heads at once (the per-row Python loop cost ~30 ms a call); float32 maths as
        # per row, the threshold compared in float64 as the float() scores were.
        rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in self.net.forward(self.layers)])
        cls = np.argmax(rows[:, 5:], axis=1)
        score = rows[:, 4] * rows[np.arange(len(rows)), 5 + cls]
        keep = score.astype(np.float64) >= self.confidence
        rows, cls, score = rows[keep], cls[keep], score[keep]
        cx, cy, bw, bh = rows[:, 0] * w, rows[:, 1] * h, rows[:, 2] * w, rows[:, 3] * h
        xywh = np.stack([cx - bw / 2, cy - bh / 2, bw, bh], 1).astype(np.int64)  # int(): toward zero
        boxes = xywh.tolist()
        scores = score.astype(np.float64).tolist()
        classes = cls.tolist()
        keep = cv2.dnn.NMSBoxes(boxes, scores, self.confidence, self.nms) if boxes else []
        dets = []
        for i in np.asarray(keep).reshape(-1):
            x, y, bw, bh = boxes[i]
            x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + bw), min(h, y + bh)
            if x1 > x0 and y1 > y0:
                dets.append(Detection((x0, y0, x1, y1), self.names[classes[i]], scores[i]))
        return sorted(dets, key=lambda d: -d.score)
