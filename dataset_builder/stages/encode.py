"""Stage ``encode``: per object, encode fg / alpha / bg / blend and its json into a tar fragment.

Encoding runs on the workers (it is the CPU-heavy part of writing); the writer stage then only copies
bytes into shards. Heavy arrays are dropped here.
"""

from __future__ import annotations

import numpy as np

from dataset_builder import __version__
from dataset_builder.io.layout import JSON_MEMBER, sample_key
from dataset_builder.io.shard_writer import pack_fragment
from dataset_builder.io.video import encode_alpha, encode_rgb
from dataset_builder.stages.base import ClipStage, ClipState, drop_heavy
from schemas import LAYER_MEMBERS, Captions, LayeredSample, Provenance


def foreground_rgb(frames: np.ndarray, alpha: np.ndarray, fill: int) -> np.ndarray:
    """Foreground colour layer: ``frames`` (the clip, or its fg-colour estimate) where alpha > 0, ``fill``
    elsewhere (compresses well and gives the model a constant, unambiguous 'empty' colour)."""
    fg = np.full_like(frames, fill)
    visible = alpha > 0
    fg[visible] = frames[visible]
    return fg


class EncodeStage(ClipStage):
    stage = "encode"

    def __init__(self, crf: int = 18, fg_fill: int = 0):
        self.crf = crf
        self.fg_fill = fg_fill

    def prepare(self, row: dict) -> None:
        row["payload"] = b""  # rejected clips carry only their rejects

    def process(self, state: ClipState, row: dict) -> None:
        frames, masks, backgrounds = row["frames"], row["masks"], row["backgrounds"]
        foregrounds = row.get("foregrounds")
        if foregrounds is None or len(foregrounds) != len(masks):  # no layer_qa stage: observed colour
            foregrounds = [frames] * len(masks)
        fps = state.fps
        blend = encode_rgb(frames, fps, self.crf)  # shared by all objects of the clip
        samples: dict[str, dict[str, bytes]] = {}
        for i, obj in enumerate(state.objects):
            key = sample_key(state.clip_id, obj.object_id)
            record = LayeredSample(
                key=key, clip_id=state.clip_id, object_id=obj.object_id, label=obj.label,
                num_frames=int(frames.shape[0]), height=int(frames.shape[1]), width=int(frames.shape[2]),
                fps=fps, captions=Captions(**obj.captions), tags=[t["label"] for t in state.tags],
                scores={**obj.scores, **{f"tag:{t['label']}": float(t["score"]) for t in state.tags}},
                fg_fill=self.fg_fill,
                provenance=Provenance(
                    source_uri=state.source_uri, source_sha1=state.source_sha1,
                    start_frame=state.start_frame, frame_stride=state.frame_stride,
                    source_fps=state.source_fps, config_hash=state.config_hash,
                    backends=dict(state.backends), revisions=dict(state.revisions), builder_version=__version__,
                ),
            )
            samples[key] = {
                LAYER_MEMBERS["fg"]: encode_rgb(foreground_rgb(foregrounds[i], masks[i], self.fg_fill), fps,
                                                   self.crf),
                LAYER_MEMBERS["alpha"]: encode_alpha(masks[i], fps),
                LAYER_MEMBERS["bg"]: encode_rgb(backgrounds[i], fps, self.crf),
                LAYER_MEMBERS["blend"]: blend,
                JSON_MEMBER: record.model_dump_json().encode(),
            }
        row["payload"] = pack_fragment(samples)
        drop_heavy(row)
