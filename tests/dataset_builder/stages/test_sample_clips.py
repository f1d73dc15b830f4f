import json

import numpy as np

from dataset_builder.config import ClipConfig
from dataset_builder.stages.base import ClipState
from dataset_builder.stages.sample_clips import SampleClips


def _states(batch):
    return [ClipState.model_validate_json(m) for m in batch["meta"]]


def test_clips_never_span_a_shot_cut(bikes_path):
    stage = SampleClips(ClipConfig(num_frames=16, height=32, width=48, max_clips_per_video=4), "cfg")
    states = _states(stage({"uri": np.array([str(bikes_path)])}))
    cuts = (30, 76, 137, 187, 242)  # hard cuts in bikes.mp4
    assert len(states) == 4
    for s in states:
        last = s.start_frame + (s.num_frames - 1) * s.frame_stride
        assert not any(s.start_frame < c <= last for c in cuts), (s.start_frame, last)


def test_real_video_becomes_resized_clips(bikes_path):
    stage = SampleClips(ClipConfig(num_frames=8, height=64, width=96, max_clips_per_video=3), "cfg")
    batch = stage({"uri": np.array([str(bikes_path)])})
    states = _states(batch)
    assert len(states) == 3 and not any(s.rejected for s in states)
    assert batch["frames"].shape == (3, 8, 64, 96, 3)
    assert states[0].frame_stride == 3 and states[0].fps == 25.0 / 3  # auto stride for 8 fps
    assert len({s.clip_id for s in states}) == 3
    assert [s.start_frame for s in states] == sorted(s.start_frame for s in states)
    # frames differ between clips (they come from different times)
    assert np.abs(batch["frames"][0].astype(int) - batch["frames"][2]).mean() > 5


def test_committed_clips_are_skipped_before_decoding(bikes_path):
    cfg = ClipConfig(num_frames=8, height=32, width=48, max_clips_per_video=2)
    first = _states(SampleClips(cfg, "cfg")({"uri": np.array([str(bikes_path)])}))
    again = SampleClips(cfg, "cfg", frozenset({first[0].clip_id}))({"uri": np.array([str(bikes_path)])})
    assert [s.clip_id for s in _states(again)] == [first[1].clip_id]
    none = SampleClips(cfg, "cfg", frozenset(s.clip_id for s in first))({"uri": np.array([str(bikes_path)])})
    assert len(none["meta"]) == 0


def test_unreadable_and_too_short_inputs_become_rejects(tmp_path, bikes_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 2048)
    cfg = ClipConfig(num_frames=300, height=32, width=48, frame_stride=1)
    batch = SampleClips(cfg, "cfg")({"uri": np.array([str(junk), str(bikes_path)])})
    states = _states(batch)
    assert [(s.rejected, s.rejects[0].stage, s.rejects[0].reason) for s in states] == [
        (True, "clip", "unreadable"), (True, "clip", "too_short")]
    assert "junk.mp4" in states[0].rejects[0].detail and "a clip needs 300" in states[1].rejects[0].detail
    assert batch["frames"][0].size == 0
    json.loads(batch["meta"][0])
