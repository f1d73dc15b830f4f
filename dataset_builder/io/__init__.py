"""Video decode/encode and the WebDataset shard writer."""
