from layerflow_train.data.dataset import Example, LayeredDataset, position_to_index, sample_positions
from layerflow_train.data.shards import (
                                         LayeredClip,
                                         decode_clip,
                                         index_shards,
                                         iter_webdataset,
                                         read_members,
                                         read_ray_dataset,
                                         resolve_shards,
)

__all__ = ["Example", "LayeredClip", "LayeredDataset", "decode_clip", "index_shards", "iter_webdataset",
           "position_to_index", "read_members", "read_ray_dataset", "resolve_shards", "sample_positions"]
