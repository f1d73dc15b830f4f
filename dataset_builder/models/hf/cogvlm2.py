"""Per-layer captions with CogVLM2-Video (backend ``cogvlm2`` of ``caption``), as in LayerFlow.

CogVLM2 is not part of transformers: its modeling code ships with the weights and runs only with
``trust_remote_code``. That is an explicit opt-in of the stage config (``trust_remote_code: true``),
never inferred from the model directory. We call the model's own ``build_conversation_input_ids``
(the API of THUDM/cogvlm2-video-llama3-chat) with the clip as a ``(C, T, H, W)`` uint8 tensor.
"""

from __future__ import annotations

import numpy as np

from dataset_builder.config import BackendSpec, Resources
from dataset_builder.models.base import LayerCaptions
from dataset_builder.models.hf import loading
from dataset_builder.models.hf.captioning import layer_prompts
from dataset_builder.models.hf.overlay import composite


class RemoteCodeNotAllowedError(PermissionError):
    """The backend needs the model's own Python code and the config did not allow it."""


def generation_incompatibility(model) -> str | None:
    """Why the model's own generation hook cannot run on the installed transformers, else None.

    The published CogVLM2 modeling code overrides ``_update_model_kwargs_for_generation`` with the
    pre-4.44 signature (``standardize_cache_format``) and calls
    ``GenerationMixin._extract_past_from_model_output(standardize_cache_format=...)``: transformers 4.44
    dropped that argument and 5.x has no such method, so generation would fail on the first clip inside
    every actor instead of at load time.
    """
    import inspect

    from transformers import GenerationMixin

    hook = getattr(type(model), "_update_model_kwargs_for_generation", None)
    try:
        params = inspect.signature(hook).parameters
    except (TypeError, ValueError):
        return None
    if "standardize_cache_format" in params and not hasattr(GenerationMixin, "_extract_past_from_model_output"):
        return (f"{type(model).__module__}.{type(model).__name__}._update_model_kwargs_for_generation "
                f"calls GenerationMixin._extract_past_from_model_output, which this transformers lacks")
    return None


class CogVLM2Captioner:
    """Options: ``num_frames`` (24, CogVLM2-Video's input length), ``max_new_tokens`` (96),
    ``prompts`` (override fg/bg/blend), ``fg_fill`` (0), ``template_version`` ("chat")."""

    default_subdir = "cogvlm2-video-llama3-chat"
    default_resources = Resources(num_cpus=2, num_gpus=1.0, batch_size=2, concurrency=8)

    def __init__(self, spec: BackendSpec) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not spec.trust_remote_code:
            raise RemoteCodeNotAllowedError(
                "caption backend 'cogvlm2' executes the Python code shipped in its model directory; "
                "set stages.caption.trust_remote_code: true to allow it (or use 'qwen2_5_vl')"
            )
        opts = spec.options
        self.num_frames = int(opts.get("num_frames", 24))
        self.max_new_tokens = int(opts.get("max_new_tokens", 96))
        self.overrides = dict(opts.get("prompts", {}))
        self.fg_fill = int(opts.get("fg_fill", 0))
        self.template_version = str(opts.get("template_version", "chat"))
        path = loading.resolve_model_dir(spec, self.default_subdir)
        self.model, self.device, self.dtype = loading.load_model(AutoModelForCausalLM, path, spec)
        problem = generation_incompatibility(self.model)
        if problem:
            import transformers

            raise RuntimeError(
                f"caption backend 'cogvlm2': the modeling code in {path} does not support the installed "
                f"transformers {transformers.__version__} ({problem}); patch that file for the current "
                f"generation API or use caption backend 'qwen2_5_vl' (see docs/models.md)"
            )
        self.tokenizer = loading.load_pretrained(AutoTokenizer, path, spec)

    def answer(self, frames: np.ndarray, question: str) -> str:
        import torch

        picked = frames[loading.sample_indices(len(frames), self.num_frames)]
        video = torch.from_numpy(np.ascontiguousarray(picked)).permute(3, 0, 1, 2)  # (C, T, H, W)
        conv = self.model.build_conversation_input_ids(
            tokenizer=self.tokenizer, query=question, images=[video], history=[],
            template_version=self.template_version,
        )
        inputs = {
            "input_ids": conv["input_ids"].unsqueeze(0).to(self.device),
            "token_type_ids": conv["token_type_ids"].unsqueeze(0).to(self.device),
            "attention_mask": conv["attention_mask"].unsqueeze(0).to(self.device),
            "images": [[conv["images"][0].to(self.device, self.dtype)]],
        }
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=pad)
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    def caption(self, frames: np.ndarray, alpha: np.ndarray, background: np.ndarray, label: str,
                tags: list[str]) -> LayerCaptions:
        prompts = layer_prompts(label, tags, self.overrides)
        return LayerCaptions(
            fg=self.answer(composite(frames, alpha, self.fg_fill), prompts["fg"]),
            bg=self.answer(background, prompts["bg"]),
            blend=self.answer(frames, prompts["blend"]),
        )
