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
