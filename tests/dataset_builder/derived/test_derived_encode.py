"""Layer encoding of derived samples: exact static frames, fg fill, lossless alpha, payload round trip."""

from __future__ import annotations

import numpy as np
from .conftest import H, W, synthetic_image

from dataset_builder.derived.common import EncodeLayersStage, UnitState
from dataset_builder.io.shard_writer import samples_from_payload
from dataset_builder.io.video import encode_static_rgb
from dataset_builder.io.video import decode_bytes, encode_rgb
from schemas import Captions, LayeredSample, Provenance


def record(key: str, num_frames: int) -> LayeredSample:
    return LayeredSample(key=key, clip_id="u", object_id=0, kind="static", label="x", num_frames=num_frames,
                         height=H, width=W, fps=8.0, captions=Captions(fg="a", bg="b", blend="c"),
                         motion_scale=1.0, provenance=Provenance(source_uri="s", start_frame=0, config_hash="h"))


def test_static_encoding_gives_identical_frames():
    frame, _ = synthetic_image(H, W, seed=0)
    data = encode_static_rgb(frame, 6, 8.0)
    exact = decode_bytes(data).astype(int)
    assert exact.shape == (6, H, W, 3) and np.abs(exact - exact[:1]).max() == 0
    plain = decode_bytes(encode_rgb(np.repeat(frame[None], 6, 0), 8.0)).astype(int)
    # as faithful as ordinary H.264 at the same CRF (the object carries sigma-12 noise)
    assert np.abs(exact[0] - frame).mean() <= np.abs(plain[0] - frame).mean() + 0.5 < 6


def test_encode_stage_round_trip_static_sample():
    rng = np.random.default_rng(1)
    alpha = rng.integers(0, 256, (1, 1, 1, H, W), dtype=np.uint8)  # (rows, samples, frames, H, W)
    fg = rng.integers(0, 256, (1, 1, 1, H, W, 3), dtype=np.uint8)
    bg = np.full((1, 1, 1, H, W, 3), 90, np.uint8)
    state = UnitState(unit_id="u", source_uri="s", samples=[record("u_0", 5)])
    batch = {"meta": np.array([state.model_dump_json()], dtype=object), "fg": fg, "alpha": alpha, "bg": bg,
             "blend": bg.copy()}
    out = EncodeLayersStage("image_layers", fg_fill=7)(batch)
    assert set(out) == {"meta", "payload"}
    samples = samples_from_payload(out["payload"][0])
    assert [s.record.key for s in samples] == ["u_0"]
    members = samples[0].members
    assert sorted(members) == ["alpha.mkv", "bg.mp4", "blend.mp4", "fg.mp4"]
    dec_alpha = decode_bytes(members["alpha.mkv"], gray=True)
    assert dec_alpha.shape == (5, H, W) and all(np.array_equal(a, alpha[0, 0, 0]) for a in dec_alpha)
    dec_fg = decode_bytes(members["fg.mp4"]).astype(int)
    assert np.abs(dec_fg - dec_fg[:1]).max() == 0
    zero = alpha[0, 0, 0] == 0
    assert zero.any() and abs(np.median(dec_fg[0][zero]) - 7) <= 3  # fg_fill outside the alpha


def test_encode_stage_turns_failures_into_rejects():
    state = UnitState(unit_id="u", source_uri="s", samples=[record("u_0", 5)])
    bad = np.zeros((1, 1, 3, H, W, 3), np.uint8)  # 3 frames where the record says 5
    batch = {"meta": np.array([state.model_dump_json()], dtype=object), "fg": bad,
             "alpha": np.zeros((1, 1, 3, H, W), np.uint8), "bg": bad, "blend": bad}
    out = EncodeLayersStage("copypaste")(batch)
    state = UnitState.model_validate_json(out["meta"][0])
    assert state.rejected and out["payload"][0] == b""
    assert (state.rejects[0].stage, state.rejects[0].reason) == ("copypaste", "encode_error")
