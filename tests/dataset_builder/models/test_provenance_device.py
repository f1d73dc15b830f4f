"""Model revisions and library versions enter the processing hash and the samples' provenance; a GPU
asked for and not usable is an error, never a silent CPU run."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dataset_builder.config import BackendSpec, BuildConfig
from dataset_builder.models import provenance
from dataset_builder.models.hf import loading


def _model_dir(root, weights: bytes = b"\0" * 64):
    d = root / "m"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text('{"hidden_size": 32}')
    (d / "model.safetensors").write_bytes((8).to_bytes(8, "little") + b'{"a": 1}' + weights)
    return d


def _paper_cfg(model_dir) -> BuildConfig:
    return BuildConfig.model_validate({"stages": {"tag": {"name": "siglip", "model_dir": str(model_dir)}}})


def test_model_fingerprint_follows_config_and_weights(tmp_path):
    d = _model_dir(tmp_path)
    first = provenance.model_fingerprint(d)
    assert first == provenance.model_fingerprint(d) and len(first) == 12
    (d / "config.json").write_text('{"hidden_size": 64}')
    second = provenance.model_fingerprint(d)
    assert second != first
    (d / "model.safetensors").write_bytes((8).to_bytes(8, "little") + b'{"a": 1}' + b"\1" * 64)
    assert provenance.model_fingerprint(d) not in (first, second)
    big = tmp_path / "big.pth"  # only the edges of large weight files are read, but changes there count
    data = np.zeros(3 << 20, np.uint8)
    big.write_bytes(data.tobytes())
    before = provenance.model_fingerprint(big)
    data[-1] = 1
    big.write_bytes(data.tobytes())
    assert provenance.model_fingerprint(big) != before
    assert provenance.model_fingerprint(tmp_path / "absent") == "missing"


def test_processing_hash_changes_with_model_revision_and_library_versions(tmp_path, monkeypatch):
    d = _model_dir(tmp_path)
    h1 = _paper_cfg(d).processing_hash()
    (d / "config.json").write_text('{"hidden_size": 48}')
    h2 = _paper_cfg(d).processing_hash()
    assert h1 != h2  # same names, new weights -> new clip ids
    rev = provenance.backend_revision("tag", BackendSpec(name="siglip", model_dir=str(d)))
    assert rev.startswith(f"model={provenance.model_fingerprint(d)} ") and "transformers=" in rev and "torch=" in rev
    monkeypatch.setattr(provenance, "_version", lambda dist: "99.0" if dist == "transformers" else "1.0")
    assert _paper_cfg(d).processing_hash() != h2  # a transformers upgrade -> new clip ids


def test_cpu_profile_hash_is_stable_and_records_library_versions():
    cfg = BuildConfig()
    assert cfg.processing_hash() == BuildConfig().processing_hash()
    revs = provenance.stage_revisions(cfg.stages)
    assert set(revs) == {name for name, _ in cfg.stages}
    assert all("numpy=" in r and "model=" not in r for r in revs.values())


def test_device_never_falls_back_to_cpu_silently(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert loading.select_device(BackendSpec(name="x")).type == "cpu"  # nothing asked for a GPU
    assert loading.select_device(BackendSpec(name="x", device="cpu")).type == "cpu"
    with pytest.raises(loading.DeviceUnavailableError, match="device 'cuda' requested"):
        loading.select_device(BackendSpec(name="x", device="cuda"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # e.g. Ray assigned GPUs, torch is a CPU build
    with pytest.raises(loading.DeviceUnavailableError, match=r"assigned GPU\(s\) \['0', '1'\].*device: cpu"):
        loading.select_device(BackendSpec(name="siglip"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert loading.select_device(BackendSpec(name="x")).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert loading.select_device(BackendSpec(name="x")) == torch.device("cuda")
    with pytest.raises(loading.DeviceUnavailableError, match="only 1 CUDA"):
        loading.select_device(BackendSpec(name="x", device="cuda:1"))


def test_stage_records_worker_revision(hf_siglip_dir, hf_clip):
    from dataset_builder.stages.base import ClipState
    from dataset_builder.stages.tag import TagStage

    stage = TagStage(BackendSpec(name="siglip", model_dir=str(hf_siglip_dir)))
    state = ClipState(clip_id="c", source_uri="v.mp4")
    stage.process(state, {"frames": hf_clip})
    assert state.revisions["tag"] == provenance.backend_revision("tag", stage.spec)
    assert f"model={provenance.model_fingerprint(hf_siglip_dir)}" in state.revisions["tag"]
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_option_data_files_enter_the_revision(tmp_path):
    """A re-calibrated thresholds file (or an edited vocabulary) under the same path gives new clip ids."""
    d = _model_dir(tmp_path)
    thresholds = tmp_path / "thr.json"
    thresholds.write_text('{"thresholds": {"dog": 0.3}}')
    spec = BackendSpec(name="siglip", model_dir=str(d), options={"thresholds_path": str(thresholds)})
    first = provenance.backend_revision("tag", spec)
    assert f"thresholds_path={provenance.model_fingerprint(thresholds)}" in first
    thresholds.write_text('{"thresholds": {"dog": 0.4}}')
    assert provenance.backend_revision("tag", spec) != first


def test_the_shipped_default_vocabulary_enters_the_revision(tmp_path, monkeypatch):
    """Without options.vocab_path the tagger reads its shipped vocabulary: a builder upgrade that changes that
    file (as RAM's tag list replacing the curated words did) must give new clip ids too, or a resumed build
    mixes samples tagged from two vocabularies under one processing hash."""
    from dataset_builder.models.hf import siglip_tagger

    d = _model_dir(tmp_path)
    spec = BackendSpec(name="siglip", model_dir=str(d))
    shipped = provenance.backend_revision("tag", spec)
    assert f"vocab_path={provenance.model_fingerprint(siglip_tagger.VOCAB_PATH)}" in shipped
    vocab = tmp_path / "ram_vocab.txt"
    vocab.write_text("dog\tsubject\n")
    monkeypatch.setattr(siglip_tagger.SiglipTagger, "default_option_paths", {"vocab_path": str(vocab)})
    first = provenance.backend_revision("tag", spec)
    vocab.write_text("dog\tsubject\ncat\tsubject\n")
    assert first != shipped and provenance.backend_revision("tag", spec) != first
    explicit = tmp_path / "mine.txt"
    explicit.write_text("cow\tsubject\n")  # an explicit vocab_path replaces the default in the revision
    mine = provenance.backend_revision("tag", spec.model_copy(update={"options": {"vocab_path": str(explicit)}}))
    assert f"vocab_path={provenance.model_fingerprint(explicit)}" in mine and mine.count("vocab_path=") == 1


def test_cpu_stage_revisions_see_the_model_files_and_the_cpus_bf16(tmp_path, monkeypatch):
    """Before, tag/cpu and segment_track/cpu revisions were library versions only: a worker without the
    model files (motion-only / classical fallback) or without bf16 (U^2-Net fp32) wrote other outputs
    under the same clip ids."""
    models = tmp_path / "cpu_models"
    models.mkdir()
    for name in ("yolov3-tiny.weights", "yolov3-tiny.cfg", "coco.names", "u2net.onnx", "selfie_segmentation.tflite"):
        (models / name).write_bytes(name.encode())
    monkeypatch.setenv("LAYERFLOW_CPU_MODELS", str(models))
    assert set(provenance.cpu_models_fingerprint(["coco.names"])) <= set("0123456789abcdef")
    tag = provenance.backend_revision("tag", BackendSpec(name="cpu"))
    seg = provenance.backend_revision("segment_track", BackendSpec(name="cpu"))
    assert "cpu_models=" in tag and "cpu_bf16=" not in tag and "cpu_models=" in seg and "cpu_bf16=" in seg
    assert "openvino=" in seg and "onnxruntime=" in seg  # the U^2-Net runtime falls back between them
    h1 = BuildConfig().processing_hash()
    (models / "coco.names").unlink()  # this worker would fall back to the classical tagger
    assert provenance.backend_revision("tag", BackendSpec(name="cpu")) != tag
    assert BuildConfig().processing_hash() != h1
    modnet = BackendSpec(name="cpu", options={"person_model": "modnet"})  # reads modnet.onnx, not selfie
    assert provenance.backend_revision("segment_track", modnet) != seg
    provenance.cpu_has_bf16.cache_clear()
    monkeypatch.setattr(provenance.Path, "read_text", lambda self, *a, **k: "flags : fpu avx512f avx512_bf16\n")
    with_bf16 = provenance.backend_revision("segment_track", BackendSpec(name="cpu"))
    provenance.cpu_has_bf16.cache_clear()
    monkeypatch.setattr(provenance.Path, "read_text", lambda self, *a, **k: "flags : fpu avx512f\n")
    assert provenance.backend_revision("segment_track", BackendSpec(name="cpu")) != with_bf16
    provenance.cpu_has_bf16.cache_clear()


def test_cpu_revisions_name_only_what_the_options_read(tmp_path, monkeypatch):
    """The classical tagger reads no YOLO file: before, its revision changed when they were fetched or
    removed (a new clip id for the same outputs). The selfie model's interpreter may be tflite-runtime
    (the fallback of ai-edge-litert): its version is part of the segmenter's revision."""
    models = tmp_path / "cpu_models"
    models.mkdir()
    for name in ("yolov3-tiny.weights", "yolov3-tiny.cfg", "coco.names"):
        (models / name).write_bytes(name.encode())
    monkeypatch.setenv("LAYERFLOW_CPU_MODELS", str(models))
    classical = BackendSpec(name="cpu", options={"detector": "classical"})
    before = provenance.backend_revision("tag", classical)
    yolo_before = provenance.backend_revision("tag", BackendSpec(name="cpu"))
    (models / "yolov3-tiny.weights").unlink()
    assert provenance.backend_revision("tag", classical) == before
    assert "cpu_models=" not in before
    assert provenance.backend_revision("tag", BackendSpec(name="cpu")) != yolo_before
    seg = provenance.backend_revision("segment_track", BackendSpec(name="cpu"))
    assert "tflite-runtime=" in seg and "ai-edge-litert=" in seg
