"""LayerFlow-style layer-aware CogVideoX training on layered-clip shards (diffusers, Ray Train)."""

__version__ = "0.1.0"
