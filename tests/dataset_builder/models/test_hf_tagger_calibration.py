"""workflows/calibrate_tagger.py on a tiny random SigLIP: per-tag thresholds fitted to a precision target on a
labelled image set, recorded for the model's fingerprint, and used by the tagger through thresholds_path."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dataset_builder.config import BackendSpec
from dataset_builder.models.hf.siglip_tagger import SiglipTagger
from workflows import calibrate_tagger

VOCAB = "dog\tsubject\ncat\tsubject\nsky\tscene\ngrass\tscene\n"


@pytest.fixture()
def labelled(tmp_path):
    rng = np.random.default_rng(0)
    items = []
    for i in range(24):
        green = i % 2 == 0
        image = rng.integers(0, 255, (32, 32, 3), np.uint8)
        image[..., 1] = 255 if green else image[..., 1] // 4
        cv2.imwrite(str(tmp_path / f"im{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        items.append({"image": f"im{i}.png", "tags": (["grass"] if green else []) + (["dog"] if i % 3 == 0 else [])
                      + (["unicorn"] if i == 5 else [])})
    (tmp_path / "labels.jsonl").write_text("\n".join(json.dumps(x) for x in items))
    (tmp_path / "vocab.txt").write_text(VOCAB)
    return tmp_path


def test_calibration_reaches_the_target_and_the_tagger_uses_it(hf_siglip_dir, labelled, tmp_path):
    out = tmp_path / "thr.json"
    with pytest.raises(SystemExit) as done:
        calibrate_tagger.run_cli(lambda: calibrate_tagger.main([
            "--model-dir", str(hf_siglip_dir), "--labels", str(labelled / "labels.jsonl"), "--precision", "0.7",
            "--min-positives", "3", "--vocab-path", str(labelled / "vocab.txt"), "--out", str(out)]))
    assert done.value.code == 0
    result = json.loads(out.read_text())
    assert set(result["thresholds"]) == {"dog", "grass"}  # the tags with >= 3 positives
    assert result["unknown_tags"] == ["unicorn"] and result["positives"] == {"dog": 8, "grass": 12}
    options = {"vocab_path": str(labelled / "vocab.txt"), "threshold": 0.99, "embed_cache": str(tmp_path / "c"),
               "thresholds_path": str(out), "min_subjects": 0}
    tagger = SiglipTagger(BackendSpec(name="siglip", model_dir=str(hf_siglip_dir), options=options))
    assert tagger.fingerprint == result["model_fingerprint"]
    assert tagger.thresholds.tolist() == pytest.approx(
        [result["thresholds"]["dog"], 0.99, 0.99, result["thresholds"]["grass"]])  # dog, cat, sky, grass
    items = calibrate_tagger.read_labels(labelled / "labels.jsonl", None)
    for label in ("dog", "grass"):  # on the calibration set, each fitted tag is at least as precise as asked
        hits = [label in truth for path, truth in items
                if label in {t.label for t in tagger.tag(calibrate_tagger.load_rgb(path)[None])}]
        assert hits and np.mean(hits) >= 0.7
    # the text embeddings were cached under the model fingerprint; a second actor reads them back
    cached = list((tmp_path / "c").glob(f"{tagger.fingerprint}-*.npy"))
    assert len(cached) == 1
    np.save(cached[0], np.eye(4, tagger.text_embeds.shape[1], dtype=np.float32))
    again = SiglipTagger(BackendSpec(name="siglip", model_dir=str(hf_siglip_dir), options=options))
    assert np.array_equal(again.text_embeds.numpy(), np.eye(4, tagger.text_embeds.shape[1]))


def test_a_fitted_threshold_keeps_the_image_it_was_fitted_on(labelled, tmp_path):
    """A threshold is the score of the last image it must keep, and the tagger keeps scores >= it: the file
    must hold that score exactly. Rounded (it was stored to 6 decimals) it can land above the score, and a tag
    whose threshold is set by one image (here dog: only the top-scored image is precise enough) never passes."""
    from dataset_builder.models.hf.siglip_tagger import load_thresholds, load_vocab, select_tags, tag_thresholds

    class Scores:  # calibrate() needs only these of a tagger
        vocab = load_vocab(labelled / "vocab.txt")
        fingerprint, template = "abc", "a photo of a {}."
        # dog, cat, sky, grass; 0.5863885 (float32) rounds up to 0.586389 at 6 decimals
        rows = iter(np.array([[0.5863885, 0.1, 0.1, 0.9]] + [[0.3, 0.1, 0.1, 0.2]] * 23, np.float32))

        def probabilities(self, frames):
            return next(self.rows)

    tagger = Scores()
    items = calibrate_tagger.read_labels(labelled / "labels.jsonl", None)
    result = calibrate_tagger.calibrate(tagger, items, precision=0.7, min_positives=3)
    path = tmp_path / "thr.json"
    path.write_text(json.dumps(result))
    thresholds = tag_thresholds(tagger.vocab, 0.99, calibrated=load_thresholds(path, "abc", tagger.template))
    assert thresholds[0] == np.float32(0.5863885)
    probs = np.array([0.5863885, 0.1, 0.1, 0.9], np.float32)
    assert [t.label for t in select_tags(probs, tagger.vocab, thresholds, max_tags=5)] == ["grass", "dog"]


def test_ram_annotation_format_and_bad_input(tmp_path):
    (tmp_path / "ann.txt").write_text("test/0001,car,dog\ntest/0002,flower\n")
    items = calibrate_tagger.read_labels(tmp_path / "ann.txt", tmp_path / "imgs")
    assert items == [(tmp_path / "imgs" / "test/0001.jpg", {"car", "dog"}), (tmp_path / "imgs" / "test/0002.jpg",
                                                                              {"flower"})]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no labelled images"):
        calibrate_tagger.read_labels(tmp_path / "empty.txt", None)


def test_thresholds_fitted_under_another_prompt_template_are_refused(hf_siglip_dir, labelled, tmp_path):
    """The thresholds are on the probability scale of one (model, prompt template) pair: a file fitted with
    SigLIP's default template must not silently gate the tags of a tagger prompting another template."""
    out = tmp_path / "thr.json"
    args = ["--model-dir", str(hf_siglip_dir), "--labels", str(labelled / "labels.jsonl"), "--precision", "0.7",
            "--min-positives", "3", "--vocab-path", str(labelled / "vocab.txt"), "--out", str(out)]
    assert calibrate_tagger.main(args) == 0
    assert json.loads(out.read_text())["prompt"] == "a photo of a {}."
    options = {"vocab_path": str(labelled / "vocab.txt"), "embed_cache": "", "thresholds_path": str(out)}
    spec = BackendSpec(name="siglip", model_dir=str(hf_siglip_dir), options=options)
    SiglipTagger(spec)  # same template: accepted
    other = spec.model_copy(update={"options": {**options, "prompt": "a video of {}"}})
    with pytest.raises(ValueError, match="prompt"):
        SiglipTagger(other)
    assert calibrate_tagger.main(args + ["--prompt", "a video of {}"]) == 0  # calibrated for that template
    SiglipTagger(other)


