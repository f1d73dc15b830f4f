import json

import numpy as np
import pytest

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


def _write(path, frames, fmt, codec="libx264", fps=25):
    import av

    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    from dataset_builder.samples.synthetic import make_synthetic_clip

    root = tmp_path_factory.mktemp("damaged")
    frames = make_synthetic_clip(seed=1, num_frames=100, height=96, width=144, num_objects=1).frames
    out = {}
    for fmt, ext, codec in [("matroska", "mkv", "libx264"), ("mp4", "mp4", "libx264"), ("avi", "avi", "mpeg4")]:
        data = _write(root / f"full.{ext}", frames, fmt, codec)
        (root / f"trunc.{ext}").write_bytes(data[: int(len(data) * 0.4)])
        middle = bytearray(data)
        middle[len(data) // 3: len(data) // 2] = bytes(len(data) // 2 - len(data) // 3)
        (root / f"corrupt.{ext}").write_bytes(bytes(middle))
        out[ext] = root
    return root


@pytest.mark.parametrize("name", ["trunc.mkv", "trunc.avi", "corrupt.mp4", "corrupt.mkv", "corrupt.avi"])
@pytest.mark.parametrize("detect_cuts", [True, False])
def test_truncated_or_corrupt_files_are_rejected_with_frame_counts(damaged, name, detect_cuts):
    cfg = ClipConfig(num_frames=8, height=32, width=48, max_clips_per_video=2, detect_cuts=detect_cuts)
    states = _states(SampleClips(cfg, "cfg")({"uri": np.array([str(damaged / name)])}))
    assert [(s.rejected, s.rejects[0].reason) for s in states] == [(True, "truncated")]
    assert "of 100 frames" in states[0].rejects[0].detail
    full = _states(SampleClips(cfg, "cfg")({"uri": np.array([str(damaged / ("full." + name.split(".")[1]))])}))
    assert len(full) == 2 and not any(s.rejected for s in full)


def test_each_video_is_decoded_once(bikes_path, monkeypatch):
    from dataset_builder.stages import sample_clips

    opened = []
    real = sample_clips.iter_frames

    def counting(path):
        opened.append(str(path))
        return real(path)

    monkeypatch.setattr(sample_clips, "iter_frames", counting)
    for detect_cuts in (True, False):
        opened.clear()
        cfg = ClipConfig(num_frames=8, height=32, width=48, max_clips_per_video=3, detect_cuts=detect_cuts)
        assert len(SampleClips(cfg, "cfg")({"uri": np.array([str(bikes_path)])})["meta"]) == 3
        assert opened == [str(bikes_path)]


def test_manifest_rejects_and_size_limits_become_reject_rows(bikes_path):
    batch = {"uri": np.array([str(bikes_path), "/x/copy.mp4"]), "content_hash": np.array(["", ""]),
             "reason": np.array(["", "duplicate_input"]), "detail": np.array(["", "byte-identical to /x/a.mp4"])}
    small = SampleClips(ClipConfig(num_frames=8, height=32, width=48), "cfg", limits={"max_pixels": 640 * 200})
    states = _states(small(batch))
    assert [(s.source_uri, s.rejects[0].reason) for s in states] == [
        (str(bikes_path), "too_large"), ("/x/copy.mp4", "duplicate_input")]
    assert "640x272 exceeds input.max_pixels" in states[0].rejects[0].detail
    assert states[1].rejects[0].detail == "byte-identical to /x/a.mp4"
    short = SampleClips(ClipConfig(num_frames=8, height=32, width=48), "cfg", limits={"max_duration_s": 5})
    assert _states(short({"uri": np.array([str(bikes_path)])}))[0].rejects[0].reason == "too_long"
