"""Source readers in their real layouts: VideoMatte240K / fg+alpha pairs, image-matting sets, official MuLAn
pickles, coarse QA gating. Every malformed entry must come out as a reject with a reason."""

from __future__ import annotations

import gzip
import pickle
import zlib

import cv2
import numpy as np
import pytest

from dataset_builder.derived.sources import coarse_qa, image_matting, mulan, video_matting
from dataset_builder.derived.sources.base import SourceError
from dataset_builder.io.video import encode_rgb
from dataset_builder.samples.derived_layouts import mulan_annotation
from dataset_builder.samples.synthetic import make_synthetic_clip


def write_video(path, frames):
    path.parent.mkdir(parents=True, exist_ok=True)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    path.write_bytes(encode_rgb(frames, 8.0, crf=12))


def save(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[..., ::-1] if image.ndim == 3 else image)


@pytest.fixture(scope="module")
def clip():
    return make_synthetic_clip(seed=3, num_frames=6, height=48, width=64, camera_pan=False)


# -- video matting -----------------------------------------------------------------------------------
def test_videomatte_layout_pairs_videos_and_frame_folders_and_flags_orphans(tmp_path, clip):
    split = tmp_path / "VideoMatte240K" / "train"
    write_video(split / "fgr" / "0000.mp4", clip.fg)
    write_video(split / "pha" / "0000.mp4", clip.alpha)
    for t in range(6):  # the JPEG release: one folder of frames per clip
        save(split / "fgr" / "0001" / f"{t:05d}.png", clip.fg[t])
        save(split / "pha" / "0001" / f"{t:05d}.png", clip.alpha[t])
    write_video(split / "fgr" / "0002.mp4", clip.fg)  # no alpha
    write_video(split / "pha" / "0003.mp4", clip.alpha)  # no foreground
    refs, problems = video_matting.discover_video_matting(tmp_path / "VideoMatte240K")
    assert [r.clip_id for r in refs] == ["train/0000", "train/0001"]
    assert sorted((p.reason, p.uri.rsplit("/", 2)[-2] + "/" + p.uri.rsplit("/", 1)[-1]) for p in problems) == [
        ("missing_alpha", "fgr/0002.mp4"), ("missing_foreground", "pha/0003.mp4")]

    fg, alpha, _ = video_matting.read_matting_clip(refs[0].fg, refs[0].alpha, start=1, count=4)
    assert fg.shape == (4, 48, 64, 3) and alpha.shape == (4, 48, 64)
    assert np.abs(alpha.astype(int) - clip.alpha[1:5]).mean() < 3  # H.264 alpha, as VideoMatte240K ships it
    fg, alpha, _ = video_matting.read_matting_clip(refs[1].fg, refs[1].alpha, count=6)
    assert np.array_equal(alpha, clip.alpha)  # lossless PNG frames


def test_video_matting_malformed_entries_raise_with_reasons(tmp_path, clip):
    write_video(tmp_path / "fg.mp4", clip.fg)
    write_video(tmp_path / "alpha_small.mp4", clip.alpha[:, :32, :32])
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 50)
    cases = [(tmp_path / "alpha_small.mp4", 4, "size_mismatch"), (tmp_path / "broken.mp4", 4, "alpha_unreadable"),
             (tmp_path / "fg.mp4", 50, "too_short"), (tmp_path / "missing.mp4", 4, "alpha_unreadable")]
    for alpha, count, reason in cases:
        with pytest.raises(SourceError) as info:
            video_matting.read_matting_clip(tmp_path / "fg.mp4", alpha, count=count)
        assert info.value.reason == reason


def test_generic_dirs_and_suffix_layouts(tmp_path, clip):
    write_video(tmp_path / "dirs" / "fg" / "a.mp4", clip.fg)
    write_video(tmp_path / "dirs" / "alpha" / "a.mov", clip.alpha)  # any video extension
    refs, problems = video_matting.discover_video_matting(tmp_path / "dirs", "dirs", "fg", "alpha")
    assert [r.clip_id for r in refs] == ["a"] and not problems
    write_video(tmp_path / "sfx" / "shot1_fg.mp4", clip.fg)
    write_video(tmp_path / "sfx" / "shot1_alpha.mp4", clip.alpha)
    write_video(tmp_path / "sfx" / "shot2_fg.mp4", clip.fg)
    refs, problems = video_matting.discover_video_matting(tmp_path / "sfx", "suffix")
    assert [r.clip_id for r in refs] == ["shot1"] and [p.reason for p in problems] == ["missing_alpha"]
    assert video_matting.discover_video_matting(tmp_path / "nope")[1][0].reason == "source_missing"


