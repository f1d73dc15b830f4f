import numpy as np
import pytest

from dataset_builder.ops.clips import (
    ClipPlanError,
    choose_stride,
    file_fingerprint,
    make_clip_id,
    plan_clips,
    resize_frames,
)


def test_choose_stride():
    assert choose_stride(25.0, 8.0, "auto") == 3
    assert choose_stride(0.0, 8.0, "auto") == 1
    assert choose_stride(30.0, 8.0, 2) == 2
    with pytest.raises(ValueError):
        choose_stride(30.0, 8.0, 0)


@pytest.mark.parametrize("total,frames,stride,max_clips", [(250, 16, 3, 4), (100, 16, 3, 4), (47, 16, 3, 4),
                                                          (1000, 16, 2, 3), (16, 16, 1, 2)])
def test_plans_are_in_bounds_and_disjoint(total, frames, stride, max_clips):
    plans = plan_clips(total, frames, stride, max_clips)
    assert 1 <= len(plans) <= max_clips
    used: set[int] = set()
    for plan in plans:
        idx = plan.frame_indices()
        assert len(idx) == frames and min(idx) >= 0 and max(idx) < total
        assert not used & set(range(idx[0], idx[-1] + 1))
        used |= set(range(idx[0], idx[-1] + 1))


def test_plan_spreads_over_video_and_lowers_stride_when_short():
    plans = plan_clips(1000, 16, 2, 3)
    assert plans[0].start_frame == 0 and plans[-1].frame_indices()[-1] == 999
    short = plan_clips(20, 16, 3, 2)
    assert short[0].frame_stride == 1
    with pytest.raises(ClipPlanError, match="10 frames"):
        plan_clips(10, 16, 1, 2)


def test_resize_crop_pad_stretch():
    frames = np.zeros((2, 100, 200, 3), np.uint8)
    frames[:, :, 90:110] = 255  # a centred bar survives the centre crop
    crop = resize_frames(frames, 50, 50, "crop")
    assert crop.shape == (2, 50, 50, 3) and crop[0, 25, 25, 0] == 255
    pad = resize_frames(frames, 100, 100, "pad")
    assert pad.shape == (2, 100, 100, 3) and pad[0, 0, 50].sum() == 0 and pad[0, 50, 50, 0] == 255
    assert resize_frames(frames, 30, 40, "stretch").shape == (2, 30, 40, 3)
    masks = np.zeros((2, 100, 200), np.uint8)
    assert resize_frames(masks, 50, 60).shape == (2, 50, 60)


def test_clip_id_depends_on_content_range_and_config(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"1" * 5000)
    b.write_bytes(b"1" * 5000)
    plan = plan_clips(100, 16, 1, 1)[0]
    assert make_clip_id(file_fingerprint(a), plan, "h") == make_clip_id(file_fingerprint(b), plan, "h")
    assert make_clip_id(file_fingerprint(a), plan, "h") != make_clip_id(file_fingerprint(a), plan, "h2")
    b.write_bytes(b"2" * 5000)
    assert file_fingerprint(a) != file_fingerprint(b)


def _collect(total, cuts, num_frames=4, stride=2, max_clips=3, watch=None):
    from dataset_builder.ops.clips import ShotClipCollector

    collector = ShotClipCollector(num_frames, stride, max_clips, keep=lambda f: f)
    for i in range(total):
        collector.feed(i, i, i in cuts)
        if watch is not None:
            watch.append(sum(len(w.frames) for w in collector.current + collector.fallback)
                         + sum(len(w.frames) for _, ws in collector.closed for w in ws if w.frames is not None))
    return collector.finish()


def test_streamed_clips_stay_inside_shots_and_keep_their_frames():
    cuts = {20, 33, 90}
    chosen = _collect(120, cuts, max_clips=5)
    assert len(chosen) == 5
    bounds = [0, 20, 33, 90, 120]
    for plan, frames in chosen:
        assert frames == plan.frame_indices()  # the kept frames are exactly the clip's frames
        shot = max(b for b in bounds if b <= plan.start_frame)
        assert plan.frame_indices()[-1] < min(b for b in bounds if b > shot)
    # the longest shot (33..90) is sampled first and more than once
    assert sum(33 <= p.start_frame < 90 for p, _ in chosen) >= 2


def test_streamed_selection_memory_is_bounded_by_clips_not_video_length():
    watch: list[int] = []
    chosen = _collect(20_000, {5000, 12_000}, num_frames=8, stride=3, max_clips=4, watch=watch)
    assert len(chosen) == 4
    assert max(watch) <= (2 * 4 + 1 + 2 + 4) * 8  # running shot cap + fallbacks + picks of closed shots
    starts = sorted(p.start_frame for p, _ in chosen)
    assert starts[-1] - starts[0] > 5000  # spread over the video, not bunched at a shot start


def test_short_shot_gets_a_slower_stride_instead_of_nothing():
    chosen = _collect(10, set(), num_frames=4, stride=3, max_clips=1)  # span at stride 3 is 10: fits
    assert [p.frame_stride for p, _ in chosen] == [3]
    chosen = _collect(8, set(), num_frames=4, stride=3, max_clips=1)  # only stride 2 fits in 8 frames
    assert [(p.frame_stride, f) for p, f in chosen] == [(2, [0, 2, 4, 6])]
    with pytest.raises(ClipPlanError, match="a clip needs 4"):
        _collect(3, set(), num_frames=4, stride=3, max_clips=1)
