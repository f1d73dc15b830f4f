"""Sample data generators (synthetic layered clips with exact ground truth)."""

from dataset_builder.samples.synthetic import SyntheticClip, make_synthetic_clip, write_synthetic_video

__all__ = ["SyntheticClip", "make_synthetic_clip", "write_synthetic_video"]
