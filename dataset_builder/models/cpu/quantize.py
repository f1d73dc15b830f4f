"""int8 U^2-Net for CPUs without bf16: NNCF post-training quantization, made once by the fetch command.

On an AVX2 CPU (no bf16) U^2-Net fp32 costs ~1.3-1.6 s a call on one core, ~97 % of segment_track; the
int8 model ~0.7 s (OpenVINO's int8 convolutions), as bf16 does where the CPU has it. Activation ranges
are calibrated on a few free photos that ship inside PyPI wheels (:data:`~.zoo.CALIBRATION_IMAGES`:
never DAVIS or the sample clips), each seen whole and as corner/centre crops (U^2-Net sees a box crop as
often as a frame). The convolutions that give the 1-channel saliency maps (the six side outputs and
their fusion) and the first one stay fp32: they are ~1 % of the cost, and the threshold at 0.5 reads
their output directly. Nothing here runs at pipeline run time; the runner is :class:`.nets.U2Net`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from dataset_builder.models.cpu.nets import u2net_input
from dataset_builder.models.cpu.zoo import U2NET_INT8, U2NET_INT8_RECORD

#: Crop windows (x0, y0, x1, y1 as fractions of the image) each calibration image is also seen through.
CALIBRATION_WINDOWS = ((0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 0.6, 0.6), (0.4, 0.0, 1.0, 0.6),
                       (0.0, 0.4, 0.6, 1.0), (0.4, 0.4, 1.0, 1.0), (0.125, 0.125, 0.875, 0.875))


def calibration_inputs(images: list[np.ndarray]) -> list[np.ndarray]:
    """U^2-Net inputs of every uint8 RGB image through every :data:`CALIBRATION_WINDOWS` crop."""
    out = []
    for im in images:
        h, w = im.shape[:2]
        for x0, y0, x1, y1 in CALIBRATION_WINDOWS:
            crop = im[int(y0 * h):max(int(y0 * h) + 1, int(y1 * h)), int(x0 * w):max(int(x0 * w) + 1, int(x1 * w))]
            out.append(u2net_input(np.ascontiguousarray(crop)))
    return out


def fp32_convolutions(model) -> list[str]:
    """Names of the convolutions kept fp32: the first, and every one with a single output channel."""
    convs = [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    keep = [op for op in convs if op.get_output_partial_shape(0)[1].get_length() == 1]
    return [op.get_friendly_name() for op in ([convs[0]] if convs else []) + keep]


#: Bump when the recipe below changes (windows, preset, what stays fp32): the fetch command then makes
#: the model again.
RECIPE_VERSION = 1


def recipe(sources: dict[str, str]) -> dict:
    """What decides the int8 model besides u2net.onnx and the library versions (compared by the fetch
    command to tell whether the model it made before is still the one it would make)."""
    return {"version": RECIPE_VERSION, "calibration": dict(sorted(sources.items())),
            "windows": [list(w) for w in CALIBRATION_WINDOWS], "preset": "mixed",
            "fp32": "first convolution and 1-channel convolutions"}


def quantize_u2net(onnx_path: Path, images: list[np.ndarray], dest: Path, sources: dict[str, str]) -> Path:
    """Write ``dest``/u2net-int8.{xml,bin} and their record (what they came from: the onnx file's
    sha256, :func:`recipe` with ``sources``, the library versions; the sha256 of both files); returns the
    xml's path. Made in a temporary dir beside, then moved in: the old record goes first and the new one
    comes last, so runners (:func:`~.nets.int8_present`) never take a half-replaced pair."""
    os.environ.setdefault("NNCF_CI", "1")  # no usage telemetry (nncf sends it by default)
    import nncf  # the cpu-models extra; only the fetch command needs it
    import openvino as ov

    from dataset_builder.io.inputs import full_hash

    nncf.set_log_level(logging.ERROR)
    model = ov.Core().read_model(str(onnx_path))
    data = calibration_inputs(images)
    ignored = fp32_convolutions(model)
    quantized = nncf.quantize(model, nncf.Dataset(data), subset_size=len(data),
                              preset=nncf.QuantizationPreset.MIXED,
                              ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
    part = Path(tempfile.mkdtemp(prefix=".u2net-int8-", dir=dest))
    try:
        ov.save_model(quantized, str(part / U2NET_INT8[0]), compress_to_fp16=False)
        record = {"source": onnx_path.name, "source_sha256": full_hash(str(onnx_path)), "recipe": recipe(sources),
                  "calibration_inputs": len(data), "fp32_convolutions": ignored,
                  "nncf": metadata.version("nncf"), "openvino": metadata.version("openvino"),
                  "files": {n: full_hash(str(part / n)) for n in U2NET_INT8}}
        (part / U2NET_INT8_RECORD).write_text(json.dumps(record, indent=1))
        (dest / U2NET_INT8_RECORD).unlink(missing_ok=True)
        for name in (*U2NET_INT8, U2NET_INT8_RECORD):
            (part / name).replace(dest / name)
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return dest / U2NET_INT8[0]


def int8_record(dest: Path, verify: bool = False) -> dict | None:
    """What the int8 files in ``dest`` were made from, or None when they are not all there (or, with
    ``verify``, not the files the record names)."""
    from dataset_builder.io.inputs import full_hash

    if not all((dest / n).is_file() for n in (*U2NET_INT8, U2NET_INT8_RECORD)):
        return None
    try:
        record = json.loads((dest / U2NET_INT8_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if verify and record.get("files") != {n: full_hash(str(dest / n)) for n in U2NET_INT8}:
        return None
    return record
