"""Pure functions and loading rules of the paper-profile backends (no model weights needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_builder.config import BackendSpec, load_build_config
from dataset_builder.models.hf import loading
from dataset_builder.models.hf.owlv2_sam2 import (
    Detection,
    box_coverage,
    box_iou,
    nms,
    owl_boxes_to_pixels,
    select_new,
    soft_alpha,
)
from dataset_builder.models.hf.qwen_vl import chatml_prompt, expand_image_tokens
from dataset_builder.models.hf.siglip_tagger import load_vocab, select_tags
from dataset_builder.models.registry import BackendKind, available_backends, resolve_factory

REPO = Path(__file__).resolve().parents[3]
HF_MODULES = ["loading", "siglip_tagger", "owlv2_sam2", "qwen_vl", "qwen_judge", "qwen_captioner", "captioning",
              "overlay", "propainter", "cogvlm2", "deform_conv"]


def _naive_deform_conv(x, offset, weight, bias, pad, mask):
    """Per-pixel loop with torchvision's bilinear rule (zero outside, h<=-1 or h>=H -> 0)."""
    b, c, h, w = x.shape
    co, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    g = offset.shape[1] // (2 * kh * kw)
    out = np.zeros((b, co, ho, wo))

    def sample(img, y, xx):
        if y <= -1 or y >= h or xx <= -1 or xx >= w:
            return np.zeros(img.shape[0])
        y0, x0 = int(np.floor(y)), int(np.floor(xx))
        val = np.zeros(img.shape[0])
        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            for xi, wx in ((x0, 1 - (xx - x0)), (x0 + 1, xx - x0)):
                if 0 <= yy < h and 0 <= xi < w:
                    val += wy * wx * img[:, yy, xi]
        return val

    for n in range(b):
        for i in range(ho):
            for j in range(wo):
                cols = np.zeros((c, kh * kw))
                for k in range(kh * kw):
                    for gi in range(g):
                        cs = slice(gi * c // g, (gi + 1) * c // g)
                        dy = offset[n, 2 * (gi * kh * kw + k), i, j]
                        dx = offset[n, 2 * (gi * kh * kw + k) + 1, i, j]
                        y = i - pad + k // kw + dy
                        xx = j - pad + k % kw + dx
                        m = mask[n, gi * kh * kw + k, i, j]
                        cols[cs, k] = sample(x[n, cs], y, xx) * m
                out[n, :, i, j] = weight.reshape(co, -1) @ cols.reshape(-1) + bias
    return out


def test_deform_conv_matches_naive_reference():
    torch = pytest.importorskip("torch")
    from dataset_builder.models.hf.deform_conv import DeformConv2d, deform_conv2d

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 5, 6))
    offset = rng.normal(scale=1.5, size=(2, 2 * 2 * 9, 5, 6))  # 2 offset groups, offsets reach outside
    mask = rng.uniform(size=(2, 2 * 9, 5, 6))
    weight = rng.normal(size=(3, 4, 3, 3))
    bias = rng.normal(size=3)

    def t(a):
        return torch.tensor(a, dtype=torch.float64)

    got = deform_conv2d(t(x), t(offset), t(weight), t(bias), padding=1, mask=t(mask)).numpy()
    np.testing.assert_allclose(got, _naive_deform_conv(x, offset, weight, bias, 1, mask), atol=1e-9)
    # zero offsets and unit mask reduce to an ordinary convolution
    conv = DeformConv2d(4, 3, 3, padding=1).double()
    zero = torch.zeros(2, 18, 5, 6, dtype=torch.float64)
    ref = torch.nn.functional.conv2d(t(x), conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(conv(t(x), zero, torch.ones(2, 9, 5, 6, dtype=torch.float64)), ref)
    assert set(conv.state_dict()) == {"weight", "bias"}  # same keys as torchvision's module


def test_missing_model_dir_names_directory_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERFLOW_MODEL_ROOT", str(tmp_path))
    with pytest.raises(loading.ModelNotFoundError) as err:
        loading.resolve_model_dir(BackendSpec(name="siglip"), "siglip-so400m")
    assert str(tmp_path / "siglip-so400m") in str(err.value) and "LAYERFLOW_MODEL_ROOT" in str(err.value)
    (tmp_path / "partial").mkdir()
    with pytest.raises(loading.ModelNotFoundError, match=r"lacks \['config.json'\]"):
        loading.resolve_model_dir(BackendSpec(name="x", model_dir="partial"), "unused")
    (tmp_path / "partial" / "config.json").write_text("{}")
    assert loading.resolve_model_dir(BackendSpec(name="x", model_dir="partial"), "unused") == tmp_path / "partial"


@pytest.mark.parametrize("kind,name,needle", [
    ("tag", "siglip", "siglip"), ("segment_track", "owlv2_sam2", "owlv2_sam2"),
    ("filter_foreground", "qwen2_5_vl", "Qwen2.5-VL"), ("inpaint", "propainter", "propainter"),
    ("caption", "qwen2_5_vl", "Qwen2.5-VL"),
])
def test_backends_fail_clearly_without_weights(tmp_path, monkeypatch, kind, name, needle):
    pytest.importorskip("transformers")
    if name == "propainter":
        pytest.importorskip("pytorchcv")
    monkeypatch.setenv("LAYERFLOW_MODEL_ROOT", str(tmp_path / "models"))
    with pytest.raises(loading.ModelNotFoundError, match=str(tmp_path / "models")) as err:
        resolve_factory(kind, name)(BackendSpec(name=name))
    assert needle in str(err.value)


def test_owlv2_sam2_needs_both_subdirs(tmp_path):
    pytest.importorskip("transformers")
    (tmp_path / "owlv2").mkdir()
    (tmp_path / "owlv2" / "config.json").write_text("{}")
    with pytest.raises(loading.ModelNotFoundError, match="owlv2"):
        resolve_factory("segment_track", "owlv2_sam2")(BackendSpec(name="owlv2_sam2", model_dir=str(tmp_path)))


def test_offline_is_enforced(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    loading.enforce_offline()
    import os
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_owl_box_geometry_nms_and_new_object_rule():
    # OWLv2 pads to a square: on a 64x96 frame both axes scale by 96
    boxes = owl_boxes_to_pixels(np.array([[0.5, 0.25, 0.5, 0.25], [0.9, 0.9, 0.5, 0.5]]), 64, 96)
    np.testing.assert_allclose(boxes[0], [24, 12, 72, 36])
    np.testing.assert_allclose(boxes[1], [62.4, 62.4, 96, 64])  # clipped to the frame
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    assert box_iou(b[:1], b[1:2])[0, 0] == pytest.approx(81 / 119)
    assert nms(b, np.array([0.9, 0.8, 0.7]), 0.5) == [0, 2]
    tracked = np.zeros((64, 96), bool)
    tracked[10:30, 10:40] = True
    dets = [Detection(4, (10, 10, 40, 30), 0.9, "bike"), Detection(4, (50, 10, 80, 30), 0.8, "person")]
    assert box_coverage(dets[0].box, tracked) == 1.0 and box_coverage(dets[1].box, tracked) == 0.0
    assert [d.label for d in select_new(dets, tracked, 0.3)] == ["person"]


def test_sam2_soft_alpha_keeps_edges_and_drops_faint_tails():
    prob = np.full((2, 40, 60), 0.002, np.float32)  # confident background: logit ~ -6.2 -> alpha 1 if kept
    prob[:, 10:20, 10:20] = 0.95                     # the object
    prob[:, 9, 10:20] = 0.4                          # its soft edge, 1 px outside
    prob[:, 30:35, 45:55] = 0.2                      # a faint look-alike far from the object
    alpha = soft_alpha(prob, band=3)
    assert alpha.dtype == np.uint8 and alpha.shape == prob.shape
    assert (alpha[:, 10:20, 10:20] == 242).all()
    assert (alpha[:, 9, 10:20] == 102).all()         # soft edge kept
    assert not alpha[:, 30:, 40:].any()              # no ghost alpha on the look-alike
    assert alpha[:, :, 30:].max() == 0 and alpha[:, 0].max() == 0  # nor on the background
    assert not soft_alpha(np.full((1, 8, 8), 0.4, np.float32), band=3).any()  # no object -> empty


def test_vocab_and_tag_selection():
    vocab = load_vocab()
    labels = [v.label for v in vocab]
    assert len(vocab) >= 250 and len(set(labels)) == len(labels)
    assert {"person", "dog", "car"} <= {v.label for v in vocab if v.is_subject}
    assert {"sky", "street", "beach"} <= {v.label for v in vocab if not v.is_subject}
    assert "fire truck" in labels  # underscores -> spaces
    probs = np.zeros(len(vocab))
    probs[[labels.index("dog"), labels.index("sky"), labels.index("car")]] = [0.9, 0.5, 0.05]
    tags = select_tags(probs, vocab, threshold=0.1, max_tags=5)
    assert [(t.label, t.is_subject) for t in tags] == [("dog", True), ("sky", False)]


def test_qwen_prompt_expansion():
    prompt = chatml_prompt("is it real?", 2)
    assert prompt.count("<|image_pad|>") == 2 and prompt.endswith("<|im_start|>assistant\n")
    out = expand_image_tokens(prompt, np.array([[1, 4, 6], [1, 2, 2]]), merge_size=2)
    assert out.count("<|image_pad|>") == 6 + 1
    first = out.index("<|vision_start|>")
    assert out[first:].startswith("<|vision_start|>" + "<|image_pad|>" * 6 + "<|vision_end|>")
    with pytest.raises(ValueError, match="placeholders"):
        expand_image_tokens(prompt, np.array([[1, 2, 2]]), 2)


def test_paper_config_validates_and_names_registered_backends():
    cfg = load_build_config(REPO / "configs" / "paper.yaml")
    assert cfg.profile == "paper"
    for stage, spec in cfg.stages:
        assert spec.name in available_backends(BackendKind(stage)), (stage, spec.name)
        if spec.name != "iou":
            assert spec.model_dir and not Path(spec.model_dir).is_absolute()
            assert 0 < spec.resources.num_gpus <= 1
    # remote code stays opt-in: the default profile runs with stock transformers classes only
    assert not any(spec.trust_remote_code for _, spec in cfg.stages)


def test_modules_import_without_torchvision_and_cpu_profile_without_torch():
    """Runs in a subprocess with torchvision made unimportable (it is absent here anyway)."""
    code = f"""
import importlib, importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Block())
from dataset_builder.config import load_build_config
from dataset_builder.models.registry import build_backend
cfg = load_build_config("configs/cpu.yaml")
for stage, spec in cfg.stages:
    build_backend(stage, spec)
import dataset_builder.models.hf
for m in {HF_MODULES[:-1]!r}:
    importlib.import_module("dataset_builder.models.hf." + m)
assert "torch" not in sys.modules, "cpu profile / hf module import pulled in torch"
importlib.import_module("dataset_builder.models.hf.deform_conv")
from dataset_builder.models.hf.propainter import _import_pytorchcv
try:
    _import_pytorchcv()
except ModuleNotFoundError as e:
    assert e.name == "pytorchcv", e
assert "torchvision" not in sys.modules
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-2000:]


def test_sam_track_keyframe_rule_on_masks():
    from dataset_builder.models.hf.owlv2_sam2 import assign_detections

    h, w = 20, 20
    track = np.zeros((1, h, w), bool)
    track[0, 2:10, 2:10] = True  # tracked object A
    drifted = np.zeros((h, w), bool)
    drifted[3:11, 3:11] = True  # A again, a bit off: re-anchors A
    part = np.zeros((h, w), bool)
    part[4:8, 4:8] = True  # a part of A: covered, but too small for IoU -> dropped
    entering = np.zeros((h, w), bool)
    entering[12:18, 12:18] = True  # an object entering: new
    twin = entering.copy()
    twin[12:17, 12:18] = True  # the same newcomer detected twice: covered by the accepted newcomer
    empty = np.zeros((h, w), bool)
    out = assign_detections(np.stack([drifted, part, entering, twin, empty]), track, max_coverage=0.3,
                            reanchor_iou=0.5, min_area=1)
    assert out == [("reanchor", 0), ("covered", None), ("new", None), ("covered", None), ("empty", None)]
    # each track re-anchored once; with no tracks everything non-empty is new
    assert assign_detections(np.stack([drifted, drifted]), track, 0.3, 0.5)[1] == ("covered", None)
    assert assign_detections(np.stack([drifted]), np.zeros((0, h, w), bool), 0.3, 0.5) == [("new", None)]