def test_text_embedding_cache_is_not_reused_across_library_versions(hf_siglip_dir, labelled, tmp_path, monkeypatch):
    """Cached text embeddings of one torch/transformers (or device) must not be read by another: the same
    model could embed differently after an upgrade, and a node with an old cache would tag differently."""
    from dataset_builder.models import provenance

    cache = tmp_path / "cache"
    spec = BackendSpec(name="siglip", model_dir=str(hf_siglip_dir),
                       options={"vocab_path": str(labelled / "vocab.txt"), "embed_cache": str(cache)})
    SiglipTagger(spec)
    SiglipTagger(spec)
    assert len(list(cache.glob("*.npy"))) == 1  # same libraries: read back
    real = provenance.library_versions
    monkeypatch.setattr(provenance, "library_versions",
                        lambda dists: {**real(dists), "transformers": "99.0.0"})
    SiglipTagger(spec)
    assert len(list(cache.glob("*.npy"))) == 2  # another transformers: its own entry


def test_a_thresholds_file_inside_the_model_dir_is_refused_up_front(hf_siglip_dir, labelled):
    """The file would become part of the model directory's fingerprint, which it records: the tagger would
    then refuse it as calibrated for another model. Say so before scoring anything."""
    args = ["--model-dir", str(hf_siglip_dir), "--labels", str(labelled / "labels.jsonl"),
            "--vocab-path", str(labelled / "vocab.txt"), "--out", str(hf_siglip_dir / "thresholds.json")]
    with pytest.raises(ValueError, match="outside the model dir"):
        calibrate_tagger.main(args)
    assert not (hf_siglip_dir / "thresholds.json").exists()
