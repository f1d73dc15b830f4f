import pytest
import torch
from diffusers import CogVideoXTransformer3DModel

from layerflow_train.config import ModelConfig
from layerflow_train.models import LayerEmbedder, decode_layers, encode_layers, encode_text, load_components


def test_enlarged_text_length_keeps_pretrained_weights(tiny_model_dir):
    base = CogVideoXTransformer3DModel.from_pretrained(tiny_model_dir / "transformer")
    assert base.config.max_text_seq_length == 8
    comp = load_components(ModelConfig(model_dir=str(tiny_model_dir), text_len_per_layer=8))
    tr = comp.transformer
    assert tr.config.max_text_seq_length == 24  # 3 segments x 8
    base_sd, sd = base.state_dict(), tr.state_dict()
    assert set(base_sd) == set(sd) and all(torch.equal(base_sd[k], sd[k]) for k in sd)
    x = torch.randn(1, 4, 4, 4, 6)
    out = tr(hidden_states=x, encoder_hidden_states=torch.randn(1, 24, 32), timestep=torch.tensor([10])).sample
    assert out.shape == x.shape
    with pytest.raises(RuntimeError):  # the sincos table is sized for exactly 3 x L text tokens
        tr(hidden_states=x, encoder_hidden_states=torch.randn(1, 8, 32), timestep=torch.tensor([10]))


def test_missing_model_dir_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERFLOW_MODEL_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "CogVideoX-2b")):
        load_components(ModelConfig(model_dir="CogVideoX-2b"))


def test_layer_embedder_adds_one_vector_per_segment():
    emb = LayerEmbedder(3, 4)
    with torch.no_grad():
        emb.embedding.copy_(torch.tensor([[1.0] * 4, [2.0] * 4, [3.0] * 4]))
    text = torch.zeros(2, 3 * 5, 4)
    out = emb(text)
    assert torch.equal(out[:, :5], torch.ones(2, 5, 4))
    assert torch.equal(out[:, 5:10], torch.full((2, 5, 4), 2.0))
    assert torch.equal(out[:, 10:], torch.full((2, 5, 4), 3.0))
    assert torch.equal(LayerEmbedder(3, 4)(text), text)  # zero init = base model behaviour


def test_layers_encoded_independently_and_aligned(tiny_model_dir):
    comp = load_components(ModelConfig(model_dir=str(tiny_model_dir), text_len_per_layer=8))
    torch.manual_seed(0)
    pixels = torch.rand(1, 4, 8, 3, 32, 48) * 2 - 1
    z = encode_layers(comp, pixels)
    assert z.shape == (1, 8, 4, 4, 6)  # 4 layers x 2 latent frames
    changed = pixels.clone()
    changed[:, 2] = -changed[:, 2]  # change only bg
    z2 = encode_layers(comp, changed)
    assert torch.equal(z[:, :4], z2[:, :4]) and torch.equal(z[:, 6:], z2[:, 6:])
    assert not torch.equal(z[:, 4:6], z2[:, 4:6])
    assert decode_layers(comp, z, 4).shape == (1, 4, 8, 3, 32, 48)
    text = encode_text(comp, [["0, a", "1, b", "2, c"], ["0, a", "1, x", "2, c"]], torch.device("cpu"))
    assert text.shape == (2, 24, 32)
    assert torch.equal(text[0, :8], text[1, :8]) and not torch.equal(text[0, 8:16], text[1, 8:16])
