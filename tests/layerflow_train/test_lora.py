import torch
from diffusers import CogVideoXTransformer3DModel

from layerflow_train.config import LoraConfig
from layerflow_train.lora import LoRAAdapters, target_module_names
from layerflow_train.models import LayerEmbedder, LayerFlowModel


def _transformer(num_layers=2):
    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
                                       time_embed_dim=16, text_embed_dim=32, num_layers=num_layers, sample_width=8,
                                       sample_height=8, sample_frames=9, max_text_seq_length=6).eval()


def _randomize(lora: LoRAAdapters, name: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora.parameters_of(name):
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _inputs(b=2):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(b, 4, 4, 4, 6, generator=g), torch.randn(b, 6, 32, generator=g), torch.tensor([500] * b))


def test_default_targets_are_the_authors_blocks_and_projections():
    """sat/lora.py adapts query_key_value and dense (diffusers: to_q/k/v + to_out.0) of blocks i % 6 == 5."""
    names = target_module_names(_transformer(12), LoraConfig())
    assert names == [f"transformer_blocks.{i}.attn1.{t}" for i in (5, 11)
                     for t in ("to_q", "to_k", "to_v", "to_out.0")]


def test_default_scaling_is_alpha_over_rank_of_the_authors():
    cfg = LoraConfig()
    assert (cfg.alpha, cfg.motion_rank, cfg.content_rank) == (1.0, 8, 256)  # sat/lora.py defaults
    tr = _transformer(6)
    lora = LoRAAdapters(tr, cfg)
    lora.add("motion")
    lora.add("content")
    assert lora.scaling == {"motion": 1 / 8, "content": 1 / 256}
    pair = lora.adapters["content"]["transformer_blocks__5__attn1__to_q"]
    assert pair.lora_A.weight.shape == (256, 16) and pair.lora_B.weight.shape == (16, 256)
    # the applied delta is exactly scaling * B A x
    model = LayerFlowModel(tr, LayerEmbedder(3, 32), lora)
    _randomize(lora, "content", 3)
    seen = {}
    q = tr.transformer_blocks[5].attn1.to_q
    h = q.register_forward_hook(lambda m, a, out: seen.update(x=a[0], out=out))
    x, text, t = _inputs()
    with torch.no_grad():
        model(x, text, t, None)
        base = torch.nn.functional.linear(seen["x"], q.weight, q.bias)
    h.remove()
    expected = base + (seen["x"] @ pair.lora_A.weight.T @ pair.lora_B.weight.T) / 256
    torch.testing.assert_close(seen["out"], expected, rtol=1e-4, atol=1e-5)


def test_motion_scale_zero_equals_disabled_and_per_sample_scale_exact():
    tr = _transformer()
    lora = LoRAAdapters(tr, LoraConfig(motion_rank=4, content_rank=4, alpha=4, every_n_blocks=1, block_offset=0))
    model = LayerFlowModel(tr, LayerEmbedder(3, 32), lora)
    x, text, t = _inputs()
    with torch.no_grad():
        base = LayerFlowModel(tr, model.layer_embedder, None)(x, text, t)  # no adapters at all
        lora.add("motion")
        _randomize(lora, "motion", 0)
        zero = model(x, text, t, torch.zeros(2))
        disabled = model(x, text, t, None)
        one = model(x, text, t, torch.ones(2))
        mixed = model(x, text, t, torch.tensor([1.0, 0.0]))
        half = model(x, text, t, torch.tensor([0.5, 0.5]))
    assert torch.equal(zero, disabled) and torch.equal(zero, base)
    assert (one - zero).abs().mean() > 1e-3  # the adapter does change the output
    torch.testing.assert_close(mixed[0], one[0], rtol=1e-5, atol=1e-6)
    assert torch.equal(mixed[1], zero[1])
    assert not torch.allclose(half, one) and not torch.allclose(half, zero)


def test_adapters_save_reload_identical_outputs(tmp_path):
    tr = _transformer()
    cfg = LoraConfig(motion_rank=4, content_rank=2, alpha=8, every_n_blocks=1, block_offset=0)
    lora = LoRAAdapters(tr, cfg)
    lora.add("motion")
    lora.add("content")
    _randomize(lora, "motion", 1)
    _randomize(lora, "content", 2)
    model = LayerFlowModel(tr, LayerEmbedder(3, 32), lora)
    x, text, t = _inputs()
    with torch.no_grad():
        ref = model(x, text, t, torch.tensor([1.0, 0.0]))
    m_path, c_path = lora.save("motion", tmp_path / "m.safetensors"), lora.save("content", tmp_path / "c.safetensors")
    from safetensors.torch import load_file
    keys = set(load_file(str(c_path)))
    assert "transformer.transformer_blocks.0.attn1.to_out.0.lora_A.weight" in keys and len(keys) == 2 * 4 * 2

    tr2 = _transformer()  # same seed -> same base weights
    lora2 = LoRAAdapters(tr2, cfg)
    lora2.load("motion", m_path)
    lora2.load("content", c_path)
    model2 = LayerFlowModel(tr2, model.layer_embedder, lora2)
    with torch.no_grad():
        got = model2(x, text, t, torch.tensor([1.0, 0.0]))
    assert torch.equal(got, ref)
    with torch.no_grad():  # content only (inference): differs from the with-motion output for sample 0
        lora2.adapters.pop("motion")
        no_motion = model2(x, text, t, torch.tensor([1.0, 0.0]))
    assert torch.equal(no_motion[1], ref[1]) and not torch.equal(no_motion[0], ref[0])


def test_per_sample_motion_scale_survives_gradient_checkpointing():
    """The configs train with gradient checkpointing: the blocks (and LoRA hooks) re-run in backward, after
    forward returned, and must use the batch's per-sample motion scale again (stage 3: [1, 0])."""
    grads = []
    for checkpointing in (False, True):
        tr = _transformer()
        if checkpointing:
            tr.enable_gradient_checkpointing()
        lora = LoRAAdapters(tr, LoraConfig(motion_rank=4, content_rank=4, alpha=4, every_n_blocks=1, block_offset=0))
        lora.add("motion")
        lora.add("content")
        _randomize(lora, "motion", 0)
        _randomize(lora, "content", 1)
        model = LayerFlowModel(tr, LayerEmbedder(3, 32), lora)
        model.requires_grad_(False)
        lora.adapters["content"].requires_grad_(True)
        x, text, t = _inputs()
        model(x, text, t, torch.tensor([1.0, 0.0])).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in lora.parameters_of("content")]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
