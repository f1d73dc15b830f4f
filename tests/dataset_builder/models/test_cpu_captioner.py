"""CPU captions: class names, what stays in the bg, one camera motion per clip, no placeholders."""

import numpy as np
import pytest

from dataset_builder.config import BackendSpec
from dataset_builder.models.cpu.captioner import TemplateCaptioner, bg_content, describe_others
from dataset_builder.samples.synthetic import make_synthetic_clip


@pytest.fixture(scope="module")
def two():
    return make_synthetic_clip(seed=4, num_frames=8, height=96, width=144, num_objects=2, camera_pan=True)


def test_bg_caption_names_what_stays_and_camera_is_shared(two):
    cap = TemplateCaptioner(BackendSpec())
    alphas = two.object_alphas
    backgrounds = np.stack([two.frames, two.frames])  # content does not matter for the wording checks
    person, dog = cap.caption_objects(two.frames, alphas, backgrounds, ["person", "dog"], ["person", "sky"])
    assert "a dog" in person.bg.lower() and "a person" in dog.bg.lower()
    assert "dog" not in dog.bg and "empty" not in person.bg + dog.bg
    assert person.fg.count("person") == 1 and "dog" in dog.fg
    camera = lambda text: text.split("filmed with ")[1]  # noqa: E731
    assert camera(person.bg) == camera(dog.bg) == camera(person.blend) == camera(dog.blend)
    assert "with a dog" in person.blend


def test_placeholder_label_never_reaches_a_caption(two):
    cap = TemplateCaptioner(BackendSpec())
    out = cap.caption(two.frames, two.object_alphas[0], two.frames, "moving object", ["moving object", "person"])
    text = out.fg + out.bg + out.blend
    assert "moving object" not in text and "object" in out.fg
    # The unlabelled object may be the tagged person: the bg must not claim a person besides it.
    assert "person" not in out.bg and "empty" not in out.bg
    assert out.bg.split(" scene")[0] in ("A dark", "A bright", "An evenly lit")


def test_bg_content_counts_classes_and_adds_unclaimed_tagged_subjects():
    assert describe_others(["person", "person", "dog"]) == "two people and a dog"
    assert describe_others([]) == ""
    assert bg_content(0, ["car"], ["person", "static camera", "gray tones", "outdoor"]) == ["person"]
    assert bg_content(0, ["person", "person"], ["person"]) == ["person"]


def test_camera_of_a_static_shot_with_a_large_textured_object_is_static():
    """A box carried over a plain table, camera still: the corners are all on the box, and a camera
    measured on the whole blend followed it ("a camera panning ...")."""
    rng = np.random.default_rng(1)
    t, h, w, side = 10, 120, 180, 50
    texture = np.repeat(np.repeat(rng.integers(0, 256, (side // 5, side // 5, 3), dtype=np.uint8), 5, 0), 5, 1)
    frames = np.full((t, h, w, 3), 205, np.uint8)
    alpha = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        x = 8 + 11 * i
        frames[i, 35:35 + side, x:x + side] = texture
        alpha[i, 35:35 + side, x:x + side] = 255
    cap = TemplateCaptioner(BackendSpec()).caption(frames, alpha, np.full_like(frames, 205), "box", [])
    assert cap.bg.endswith("filmed with a static camera."), cap.bg
    assert "moving" in cap.fg and "to the right" in cap.fg


@pytest.mark.parametrize(("colour", "expected"), [((255, 140, 0), "An orange"), (None, "An object")])
def test_blend_caption_article_follows_the_next_word(colour, expected):
    """Seen on the opencv-doc box: "A orange and yellow object staying in place ..."."""
    t, h, w = 6, 60, 90
    frames = np.full((t, h, w, 3), 128, np.uint8)
    alpha = np.zeros((t, h, w), np.uint8)
    if colour is not None:
        frames[:, 20:40, 30:60] = colour
        alpha[:, 20:40, 30:60] = 255
    cap = TemplateCaptioner(BackendSpec()).caption(frames, alpha, frames, "salient object", [])
    assert cap.blend.startswith(expected), cap.blend
