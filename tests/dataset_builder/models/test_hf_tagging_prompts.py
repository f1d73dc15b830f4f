"""Tagger: per-tag calibrated thresholds, top-k, a real subject even when none clears its threshold;
prompts never carry a placeholder label into the judge question or the caption questions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dataset_builder.models.hf.captioning import layer_prompts
from dataset_builder.models.hf.qwen_judge import QUESTION, judge_question
from dataset_builder.models.hf.siglip_tagger import (
    VocabEntry,
    calibrate_thresholds,
    load_vocab,
    select_tags,
    load_thresholds,
    tag_thresholds,
    text_embeddings,
)

VOCAB = [VocabEntry("dog", True), VocabEntry("cat", True, 0.6), VocabEntry("sky", False), VocabEntry("road", False)]


def test_vocabulary_is_rams_tag_list_and_only_objects_are_subjects():
    """The shipped vocabulary holds RAM's 4585 tags (+ curated words); scene tags (sky, road, lake, rooms,
    materials, actions, colours) are never subjects, so they never become segmentation prompts."""
    vocab = load_vocab()
    labels = {v.label for v in vocab}
    subjects = {v.label for v in vocab if v.is_subject}
    assert len(vocab) >= 4585 and 1000 < len(subjects) < len(vocab) / 2
    assert {"3D CG rendering", "zombie", "kangaroo", "excavator", "drone", "fire truck"} <= labels
    assert {"person", "dog", "car", "bicycle", "horse", "skateboard", "surfboard", "bird", "guitar"} <= subjects
    scene = {"sky", "road", "lake", "street", "building", "grass", "mountain", "ocean", "beach", "living room",
             "bridge", "floor", "wall", "cloud", "tree", "run", "red", "sunset", "cement", "snow", "field"}
    assert scene <= labels and not scene & subjects


def test_vocab_threshold_column_and_errors(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("# c\ndog\tsubject\t0.3\nsky\tscene\n")
    assert load_vocab(path) == [VocabEntry("dog", True, 0.3), VocabEntry("sky", False, None)]
    path.write_text("dog\tsubject\ndog\tscene\n")
    with pytest.raises(ValueError, match="duplicate"):
        load_vocab(path)
    path.write_text("dog\tanimal\n")
    with pytest.raises(ValueError, match="subject"):
        load_vocab(path)


def test_per_tag_thresholds_and_top_k():
    thr = tag_thresholds(VOCAB, default=0.2, overrides={"road": 0.9})
    assert thr.tolist() == pytest.approx([0.2, 0.6, 0.2, 0.9])
    probs = np.array([0.3, 0.5, 0.25, 0.8], np.float32)  # cat below its calibrated 0.6, road below 0.9
    assert [t.label for t in select_tags(probs, VOCAB, thr, max_tags=5)] == ["dog", "sky"]
    assert [t.label for t in select_tags(probs, VOCAB, 0.2, max_tags=2)] == ["road", "cat"]  # top-k


def test_best_subject_is_kept_when_none_passes():
    probs = np.array([0.05, 0.08, 0.5, 0.01], np.float32)
    assert [t.label for t in select_tags(probs, VOCAB, 0.2, max_tags=5)] == ["sky"]
    tags = select_tags(probs, VOCAB, 0.2, max_tags=5, min_subjects=1)
    assert [(t.label, t.is_subject) for t in tags] == [("sky", False), ("cat", True)]
    assert tags[1].score == pytest.approx(0.08)  # the real score, not a fake pass
    assert [t.label for t in select_tags(probs, VOCAB, 0.2, max_tags=1, min_subjects=1)] == ["cat"]


def test_calibrated_thresholds_reach_the_target_precision():
    rng = np.random.default_rng(0)
    labels = rng.random((400, 2)) < 0.3
    probs = np.where(labels, rng.uniform(0.3, 1.0, labels.shape), rng.uniform(0.0, 0.6, labels.shape))
    thr = calibrate_thresholds(probs, labels, target_precision=0.9)
    for v in range(2):
        picked = probs[:, v] >= thr[v]
        assert labels[picked, v].mean() >= 0.9 and picked.sum() > labels[:, v].sum() * 0.5
    assert calibrate_thresholds(probs, np.zeros_like(labels), default=0.1).tolist() == pytest.approx([0.1, 0.1])


def test_no_placeholder_in_questions():
    prompts = layer_prompts("moving object", ["moving object", "road"])
    assert all("moving object" not in p for p in prompts.values())
    assert "an object alone" in prompts["fg"] and "Scene tags: road." in prompts["blend"]
    assert "an elephant alone" in layer_prompts("elephant", [])["fg"]
    assert "moving object" not in judge_question(QUESTION, "moving object")
    assert "a dog that is" in judge_question(QUESTION, "dog")


def test_cpu_segmenter_label_is_a_placeholder_for_the_vlms_too():
    """The CPU keyframe segmenter labels class-less regions "salient object"; with a VLM judge/captioner
    behind it (mixed profiles) that label must not reach the questions either."""
    from dataset_builder.models.cpu.keyframe_segmenter import SALIENT_LABEL

    prompts = layer_prompts(SALIENT_LABEL, [SALIENT_LABEL, "road"])
    assert all(SALIENT_LABEL not in p for p in prompts.values()) and "Scene tags: road." in prompts["blend"]
    assert SALIENT_LABEL not in judge_question(QUESTION, SALIENT_LABEL)


def test_thresholds_file_precedence_and_model_check(tmp_path):
    path = tmp_path / "thr.json"
    path.write_text(json.dumps({"model_fingerprint": "abc", "thresholds": {"dog": 0.4, "cat": 0.7}}))
    calibrated = load_thresholds(path, "abc")
    thr = tag_thresholds(VOCAB, default=0.2, overrides={"cat": 0.9}, calibrated=calibrated)
    assert thr.tolist() == pytest.approx([0.4, 0.9, 0.2, 0.2])  # file > vocab column; options > file
    with pytest.raises(ValueError, match="calibrated for model abc, this model is xyz"):
        load_thresholds(path, "xyz")


def test_text_embeddings_are_encoded_once_and_cached_per_key(tmp_path):
    calls = []

    def encode(prompts):
        calls.append(len(prompts))
        return np.array([[len(p), 1.0, 0.0] for p in prompts])

    prompts = [f"a photo of a {w}." for w in ("dog", "cat", "sky", "road", "lake")]
    first = text_embeddings(encode, prompts, "model1", tmp_path, batch=2)
    assert calls == [2, 2, 1] and np.allclose(np.linalg.norm(first, axis=1), 1)
    again = text_embeddings(encode, prompts, "model1", tmp_path, batch=2)
    assert calls == [2, 2, 1] and np.array_equal(first, again)  # read back, not re-encoded
    text_embeddings(encode, prompts, "model2", tmp_path)  # another model fingerprint: its own entry
    text_embeddings(encode, prompts[:3], "model1", tmp_path)  # other prompts: their own entry
    assert calls == [2, 2, 1, 5, 3] and len(list(tmp_path.glob("*.npy"))) == 3


def test_text_embedding_cache_writers_never_share_a_temporary_file(tmp_path, monkeypatch):
    """Actors in different pods (their own pid namespaces: equal pids) can share one cache volume; each must
    write its own temporary file, or one truncates the file the other is about to move into place."""
    import dataset_builder.models.hf.siglip_tagger as tagger_mod

    written = []
    real_save = np.save

    def save(path, array):
        written.append(str(path))
        real_save(path, array)

    monkeypatch.setattr(tagger_mod.os, "getpid", lambda: 7)
    monkeypatch.setattr(tagger_mod.np, "save", save)
    for _ in range(2):
        for stale in tmp_path.glob("*.npy"):
            stale.unlink()  # as if the other pod had not finished yet: both write
        text_embeddings(lambda p: np.ones((len(p), 3)), ["a photo of a dog."], "m", tmp_path)
    assert len(written) == 2 and written[0] != written[1]
    assert len(list(tmp_path.iterdir())) == 1  # the entry, no temporary file left behind
