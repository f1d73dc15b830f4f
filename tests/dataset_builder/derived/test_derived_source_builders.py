"""The derived builders fed by the real-layout sources (no Ray): copy-paste from a VideoMatte240K-layout set
(motion kept / static frame duplication), QA-gated coarse fgs, the stage-3 mix cap; image layers from
matting sets and official MuLAn pickles; and both builders end to end on the bundled sample layouts."""

from __future__ import annotations

import pickle
import zlib

import numpy as np
import pytest
from .conftest import H, T, W

from dataset_builder.derived import copypaste as cp
from dataset_builder.derived import image_layers as il
from dataset_builder.derived.common import UnitState
from dataset_builder.derived.config import CopyPasteConfig, ImageLayersConfig
from dataset_builder.derived.pipeline import run_copypaste, run_image_layers
from dataset_builder.io import layout
from dataset_builder.samples.derived_layouts import mulan_annotation, write_all


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    write_all(root, num_frames=T + 2, height=96, width=128)
    return root


def run_unit(stage, unit_id: str, task: dict) -> tuple[UnitState, dict]:
    meta = UnitState(unit_id=unit_id, source_uri="x", task=task).model_dump_json()
    out = stage({"meta": np.array([meta], dtype=object)})
    return UnitState.model_validate_json(out["meta"][0]), {k: v[0] for k, v in out.items() if k != "meta"}


def cp_cfg(layouts, **extra) -> CopyPasteConfig:
    data = {"input": {"fg_matting": [{"root": str(layouts / "videomatte"), "label": "shape"}], "fg_shards": [],
                      "bg_shards": [], "bg_videos": [str(layouts / "videomatte" / "train" / "pha" / "0000.mp4")]},
            "frames": {"num_frames": T, "height": H, "width": W}, "paste": {"seed": 1}}
    for key, value in extra.items():
        data.setdefault(key, {}).update(value)
    return CopyPasteConfig.model_validate(data)


def test_plan_reads_videomatte_layout_and_rejects_the_orphan(layouts):
    plan = cp.plan_copypaste(cp_cfg(layouts, paste={"motion": "both"}))
    assert plan.fg_sources == 3 and plan.bg_sources == 1
    assert [(r.reason, r.source_uri.endswith("fgr/0003.mp4")) for r in plan.rejects] == [("missing_alpha", True)]
    assert sorted(p.motion for p in plan.pairs) == ["static"] * 3 + ["video"] * 3
    assert len({p.unit_id for p in plan.pairs}) == 6


def test_matting_fg_keeps_motion_or_becomes_a_static_clip(layouts):
    cfg = cp_cfg(layouts, paste={"motion": "both", "harmonize": 0.0})
    pairs = {(p.fg.uri.rsplit("/", 1)[-1], p.motion): p for p in cp.plan_copypaste(cfg).pairs}
    stage = cp.CopyPasteStage(cfg.model_dump(mode="json"))
    state, row = run_unit(stage, "u-video", pairs[("0000.mp4", "video")].model_dump())
    assert not state.rejected, state.rejects
    rec = state.samples[0]
    assert rec.motion_scale == 0.0 and "video_matting" in rec.tags and row["alpha"].shape == (1, T, H, W)
    cx = [np.nonzero(a.any(0))[0].mean() for a in row["alpha"][0]]
    assert abs(cx[-1] - cx[0]) > 2  # the object still moves across the clip
    assert rec.captions.fg and "shape" in rec.captions.fg.lower()  # captioner names the set's label

    state, row = run_unit(stage, "u-static", pairs[("0000.mp4", "static")].model_dump())
    rec = state.samples[0]
    assert rec.motion_scale == 1.0 and {"static", "frame_duplicated"} <= set(rec.tags)
    assert row["alpha"].shape == (1, 1, H, W) and row["bg"].shape == (1, 1, H, W, 3)  # repeated at encode
    placement = rec.provenance.model_dump()["placement"]
    assert placement["motion"] == "static" and 0 <= placement["fg_frame"] < T and 0 <= placement["bg_frame"] < T
    assert "staying in place" in rec.captions.fg


def test_static_clip_is_placed_like_its_video(layouts):
    """The duplicated frame keeps the object's size in the video: scaled by the all-frames box, not blown up
    to fill the frame by the (smaller) box of the one frame."""
    from dataset_builder.derived.sources.video_matting import read_matting_clip

    cfg = cp_cfg(layouts, paste={"motion": "static", "scale_range": [1.0, 1.0]})
    pair = next(p for p in cp.plan_copypaste(cfg).pairs if p.fg.uri.endswith("0000.mp4"))
    state, _ = run_unit(cp.CopyPasteStage(cfg.model_dump(mode="json")), "u", pair.model_dump())
    fg, alpha, _ = read_matting_clip(pair.fg.uri, pair.fg.alpha_uri, count=T)
    y0, y1, x0, x1 = cp.object_box(alpha)
    fit_all_frames = min(H / (y1 - y0), W / (x1 - x0))
    assert state.samples[0].scores["paste_scale"] == pytest.approx(fit_all_frames)


