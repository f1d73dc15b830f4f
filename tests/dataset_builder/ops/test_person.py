import logging

import numpy as np
import pytest

from dataset_builder.ops import person
from dataset_builder.ops.person import (
    letterbox,
    load_selfie_model,
    person_prompt,
    pick_variant,
    run_selfie,
    smooth_probs,
    unletterbox,
)


def _smooth_image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (h + w)], -1).astype(np.uint8)


@pytest.mark.parametrize(("h", "w", "size"), [(144, 176, (256, 256)), (240, 426, (144, 256)), (300, 120, (144, 256))])
def test_letterbox_keeps_aspect_pads_with_zeros_and_round_trips(h, w, size):
    img = _smooth_image(h, w)
    boxed, box = letterbox(img, size)
    assert boxed.shape == size + (3,)
    assert abs(box.width / box.height - w / h) < 0.05
    assert box.height == size[0] or box.width == size[1]  # touches the input on one axis
    # Content is centred, the rest is zero.
    assert abs(box.top - (size[0] - box.height - box.top)) <= 1
    assert abs(box.left - (size[1] - box.width - box.left)) <= 1
    pad = np.ones(size, bool)
    pad[box.top : box.top + box.height, box.left : box.left + box.width] = False
    assert (boxed[pad] == 0).all()
    back = unletterbox(boxed[..., 0].astype(np.float32), box, (h, w))
    assert back.shape == (h, w)
    err = np.abs(back - img[..., 0].astype(np.float32))
    assert err[2:-2, 2:-2].mean() < 3.0  # a smooth ramp survives down- and up-scaling


def test_pick_variant_by_aspect():
    assert pick_variant(144, 176) == "square"
    assert pick_variant(480, 480) == "square"
    assert pick_variant(240, 426) == "landscape"
    assert pick_variant(1080, 1920) == "landscape"


def test_person_prompt_finds_people_words():
    assert person_prompt(["moving object", "a man", "dog"]) == "a man"
    assert person_prompt(["People"]) == "People"
    assert person_prompt(["moving object", "dog", "superman"]) is None


def test_smoothing_repairs_a_hesitant_frame_and_keeps_confident_ones():
    probs = np.full((7, 4, 4), 0.98, np.float32)
    probs[3] = 0.45  # flicker: the model hesitates on one frame
    out = smooth_probs(probs, sigma=1.0)
    assert out.shape == probs.shape and out.dtype == np.float32
    assert out[3].min() > 0.8  # confident neighbours win
    assert np.abs(out[0] - 0.98).max() < 0.05  # confident frames barely move
    assert smooth_probs(probs, sigma=0) is probs
    # An object that appears halfway stays sharp in time: confident 0s and 1s are not averaged into 0.5.
    step = np.concatenate([np.full((4, 2, 2), 0.01), np.full((4, 2, 2), 0.99)]).astype(np.float32)
    s = smooth_probs(step, sigma=0.7)
    assert (s[:4] < 0.35).all() and (s[4:] > 0.65).all()


class _FakeInterpreter:
    """Stands in for a TFLite interpreter: the "probability" is the input's red channel."""

    def __init__(self, shape):
        self.shape = shape
        self.x = None

    def get_input_details(self):
        return [{"index": 0, "shape": np.array((1,) + self.shape + (3,))}]

    def get_output_details(self):
        return [{"index": 1}]

    def set_tensor(self, index, value):
        assert index == 0 and value.dtype == np.float32 and value.shape == (1,) + self.shape + (3,)
        assert 0.0 <= value.min() and value.max() <= 1.0  # MediaPipe's 0..1 input range
        self.x = value

    def invoke(self):
        pass

    def get_tensor(self, index):
        return self.x[..., :1]


def test_run_selfie_maps_the_output_back_onto_the_frame():
    frames = np.stack([_smooth_image(120, 200)] * 2)
    probs = run_selfie(_FakeInterpreter((144, 256)), frames, out_size=(60, 100))
    assert probs.shape == (2, 60, 100) and probs.dtype == np.float32
    expected = frames[0, ::2, ::2, 0] / 255.0
    assert np.abs(probs[0] - expected)[2:-2, 2:-2].mean() < 0.02


