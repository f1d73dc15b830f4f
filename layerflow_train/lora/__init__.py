from layerflow_train.lora.adapters import LoRAAdapters, target_module_names

__all__ = ["LoRAAdapters", "target_module_names"]