def test_coarse_fgs_are_gated_by_qa_scores(coarse_dir, layouts):
    cfg = cp_cfg(layouts, input={"fg_matting": [], "fg_shards": [str(coarse_dir)], "bg_shards": [str(coarse_dir)]})
    plan = cp.plan_copypaste(cfg)  # the fixture's samples have no QA scores: precision first, none pasted
    assert not plan.pairs and {r.reason for r in plan.rejects} == {"qa_score_missing"} and len(plan.rejects) == 5
    cfg.input.coarse_qa.require_scores = False  # scores absent and tolerated: all pass
    assert len(cp.plan_copypaste(cfg).pairs) == 5


def test_mix_caps_copypaste_share_of_the_stage3_data(layouts, tmp_path):
    static = tmp_path / "static"
    run_image_layers(ImageLayersConfig.model_validate({
        "input": {"paths": [], "mulan": {"annotations": [str(layouts / "mulan" / "annotations")],
                                         "image_roots": [str(layouts / "mulan" / "coco")]}},
        "frames": {"num_frames": 2, "height": H, "width": W}, "output": {"dir": str(static)}}), use_ray=False)
    cfg = cp_cfg(layouts, paste={"motion": "both"}, mix={"static_datasets": [str(static)], "copypaste_share": 0.2})
    plan = cp.plan_copypaste(cfg)  # 4 static samples -> at most 1 copy-paste unit (20 % of 5)
    assert len(plan.pairs) == 1 and [r.reason for r in plan.rejects].count("over_mix_share") == 5
    cfg.mix.static_datasets = [str(tmp_path / "empty")]
    with pytest.raises(ValueError, match="no committed samples"):
        cp.plan_copypaste(cfg)


def il_cfg(layouts, **inputs) -> ImageLayersConfig:
    return ImageLayersConfig.model_validate({"input": {"paths": [], **inputs},
                                             "frames": {"num_frames": 2, "height": H, "width": W}})


def test_image_matting_entries_become_static_samples(layouts):
    cfg = il_cfg(layouts, matting=[{"root": str(layouts / "image_matting"), "label": "shape"}])
    tasks = il.discover_tasks(cfg.input)
    assert sorted(t.matting_kind or t.reason for t in tasks) == ["fg", "fg", "image", "image", "missing_alpha"]
    stage = il.ImageLayersStage(cfg.model_dump(mode="json"))
    for task in tasks:
        state, row = run_unit(stage, il.unit_id_for(task, "h"), task.model_dump())
        if task.kind == "invalid":
            assert state.rejected and state.rejects[0].reason == "missing_alpha"
            continue
        assert not state.rejected, state.rejects
        rec, alpha, bg = state.samples[0], row["alpha"][0, 0], row["bg"][0, 0].astype(int)
        assert rec.kind == "static" and rec.motion_scale == 1.0 and "matting" in rec.tags
        assert rec.provenance.model_dump()["alpha_uri"] == task.alpha
        from dataset_builder.derived.sources.image_matting import load_matting_image
        from dataset_builder.ops.clips import resize_frames
        image, gt_alpha, given_bg = load_matting_image(
            il.MattingImageRef("", task.matting_kind, task.path, task.alpha, task.bg))
        if task.matting_kind == "fg":  # a real background, used as is
            assert np.abs(bg - resize_frames(given_bg[None], H, W)[0]).max() <= 1
        else:  # the subject is gone from the inpainted bg: it differs from the photo where the object was
            photo = resize_frames(image[None], H, W)[0].astype(int)
            inside = alpha > 250
            assert np.abs(bg - photo)[inside].mean() > 20 and rec.scores["recompose_psnr"] > 25
        assert "shape" in rec.captions.fg.lower()


def test_official_mulan_pickles_feed_the_layer_stack_path(layouts, tmp_path):
    cfg = il_cfg(layouts, mulan={"annotations": [str(layouts / "mulan" / "annotations")],
                                 "image_roots": [str(layouts / "mulan" / "coco")]})
    tasks = il.discover_tasks(cfg.input)
    kinds = sorted((t.kind, t.reason) for t in tasks)
    assert kinds == [("invalid", "missing_base_image"), ("mulan", ""), ("mulan", ""), ("mulan", "")]
    stage = il.ImageLayersStage(cfg.model_dump(mode="json"))
    results = [run_unit(stage, il.unit_id_for(t, "h"), t.model_dump()) for t in tasks if t.kind == "mulan"]
    reasons = [s.rejects[0].reason for s, _ in results if s.rejected]
    assert reasons == ["corrupt_annotation"]
    good = [(s, r) for s, r in results if not s.rejected]
    assert len(good) == 2 and all(len(s.samples) == 2 for s, _ in good)  # one sample per instance layer
    state, row = good[0]
    rec = state.samples[0]
    assert {"mulan", "mulan_official"} <= set(rec.tags) and rec.captions.fg.startswith("a ")
    assert rec.captions.bg == "a textured striped backdrop"  # the release's BLIP-2 background caption


