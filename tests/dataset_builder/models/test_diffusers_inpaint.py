"""Paper-profile image inpainting (``diffusers_inpaint``) through its real loading code, on a tiny random
Stable Diffusion inpainting pipeline built from configs and saved locally (nothing downloaded)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dataset_builder.config import BackendSpec
from dataset_builder.models.hf.loading import ModelNotFoundError
from dataset_builder.models.registry import BackendKind, build_backend

pytestmark = pytest.mark.slow  # diffusers + transformers imports: ~20 s on a loaded 2-core machine


def _byte_level_chars() -> list[str]:
    """GPT-2/CLIP byte-to-unicode table: a BPE vocabulary of these needs no merges."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


@pytest.fixture(scope="module")
def tiny_inpaint_dir(tmp_path_factory):
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("sd_inpaint")
    chars = _byte_level_chars()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{c: 2 + i for i, c in enumerate(chars)},
             **{c + "</w>": 2 + len(chars) + i for i, c in enumerate(chars)}}
    (root / "tok").mkdir()
    (root / "tok" / "vocab.json").write_text(json.dumps(vocab))
    (root / "tok" / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(root / "tok" / "vocab.json"), str(root / "tok" / "merges.txt"), model_max_length=16)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=9,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        norm_num_groups=4)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16,
                                        intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
                                        vocab_size=len(vocab), max_position_embeddings=16))
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                          scheduler=DDIMScheduler(steps_offset=1), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "pipe")
    return root / "pipe"


def test_fills_only_the_hole_deterministically(tiny_inpaint_dir):
    spec = BackendSpec(name="diffusers_inpaint", model_dir=str(tiny_inpaint_dir), device="cpu",
                       options={"steps": 2, "max_side": 64, "dilate": 2})
    backend = build_backend(BackendKind.INPAINTER, spec)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    masks = np.zeros((2, 40, 56), np.uint8)
    masks[0, 10:25, 15:35] = 255
    out = backend.inpaint(frames, masks)
    assert out.shape == frames.shape and out.dtype == np.uint8
    hole = np.zeros((40, 56), bool)
    hole[8:27, 13:37] = True  # the mask grown by `dilate`
    assert np.array_equal(out[0][~hole], frames[0][~hole])  # known pixels never go through the VAE
    assert not np.array_equal(out[0][hole], frames[0][hole])
    assert np.array_equal(out[1], frames[1])  # empty mask: untouched
    assert np.array_equal(backend.inpaint(frames, masks), out)  # seeded


def test_missing_model_dir_is_a_clear_error(tmp_path):
    spec = BackendSpec(name="diffusers_inpaint", model_dir=str(tmp_path / "nope"), device="cpu")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        build_backend(BackendKind.INPAINTER, spec)


def test_image_layers_use_it_for_matting_photos(tiny_inpaint_dir, tmp_path):
    from dataset_builder.derived.config import ImageLayersConfig
    from dataset_builder.derived.pipeline import run_image_layers
    from dataset_builder.samples.derived_layouts import write_image_matting

    write_image_matting(tmp_path / "matting", height=48, width=64)
    cfg = ImageLayersConfig.model_validate({
        "input": {"paths": [], "matting": [{"root": str(tmp_path / "matting" / "am2k")}]},
        "frames": {"num_frames": 2, "height": 48, "width": 64}, "output": {"dir": str(tmp_path / "out")},
        "inpaint": {"name": "diffusers_inpaint", "model_dir": str(tiny_inpaint_dir), "device": "cpu",
                    "options": {"steps": 1, "max_side": 64}}})
    summary = run_image_layers(cfg, use_ray=False)
    assert summary["samples_total"] == 2 and summary["rejects_total"] == 1  # m_0002 has no mask
    from dataset_builder.io import layout
    backends = {s.record.provenance.backends["inpaint"] for s in layout.iter_samples(tmp_path / "out", decode=True)}
    assert backends == {"diffusers_inpaint"}
