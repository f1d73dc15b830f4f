"""Derived training sets for LayerFlow stages 2/3: copy-paste videos (motion scale 0) and static layered
videos from (multi-layer) images (motion scale 1), in the coarse dataset's shard format."""