def test_missing_model_or_interpreter_gives_none_and_logs_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(person, "_warned", set())
    with caplog.at_level(logging.INFO, logger="dataset_builder.ops.person"):
        assert load_selfie_model(tmp_path, "square") is None
        assert load_selfie_model(tmp_path, "square") is None
    assert sum("run workflows/fetch_cpu_models.py" in r.message for r in caplog.records) == 1
    (tmp_path / person.SELFIE_MODELS["square"]).write_bytes(b"not a model")
    monkeypatch.setattr(person, "_interpreter_class", lambda: None)
    assert load_selfie_model(tmp_path, "square") is None


def _rect(h, w, x0, y0, x1, y1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_merge_splits_a_crowd_region_into_people():
    """Synthetic GT: three people side by side; U^2-Net merged two of them into one blob."""
    h, w = 60, 120
    gt = [_rect(h, w, 10, 10, 30, 55), _rect(h, w, 32, 12, 50, 55), _rect(h, w, 80, 8, 100, 55)]
    blob = gt[0] | gt[1] | _rect(h, w, 28, 30, 34, 40)  # merged, with the gap between them filled
    people = [(g.copy(), 0.9) for g in gt]
    out = person.merge_person_masks([(blob, "person", 0.95), (gt[2], "person", 0.8)], people)
    best = [max(person._iou(m, g) for m, _, _ in out) for g in gt]
    assert best == [1.0, 1.0, 1.0]
    assert len(out) == 3 and all(label == "person" for _, label, _ in out)
    assert not any(person._iou(m, blob) > 0.9 for m, _, _ in out)  # the merged blob is gone


def test_merge_keeps_single_person_regions_riders_and_objects():
    h, w = 60, 120
    body = _rect(h, w, 10, 5, 30, 55)
    player = body | _rect(h, w, 30, 10, 40, 20)  # U^2-Net region: the player with the racket
    rider = _rect(h, w, 60, 5, 80, 40) | _rect(h, w, 55, 35, 90, 58)  # person on a horse
    cup = _rect(h, w, 100, 40, 110, 50)
    people = [(body, 0.9), (_rect(h, w, 60, 5, 80, 40), 0.8)]
    out = person.merge_person_masks(
        [(player, "person", 0.9), (rider, "person and horse", 0.9), (cup, "cup", 0.7)], people)
    assert [label for _, label, _ in out] == ["person", "person and horse", "cup"]
    assert out[0][0] is player and out[1][0] is rider and out[2][0] is cup  # the racket stays, the horse too


def test_merge_adds_an_unexplained_person_once_and_keeps_a_wrong_match():
    h, w = 60, 120
    far = _rect(h, w, 90, 20, 100, 50)
    blob = _rect(h, w, 0, 0, 60, 60)  # a large "person" region the person mask barely overlaps
    small = _rect(h, w, 5, 5, 15, 15)
    out = person.merge_person_masks([(blob, "person", 0.9)], [(far, 0.7), (small, 0.6), (far.copy(), 0.5)])
    assert out[0][0] is blob
    added = [m for m, _, _ in out[1:]]
    assert len(added) == 1 and person._iou(added[0], far) == 1.0  # the duplicate person is not added twice


def test_person_net_off_or_missing_is_none_with_one_warning(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(person, "_warned", set())
    assert person.load_person_net("none", tmp_path) is None
    with caplog.at_level(logging.WARNING, logger=person.__name__):
        assert person.load_person_net("modnet", tmp_path) is None
        assert person.load_person_net("modnet", tmp_path) is None
    lines = [r.getMessage() for r in caplog.records if "person model off" in r.getMessage()]
    assert len(lines) == 1 and "modnet.onnx" in lines[0]
    assert person.load_person_net("selfie", tmp_path) is None  # logged at INFO by load_selfie_model
