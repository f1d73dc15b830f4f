"""Ray Data pipelines that turn raw videos into layered video datasets (fg, alpha, bg, blended + captions)."""

__version__ = "0.1.0"
