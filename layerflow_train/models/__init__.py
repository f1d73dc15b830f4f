from layerflow_train.models.components import (
                                               Components,
                                               LayerEmbedder,
                                               decode_layers,
                                               encode_layers,
                                               encode_text,
                                               layer_prompts,
                                               load_components,
)
from layerflow_train.models.layerflow import LayerFlowModel

__all__ = ["Components", "LayerEmbedder", "LayerFlowModel", "decode_layers", "encode_layers", "encode_text",
           "layer_prompts", "load_components"]
