"""The LayeredClip sample record (shard ``.json`` member + manifest row) and the rejects record.

A shard sample is one foreground object of one clip:

    <key>.fg.mp4      foreground RGB (pixels outside alpha filled with ``fg_fill``)
    <key>.alpha.mkv   alpha, lossless (FFV1, gray8)
    <key>.bg.mp4      background with the object inpainted away
    <key>.blend.mp4   the blended (original) clip
    <key>.json        :class:`LayeredSample` (captions fg/bg/blend, tags, scores, provenance)

Bump ``SCHEMA_VERSION`` on any change a reader must know about (major: breaking).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.0.0"

#: Tar member suffix of each layer, in LayerFlow sub-clip order (fg, alpha, bg, blend).
LAYER_MEMBERS: dict[str, str] = {
    "fg": "fg.mp4",
    "alpha": "alpha.mkv",
    "bg": "bg.mp4",
    "blend": "blend.mp4",
}
#: Caption layers, in LayerFlow prompt-prefix order: "0, <fg>", "1, <bg>", "2, <blend>".
CAPTION_LAYERS: tuple[str, str, str] = ("fg", "bg", "blend")

RejectStage = Literal[
    "probe", "clip", "tag", "segment_track", "dedup_masks", "filter_foreground", "matte", "inpaint", "layer_qa",
    "caption",
    "encode", "write", "copypaste", "image_layers",
]


class Captions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fg: str
    bg: str
    blend: str


class Provenance(BaseModel):
    """Where a sample came from and what made it, enough to reproduce or audit it."""

    model_config = ConfigDict(extra="allow")
    source_uri: str
    source_sha1: str = ""
    start_frame: int
    frame_stride: int = 1
    source_fps: float = 0.0
    config_hash: str
    backends: dict[str, str] = Field(default_factory=dict)
    #: per stage: model directory fingerprint + library versions on the worker that ran it
    revisions: dict[str, str] = Field(default_factory=dict)
    builder_version: str = ""
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class LayeredSample(BaseModel):
    """The ``<key>.json`` member of a shard sample."""

    model_config = ConfigDict(extra="forbid")
    schema_version: str = SCHEMA_VERSION
    key: str
    clip_id: str
    object_id: int
    kind: Literal["coarse", "copypaste", "static"] = "coarse"
    label: str
    num_frames: int
    height: int
    width: int
    fps: float
    captions: Captions
    tags: list[str] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)
    #: Motion scale for LayerFlow stage 3: 1 for static (image) videos, 0 for copy-paste, None = real video.
    motion_scale: float | None = None
    fg_fill: int = 0
    provenance: Provenance


class RejectRecord(BaseModel):
    """Why an input video, clip or object did not become a sample. Nothing is dropped silently."""

    model_config = ConfigDict(extra="forbid")
    source_uri: str
    clip_id: str = ""
    object_id: int = -1
    stage: RejectStage
    reason: str
    detail: str = ""
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("schema_version", pa.string()),
        pa.field("shard", pa.string()),
        pa.field("key", pa.string()),
        pa.field("clip_id", pa.string()),
        pa.field("object_id", pa.int32()),
        pa.field("kind", pa.string()),
        pa.field("label", pa.string()),
        pa.field("source_uri", pa.string()),
        pa.field("start_frame", pa.int64()),
        pa.field("num_frames", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("fps", pa.float32()),
        pa.field("caption_fg", pa.string()),
        pa.field("caption_bg", pa.string()),
        pa.field("caption_blend", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("scores", pa.map_(pa.string(), pa.float32())),
        pa.field("bytes", pa.int64()),
        pa.field("config_hash", pa.string()),
    ],
    metadata={"schema_version": SCHEMA_VERSION},
)

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string()),
        pa.field("clip_id", pa.string()),
        pa.field("object_id", pa.int32()),
        pa.field("stage", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("created_at", pa.string()),
    ],
    metadata={"schema_version": SCHEMA_VERSION},
)


def manifest_row(sample: LayeredSample, shard: str, nbytes: int) -> dict:
    """Flatten a sample record into a row of :data:`MANIFEST_SCHEMA`."""
    return {
        "schema_version": sample.schema_version,
        "shard": shard,
        "key": sample.key,
        "clip_id": sample.clip_id,
        "object_id": sample.object_id,
        "kind": sample.kind,
        "label": sample.label,
        "source_uri": sample.provenance.source_uri,
        "start_frame": sample.provenance.start_frame,
        "num_frames": sample.num_frames,
        "height": sample.height,
        "width": sample.width,
        "fps": sample.fps,
        "caption_fg": sample.captions.fg,
        "caption_bg": sample.captions.bg,
        "caption_blend": sample.captions.blend,
        "tags": list(sample.tags),
        "scores": list(sample.scores.items()),
        "bytes": nbytes,
        "config_hash": sample.provenance.config_hash,
    }
