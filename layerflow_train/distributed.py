"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for full-block training, beside DDP.

Each transformer block is its own FSDP unit (parameters, grads and AdamW states sharded over ranks),
the root holds the rest. Checkpoints stay rank-agnostic: the trainable weights and optimizer state are
gathered to full tensors (``torch.distributed.checkpoint.state_dict``) and written by rank 0, so a run
can resume on another world size.
"""

from __future__ import annotations

import torch
from torch import nn


def shard_fsdp2(model: nn.Module) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in model.transformer.transformer_blocks:
        fully_shard(block)
    fully_shard(model)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_full_options())


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict, optim_state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, weights, options=opts)
    set_optimizer_state_dict(model, optimizer, optim_state_dict=optim_state, options=opts)


def gathered_copy(model: nn.Module, rank: int) -> nn.Module | None:
    """A plain (unsharded, CPU) copy of a sharded LayerFlowModel on rank 0, for the stage export
    (``save_pretrained`` needs real tensors). Collective: every rank calls it; other ranks get None."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    from layerflow_train.lora import LoRAAdapters
    from layerflow_train.models.layerflow import LayerFlowModel

    state = get_model_state_dict(model, options=_full_options())
    if rank != 0:
        return None
    transformer = type(model.transformer).from_config(model.transformer.config)
    embedder = type(model.layer_embedder)(*model.layer_embedder.embedding.shape)
    lora = None
    if model.lora is not None:
        lora = LoRAAdapters(transformer, model.lora.cfg)
        for name in model.lora.adapters:
            lora.add(name)
    copy = LayerFlowModel(transformer, embedder, lora)
    copy.load_state_dict({k: v.float() for k, v in state.items()})
    return copy