# -- image matting -----------------------------------------------------------------------------------
def test_image_matting_layouts_am2k_p3m_d646(tmp_path, clip):
    image, alpha, fg = clip.frames[0], clip.alpha[0], clip.fg[0]
    save(tmp_path / "AM-2k" / "train" / "original" / "m_1.jpg", image)
    save(tmp_path / "AM-2k" / "train" / "mask" / "m_1.png", alpha)
    save(tmp_path / "AM-2k" / "train" / "original" / "m_2.jpg", image)  # no mask
    save(tmp_path / "P3M-10k" / "train" / "blurred_image" / "p_1.jpg", image)
    save(tmp_path / "P3M-10k" / "train" / "mask" / "p_1.png", alpha)
    save(tmp_path / "D646" / "Train" / "FG" / "d_1.png", fg)
    save(tmp_path / "D646" / "Train" / "GT" / "d_1.png", alpha)
    save(tmp_path / "D646" / "Train" / "FG" / "d_2.png", fg)
    save(tmp_path / "D646" / "Train" / "GT" / "d_2.png", alpha)
    refs, problems = image_matting.discover_image_matting(tmp_path / "AM-2k")
    assert [(r.item_id, r.kind) for r in refs] == [("train/m_1", "image")]
    assert [(p.reason, p.uri.endswith("m_2.jpg")) for p in problems] == [("missing_alpha", True)]
    refs, _ = image_matting.discover_image_matting(tmp_path / "P3M-10k")
    got, got_alpha, bg = image_matting.load_matting_image(refs[0])
    assert bg is None and np.array_equal(got_alpha, alpha) and np.abs(got.astype(int) - image).mean() < 4
    refs, problems = image_matting.discover_image_matting(tmp_path / "D646")  # fg without any background
    assert not refs and [p.reason for p in problems] == ["no_background", "no_background"]
    save(tmp_path / "coco_bg" / "b1.jpg", clip.bg[0])
    refs, problems = image_matting.discover_image_matting(tmp_path / "D646", [tmp_path / "coco_bg" / "b1.jpg"])
    assert [(r.kind, r.bg.endswith("b1.jpg")) for r in refs] == [("fg", True), ("fg", True)] and not problems


def test_image_matting_p3m_validation_and_unpaired_entries_are_never_silently_dropped(tmp_path, clip):
    """P3M-500-NP ships ``original_image/`` + ``mask/``; an alpha without image and an alpha folder
    without any image folder are rejects too, so every entry ends in a sample or a reject."""
    image, alpha = clip.frames[0], clip.alpha[0]
    val = tmp_path / "P3M-10k" / "validation"
    save(val / "P3M-500-NP" / "original_image" / "np_1.jpg", image)
    save(val / "P3M-500-NP" / "mask" / "np_1.png", alpha)
    save(val / "P3M-500-NP" / "mask" / "np_2.png", alpha)  # its image is missing
    save(val / "odd" / "mask" / "o_1.png", alpha)  # no image/fg folder beside the masks
    refs, problems = image_matting.discover_image_matting(tmp_path / "P3M-10k")
    assert [(r.item_id, r.kind) for r in refs] == [("validation/P3M-500-NP/np_1", "image")]
    assert sorted((p.reason, p.uri.rsplit("/", 1)[-1]) for p in problems) == [
        ("missing_image", "np_2.png"), ("unknown_layout", "mask")]


def test_image_matting_size_mismatch_and_empty_alpha_are_errors(tmp_path, clip):
    save(tmp_path / "image" / "a.png", clip.frames[0])
    save(tmp_path / "alpha" / "a.png", clip.alpha[0][:20])
    save(tmp_path / "image" / "b.png", clip.frames[0])
    save(tmp_path / "alpha" / "b.png", np.zeros_like(clip.alpha[0]))
    (tmp_path / "image" / "c.png").write_bytes(b"not a png")
    save(tmp_path / "alpha" / "c.png", clip.alpha[0])
    refs, _ = image_matting.discover_image_matting(tmp_path)
    reasons = []
    for ref in refs:
        with pytest.raises(SourceError) as info:
            image_matting.load_matting_image(ref)
        reasons.append(info.value.reason)
    assert reasons == ["size_mismatch", "empty_alpha", "image_unreadable"]


# -- MuLAn -------------------------------------------------------------------------------------------
def test_mulan_pickle_rebuilds_the_documented_layers(tmp_path):
    image, annotation = mulan_annotation(5, 48, 64)
    stack = mulan.decompose(image, annotation)
    assert len(stack.instances) == 2 and stack.captions["fg"][0].startswith("a ")
    assert stack.captions["bg"] == annotation["background"]["blip2"]
    for k, layer in enumerate(stack.instances):
        inst = annotation["instances"][k]
        assert np.array_equal(layer[..., 3], inst["instance_alpha"])
        expected = np.clip(image * inst["original_image_mask"][..., None] + inst["inpainted_delta"], 0, 255)
        assert np.array_equal(layer[..., :3], expected.astype(np.uint8))
    # composing the rebuilt stack gives the base image back (occluded parts only inpainted)
    from dataset_builder.derived.image_layers import composite_over
    assert np.abs(composite_over(stack.background, stack.instances) - image).max() <= 1
    assert mulan.decompose(image, annotation, caption_model="llava").captions["blend"] == annotation["image"]["llava"]


