"""Record schemas shared by the dataset builder, the shard readers and the trainer (one source of truth)."""

from schemas.commit import CommitRecord, StageStats
from schemas.layered_clip import (
    CAPTION_LAYERS,
    LAYER_MEMBERS,
    MANIFEST_SCHEMA,
    REJECTS_SCHEMA,
    SCHEMA_VERSION,
    Captions,
    LayeredSample,
    Provenance,
    RejectRecord,
    manifest_row,
)

__all__ = [
    "CAPTION_LAYERS",
    "LAYER_MEMBERS",
    "MANIFEST_SCHEMA",
    "REJECTS_SCHEMA",
    "SCHEMA_VERSION",
    "Captions",
    "CommitRecord",
    "LayeredSample",
    "Provenance",
    "RejectRecord",
    "StageStats",
    "manifest_row",
]
