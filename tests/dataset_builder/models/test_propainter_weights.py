"""Official ProPainter checkpoints load into pytorchcv's networks: the rename rules are a bijection onto
pytorchcv's state-dict names with equal shapes (official names and shapes from the official module
definitions, data/propainter_official_keys.json), aliases are checked, and the backend reads a model
directory holding the official files exactly like one holding converted files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataset_builder.models.hf import propainter_weights as pw

OFFICIAL = json.loads((Path(__file__).parent / "data" / "propainter_official_keys.json").read_text())

pytest.importorskip("pytorchcv")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def nets():
    """pytorchcv's three networks, built once (random init)."""
    from dataset_builder.models.hf.propainter import RAFT_ITERS, _import_pytorchcv

    raft, rfc, pp, _ = _import_pytorchcv()
    return {"raft": raft.raft_things(in_normalize=False, iters=RAFT_ITERS), "rfc": rfc.propainter_rfc(),
            "propainter": pp.propainter()}


def _official_state(net: str, source: dict | None = None) -> dict:
    """A state dict with the official names: random tensors, or ``source``'s (pytorchcv-named) tensors."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in OFFICIAL["keys"][net]:
        alias = pw.alias_of(net, key)
        if alias is not None:
            continue
        if source is not None:
            state[key] = source[pw.rename(net, key)].clone()
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        else:
            state[key] = torch.randn(shape, generator=gen)
    for key, _ in OFFICIAL["keys"][net]:
        alias = pw.alias_of(net, key)
        if alias is not None:
            state[key] = state[alias].clone()
    return state


def test_official_files_and_key_counts():
    assert OFFICIAL["files"] == pw.OFFICIAL_FILES
    counts = {net: len(keys) for net, keys in OFFICIAL["keys"].items()}
    assert counts == {"raft": 179, "rfc": 74, "propainter": 216}


@pytest.mark.parametrize("net", ["raft", "rfc", "propainter"])
def test_rename_is_a_bijection_onto_pytorchcv_names_with_equal_shapes(nets, net):
    target = {k: list(v.shape) for k, v in nets[net].state_dict().items()}
    mapped = {}
    for key, shape in OFFICIAL["keys"][net]:
        if pw.alias_of(net, key) is None:
            new = pw.rename(net, key)
            assert new not in mapped, f"{key} collides on {new}"
            mapped[new] = shape
    assert mapped == target


@pytest.mark.parametrize("net", ["raft", "rfc"])
def test_converted_state_dict_loads_strictly_with_the_same_tensors(nets, net):
    official = _official_state(net)
    converted = pw.convert_state_dict(net, official)
    model = nets[net]
    model.load_state_dict(converted, strict=True)
    loaded = model.state_dict()
    for key, value in official.items():
        if pw.alias_of(net, key) is None:
            assert torch.equal(loaded[pw.rename(net, key)], value), key


def test_aliases_must_match_and_convert_dir_names_missing_files(tmp_path):
    official = _official_state("raft")
    key = next(k for k in official if pw.alias_of("raft", k))
    official[key] = official[key] + 1
    with pytest.raises(ValueError, match="should duplicate"):
        pw.convert_state_dict("raft", official)
    with pytest.raises(FileNotFoundError, match="ProPainter.pth"):
        pw.convert_dir(tmp_path, tmp_path / "out")


@pytest.mark.slow
def test_backend_reads_official_files_like_converted_ones(hf_propainter_dir, tmp_path):
    """Official-named files holding the fixture's weights load into the same networks, both directly and
    after the offline converter (same tensors -> same inpainting; inpainting itself is tested in
    test_hf_backends)."""
    from dataset_builder.config import BackendSpec
    from dataset_builder.models.hf.propainter import ProPainterInpainter

    official_dir = tmp_path / "official"
    official_dir.mkdir()
    for net, name in pw.OFFICIAL_FILES.items():
        source = torch.load(hf_propainter_dir / pw.CONVERTED_FILES[net], weights_only=True)
        torch.save(_official_state(net, source), official_dir / name)
    written = pw.convert_dir(official_dir, tmp_path / "converted")
    assert sorted(p.name for p in written) == sorted(pw.CONVERTED_FILES.values())
    reference = ProPainterInpainter(BackendSpec(name="propainter", model_dir=str(hf_propainter_dir)))
    for model_dir in (official_dir, tmp_path / "converted"):
        loaded = ProPainterInpainter(BackendSpec(name="propainter", model_dir=str(model_dir)))
        for net in pw.OFFICIAL_FILES:
            want, got = reference.nets[net].state_dict(), loaded.nets[net].state_dict()
            assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want), (model_dir, net)