def test_bundled_layouts_build_end_to_end(layouts, tmp_path):
    frames = {"num_frames": 4, "height": H, "width": W}
    il_summary = run_image_layers(ImageLayersConfig.model_validate({
        "input": {"paths": [], "matting": [{"root": str(layouts / "image_matting")}],
                  "mulan": {"annotations": [str(layouts / "mulan" / "annotations")],
                            "image_roots": [str(layouts / "mulan" / "coco")]}},
        "frames": frames, "output": {"dir": str(tmp_path / "il")}}), use_ray=False)
    assert il_summary["samples_total"] == 8 and il_summary["rejects_total"] == 3
    reasons = sorted(r["reason"] for r in layout.read_rejects(tmp_path / "il").to_pylist())
    assert reasons == ["corrupt_annotation", "missing_alpha", "missing_base_image"]
    cp_summary = run_copypaste(cp_cfg(layouts, frames=frames, paste={"motion": "both"},
                                      output={"dir": str(tmp_path / "cp")}), use_ray=False)
    assert cp_summary["samples_total"] == 6 and cp_summary["rejects_total"] == 1
    again = run_copypaste(cp_cfg(layouts, frames=frames, paste={"motion": "both"},
                                 output={"dir": str(tmp_path / "cp")}), use_ray=False)
    assert again["samples_written_now"] == 0 and again["rejects_written_now"] == 0  # resume


def test_a_corrupt_pickle_with_an_unsafe_payload_never_runs(layouts, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    image, annotation = mulan_annotation(9, 32, 48)
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "000000000139.p.zl").write_bytes(zlib.compress(pickle.dumps(dict(annotation, x=Exploit()))))
    import shutil
    shutil.copytree(layouts / "mulan" / "coco", tmp_path / "coco")
    cfg = il_cfg(layouts, mulan={"annotations": [str(tmp_path / "ann")], "image_roots": [str(tmp_path / "coco")]})
    (task,) = il.discover_tasks(cfg.input)
    state, _ = run_unit(il.ImageLayersStage(cfg.model_dump(mode="json")), "u", task.model_dump())
    assert state.rejects[0].reason == "unsafe_pickle" and not marker.exists()


def test_default_coarse_gate_reads_the_coarse_qa_scores(tmp_path, layouts):
    """The default thresholds use the keys the coarse build writes (ops/qa.py): a haloed fg is not pasted."""
    from dataset_builder.io.shard_writer import ShardWriter

    from .conftest import coarse_sample

    good = {"fg_judge": 0.9, "qa_alpha_stability": 0.9, "qa_alpha_iou_min": 0.8, "qa_recompose_psnr": 35.0,
            "qa_empty_frames": 0.0, "qa_edge_band_px": 1.5, "qa_soft_visible_share": 0.1}
    with ShardWriter(tmp_path / "coarse", samples_per_shard=4) as writer:
        for index, scores in enumerate((good, dict(good, qa_soft_visible_share=0.5))):
            sample, _ = coarse_sample(index, source=index)
            sample.record.scores = scores
            writer.add_clip(sample.record.clip_id, [sample], [])
    cfg = cp_cfg(layouts, input={"fg_matting": [], "fg_shards": [str(tmp_path / "coarse")]})
    plan = cp.plan_copypaste(cfg)
    assert [p.fg.key for p in plan.pairs] == ["coarse000_0"]
    assert [(r.reason, r.detail.startswith("coarse001_0: qa_soft_visible_share=0.5")) for r in plan.rejects] == [
        ("qa_above_threshold", True)]


def test_several_windows_per_matting_clip(layouts):
    """Long matting clips give several fg sources (distinct windows), each paired; a clip shorter than one
    window is a too_short reject at planning."""
    cfg = cp_cfg(layouts)
    cfg.input.fg_matting[0].windows_per_clip = 3
    plan = cp.plan_copypaste(cfg)  # bundled clips have T + 2 frames: windows start at 0, 1, 2
    starts = sorted((p.fg.uri.rsplit("/", 1)[-1], p.fg.start_frame) for p in plan.pairs)
    assert starts == [(clip, s) for clip in ("0000.mp4", "0001.mp4", "0002") for s in (0, 1, 2)]
    assert len({p.unit_id for p in plan.pairs}) == 9
    single = {p.fg.id for p in cp.plan_copypaste(cp_cfg(layouts)).pairs}
    assert single <= {p.fg.id for p in plan.pairs}  # window 0 keeps the one-window id: earlier runs resume
    cfg.frames.num_frames = 64
    reasons = sorted(r.reason for r in cp.plan_copypaste(cfg).rejects)
    assert reasons == ["missing_alpha", "too_short", "too_short", "too_short"]
