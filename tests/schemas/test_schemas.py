import pyarrow as pa
import pytest

from schemas import (
    MANIFEST_SCHEMA,
    REJECTS_SCHEMA,
    SCHEMA_VERSION,
    Captions,
    LayeredSample,
    Provenance,
    RejectRecord,
    manifest_row,
)


def _record(**kw):
    base = dict(key="k_00", clip_id="k", object_id=0, label="dog", num_frames=16, height=480, width=720, fps=8.0,
                captions=Captions(fg="a dog", bg="a lawn", blend="a dog on a lawn"), tags=["dog", "grass"],
                scores={"track": 0.5}, provenance=Provenance(source_uri="/a.mp4", start_frame=3, config_hash="h"))
    base.update(kw)
    return LayeredSample(**base)


def test_record_json_roundtrip_and_version():
    rec = _record()
    again = LayeredSample.model_validate_json(rec.model_dump_json())
    assert again == rec and again.schema_version == SCHEMA_VERSION


def test_record_is_strict():
    with pytest.raises(ValueError):
        _record(captions={"fg": "a", "bg": "b"})
    with pytest.raises(ValueError):
        LayeredSample.model_validate({**_record().model_dump(), "surprise": 1})
    with pytest.raises(ValueError):
        RejectRecord(source_uri="/a", stage="not_a_stage", reason="x")


def test_manifest_row_matches_arrow_schema():
    table = pa.Table.from_pylist([manifest_row(_record(), "shard-000000.tar", 123)], schema=MANIFEST_SCHEMA)
    row = table.to_pylist()[0]
    assert row["caption_blend"] == "a dog on a lawn" and row["tags"] == ["dog", "grass"]
    assert dict(row["scores"]) == {"track": 0.5} and row["start_frame"] == 3
    assert table.schema.metadata[b"schema_version"].decode() == SCHEMA_VERSION


def test_reject_rows_match_arrow_schema():
    rec = RejectRecord(source_uri="/a.mp4", stage="probe", reason="unreadable")
    table = pa.Table.from_pylist([rec.model_dump()], schema=REJECTS_SCHEMA)
    assert table.to_pylist()[0]["object_id"] == -1