def test_mulan_compression_variants_and_malformed_pickles(tmp_path):
    image, annotation = mulan_annotation(6, 32, 48)
    blob = pickle.dumps(annotation)
    for name, data in (("a.p.zl", zlib.compress(blob)), ("b.pkl", blob), ("c.p", gzip.compress(blob))):
        (tmp_path / name).write_bytes(data)
        assert mulan.load_annotation(tmp_path / name)["image"] == annotation["image"]

    class Exploit:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    bad = {
        "corrupt.p.zl": (b"\x78\x9c" + b"garbage" * 10, "corrupt_annotation"),
        "truncated.p.zl": (zlib.compress(blob)[:200], "corrupt_annotation"),
        "list.p.zl": (zlib.compress(pickle.dumps([1, 2])), "annotation_schema"),
        "exploit.p.zl": (zlib.compress(pickle.dumps({"x": Exploit()})), "unsafe_pickle"),
    }
    for name, (data, reason) in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SourceError) as info:
            mulan.load_annotation(tmp_path / name)
        assert info.value.reason == reason, name
    no_instances = {k: v for k, v in annotation.items() if k != "instances"}
    small = dict(annotation, instances={0: dict(annotation["instances"][0], instance_alpha=np.zeros((5, 5)))})
    for broken, reason in ((no_instances, "annotation_schema"), (small, "size_mismatch")):
        with pytest.raises(SourceError) as info:
            mulan.decompose(image, broken)
        assert info.value.reason == reason


def test_mulan_discovery_pairs_by_coco_stem_and_csv(tmp_path):
    image, annotation = mulan_annotation(7, 32, 48)
    save(tmp_path / "coco" / "val2017" / "000000000139.jpg", image)
    (tmp_path / "ann").mkdir()
    for stem in ("000000000139", "000000000999"):
        (tmp_path / "ann" / f"{stem}.p.zl").write_bytes(zlib.compress(pickle.dumps(annotation)))
    (tmp_path / "ann" / "readme.txt").write_text("not an annotation")
    pairs, problems = mulan.discover_mulan([str(tmp_path / "ann")], [str(tmp_path / "coco")])
    assert [p[0].endswith("val2017/000000000139.jpg") for p in pairs] == [True]
    assert [(p.reason, p.uri.endswith("999.p.zl")) for p in problems] == [("missing_base_image", True)]
    (tmp_path / "pairs.csv").write_text("image,annotation\ncoco/val2017/000000000139.jpg,ann/000000000139.p.zl\n")
    assert mulan.read_pairs_csv(tmp_path / "pairs.csv", "image", "annotation") == [
        (str(tmp_path / "coco/val2017/000000000139.jpg"), str(tmp_path / "ann/000000000139.p.zl"))]
    with pytest.raises(ValueError, match="columns"):
        mulan.read_pairs_csv(tmp_path / "pairs.csv", "path", "annotation")
    _, problems = mulan.discover_mulan([str(tmp_path / "anns")], [str(tmp_path / "coco")])  # mistyped folder
    assert [p.reason for p in problems] == ["source_missing"]


# -- coarse QA ---------------------------------------------------------------------------------------
def test_coarse_qa_is_precision_first():
    mins, maxs = {"alpha_stability": 0.8}, {"bg_remnant": 0.05}
    assert coarse_qa.qa_verdict({"alpha_stability": 0.9, "bg_remnant": 0.01}, mins, maxs) is None
    assert coarse_qa.qa_verdict({"alpha_stability": 0.7, "bg_remnant": 0.01}, mins, maxs)[0] == "qa_below_threshold"
    assert coarse_qa.qa_verdict({"alpha_stability": 0.9, "bg_remnant": 0.2}, mins, maxs)[0] == "qa_above_threshold"
    assert coarse_qa.qa_verdict({"bg_remnant": 0.01}, mins, maxs)[0] == "qa_score_missing"
    assert coarse_qa.qa_verdict({"alpha_stability": float("nan"), "bg_remnant": 0.0}, mins, maxs)[0] == \
        "qa_score_missing"
    assert coarse_qa.qa_verdict({"bg_remnant": 0.01}, mins, maxs, require=False) is None


def test_mulan_instance_captions_give_short_labels():
    from dataset_builder.derived.image_layers import caption_label

    assert caption_label("a black dog.") == "black dog"
    assert caption_label("An ellipse") == "ellipse"
    assert caption_label("a man riding a red bicycle down the road") == ""  # a sentence is not a label


def test_window_starts_spread_over_the_clip():
    assert video_matting.window_starts(100, 16, 1, 1) == [0]
    assert video_matting.window_starts(100, 16, 1, 3) == [0, 42, 84]
    assert video_matting.window_starts(100, 16, 3, 2) == [0, 54]  # span (16 - 1) * 3 + 1 = 46
    assert video_matting.window_starts(17, 16, 1, 5) == [0, 1]  # only two distinct windows fit
    assert video_matting.window_starts(15, 16, 1, 2) == []
    assert video_matting.window_starts(40, 16, 1, 2, first=10) == [10, 24]
