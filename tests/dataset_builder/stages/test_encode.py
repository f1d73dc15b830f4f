import numpy as np
import webdataset as wds

from dataset_builder.io.layout import committed_shards
from dataset_builder.io.shard_writer import ShardWriter, samples_from_payload
from dataset_builder.io.video import decode_bytes
from dataset_builder.stages.base import ClipState, ObjectState, batch_from_rows, rows_from_batch
from dataset_builder.stages.encode import EncodeStage, foreground_rgb
from schemas import LAYER_MEMBERS, LayeredSample


def _row(t=4, h=32, w=48):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
    alpha = np.zeros((1, t, h, w), np.uint8)
    alpha[0, :, 8:24, 10:30] = 255
    alpha[0, :, 8:24, 9] = 128
    bg = np.full((1, t, h, w, 3), 77, np.uint8)
    state = ClipState(clip_id="abc", source_uri="/v.mp4", fps=8.0, num_frames=t, height=h, width=w,
                      config_hash="h", tags=[{"label": "dog", "score": 0.7, "is_subject": True}],
                      objects=[ObjectState(object_id=3, label="dog", score=0.9, scores={"track": 0.9},
                                           captions={"fg": "a dog", "bg": "grass", "blend": "a dog on grass"})])
    return {"meta": state.model_dump_json(), "frames": frames, "masks": alpha, "backgrounds": bg}


def test_foreground_fill_outside_alpha():
    frames = np.full((1, 2, 2, 3), 200, np.uint8)
    alpha = np.array([[[0, 255], [10, 0]]], np.uint8)
    fg = foreground_rgb(frames, alpha, fill=5)
    assert fg[0, 0, 0].tolist() == [5, 5, 5] and fg[0, 0, 1].tolist() == [200] * 3 and fg[0, 1, 0, 0] == 200


def test_encode_payload_roundtrip_and_shard_read(tmp_path):
    row = _row()
    out = rows_from_batch(EncodeStage(crf=12, fg_fill=0)(batch_from_rows([row])))[0]
    assert out["frames"].size == 0  # heavy arrays dropped before reaching the driver
    samples = samples_from_payload(out["payload"])
    assert len(samples) == 1
    record, members = samples[0].record, samples[0].members
    assert record.key == "abc_03" and record.captions.blend == "a dog on grass"
    assert record.scores["tag:dog"] == 0.7 and record.provenance.config_hash == "h"
    assert set(members) == set(LAYER_MEMBERS.values())
    alpha = decode_bytes(members["alpha.mkv"], gray=True)
    np.testing.assert_array_equal(alpha, row["masks"][0])  # lossless
    bg = decode_bytes(members["bg.mp4"])
    assert np.abs(bg.astype(int) - 77).max() <= 2
    with ShardWriter(tmp_path) as writer:
        writer.add_clip(record.clip_id, samples, [])
    got = list(wds.WebDataset([str(p) for p in committed_shards(tmp_path)], shardshuffle=False))
    assert LayeredSample.model_validate_json(got[0]["json"]) == record


def test_rejected_clip_gets_empty_payload():
    row = _row()
    state = ClipState.model_validate_json(row["meta"])
    state.reject_clip("caption", "error")
    row["meta"] = state.model_dump_json()
    out = rows_from_batch(EncodeStage()(batch_from_rows([row])))[0]
    assert out["payload"] == b"" and samples_from_payload(out["payload"]) == []
