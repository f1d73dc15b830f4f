"""The shared post-processing (matte -> inpaint -> layer_qa) on synthetic ground truth, and its place in
every profile's stage plan."""

from pathlib import Path

import numpy as np
import pytest

from dataset_builder.config import BuildConfig, QAConfig, load_build_config
from dataset_builder.ops.alpha import edge_band
from dataset_builder.pipeline import stage_plan
from dataset_builder.samples.synthetic import make_synthetic_clip
from dataset_builder.stages.base import ClipState, ObjectState, batch_from_rows, rows_from_batch
from dataset_builder.stages.caption import CaptionStage
from dataset_builder.stages.encode import EncodeStage
from dataset_builder.stages.filter_foreground import FilterForegroundStage
from dataset_builder.stages.inpaint import InpaintStage
from dataset_builder.stages.layer_qa import LayerQAStage
from dataset_builder.stages.matte import MatteStage

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
T, H, W = 10, 96, 144


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_every_profile_runs_the_shared_post_processing(profile):
    cfg = load_build_config(CONFIGS / f"{profile}.yaml")
    order = [cls for cls, _, _ in stage_plan(cfg)]
    for cls in (MatteStage, LayerQAStage):
        assert order.count(cls) == 1
    i = order.index
    assert i(FilterForegroundStage) < i(MatteStage) < i(InpaintStage) < i(LayerQAStage) < i(CaptionStage) \
        < i(EncodeStage)
    qa_kwargs = dict(stage_plan(cfg)[i(LayerQAStage)][1])
    assert qa_kwargs["qa"] == cfg.qa and qa_kwargs["postprocess"] == cfg.postprocess


@pytest.fixture(scope="module")
def clip():
    return make_synthetic_clip(seed=2, num_frames=T, height=H, width=W, num_objects=1, camera_pan=True)


def _row(clip, bg):
    hard = (clip.alpha >= 128).astype(np.uint8) * 255
    state = ClipState(clip_id="c", source_uri="/s.mp4", fps=8.0, num_frames=T, height=H, width=W,
                      objects=[ObjectState(object_id=0, label="ball", score=1.0)])
    return batch_from_rows([{"meta": state.model_dump_json(), "frames": clip.frames, "masks": hard[None],
                             "backgrounds": bg[None]}])


def _run(stage, batch):
    row = rows_from_batch(stage(batch))[0]
    return ClipState.model_validate_json(row["meta"]), row


def test_matte_gives_hard_core_and_thin_band(clip):
    _, row = _run(MatteStage({"alpha_band": 2}), _row(clip, clip.bg))
    alpha = row["masks"][0]
    hard = clip.alpha >= 128
    band = np.stack([edge_band(a, 2) for a in hard.astype(np.uint8) * 255])
    assert not ((alpha > 0) & (alpha < 255) & ~band).any()
    assert np.array_equal(alpha[~band] >= 128, hard[~band])


def test_layer_qa_keeps_a_clean_sample_with_object_colour_in_fg(clip):
    state, row = _run(LayerQAStage(), MatteStage()(_row(clip, clip.bg)))
    assert not state.rejected, state.rejects
    scores = state.objects[0].scores
    assert scores["qa_bg_remnant"] < QAConfig().max_bg_remnant
    assert scores["qa_recompose_psnr"] > 30
    alpha, fg = row["masks"][0], row["foregrounds"][0]
    band = (alpha > 0) & (alpha < 255)
    err_est = np.abs(fg[band].astype(int) - clip.fg[band]).mean()
    err_raw = np.abs(clip.frames[band].astype(int) - clip.fg[band]).mean()
    assert err_est < 0.7 * err_raw, (err_est, err_raw)


def test_layer_qa_rejects_a_bg_that_still_shows_the_object(clip):
    state, row = _run(LayerQAStage(), _row(clip, clip.frames.copy()))  # "inpainting" that removed nothing
    assert state.rejected and not state.objects and len(row["foregrounds"]) == 0
    obj_rejects = [r for r in state.rejects if r.object_id == 0]
    assert [r.reason for r in obj_rejects] == ["qa_bg_remnant"]
    assert "qa_bg_remnant=" in obj_rejects[0].detail


def test_gate_off_keeps_scores_but_rejects_nothing(clip):
    cfg = BuildConfig.model_validate({"qa": {"gate": False}})
    state, _ = _run(LayerQAStage(cfg.postprocess, cfg.qa), _row(clip, clip.frames.copy()))
    assert not state.rejected and state.objects[0].scores["qa_bg_remnant"] > QAConfig().max_bg_remnant


def test_layer_qa_rejects_an_identity_switch_with_its_reason(clip):
    """The mask jumps from the moving object to a differently coloured static patch halfway through:
    the colour-consistency score names it (an area or IoU check cannot: both masks are the same size)."""
    hard = (clip.alpha >= 128).astype(np.uint8) * 255
    frames = clip.frames.copy()
    switched = hard.copy()
    ys, xs = np.nonzero(hard[0])
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    patch = np.zeros_like(hard[0])
    patch[H - h - 2:H - 2, 2:2 + w] = hard[0][ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    frames[:, patch > 0] = (30, 200, 40)
    switched[T // 2:] = patch
    row = batch_from_rows([{**rows_from_batch(_row(clip, clip.bg))[0], "frames": frames, "masks": switched[None]}])
    state, _ = _run(LayerQAStage(), row)
    reasons = [r.reason for r in state.rejects if r.object_id == 0]
    assert state.rejected and "qa_color_consistency" in reasons, state.rejects
    ok, _ = _run(LayerQAStage(), _row(clip, clip.bg))
    assert ok.objects[0].scores["qa_color_consistency"] > QAConfig().min_color_consistency
