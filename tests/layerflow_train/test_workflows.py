"""The user path after ``make shards`` + ``make copypaste`` + ``make image-layers``: the shipped tiny
configs, unchanged except for size and step count, run through ``workflows/train.py`` stage after stage
(each stage finds the previous one's exports by the relative paths in the configs), then sampling."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from .conftest import H, W

from workflows import sample as sample_workflow
from workflows import train as train_workflow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def user_tree(layered_data, tmp_path, monkeypatch):
    """A working directory laid out like the repository after the three data targets."""
    for name, target in (("coarse", layered_data.coarse), ("copypaste", layered_data.copypaste),
                         ("image_layers", layered_data.static)):
        (tmp_path / "out").mkdir(exist_ok=True)
        (tmp_path / "out" / name).symlink_to(target)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAYERFLOW_MODEL_ROOT", raising=False)
    return tmp_path


def test_tiny_configs_chain_through_the_train_and_sample_workflows(user_tree, capsys):
    small = ["optim.max_steps=1", f"data.height={H}", f"data.width={W}"]
    for stage in (1, 2, 3):
        assert train_workflow.main(["--config", str(ROOT / f"configs/train/tiny_stage{stage}.yaml"), *small]) == 0
        out = capsys.readouterr().out
        assert f"stage {stage}: 1 steps" in out and f"memory estimate stage {stage}" in out
    assert (user_tree / "models/tiny-layerflow/transformer/config.json").exists()  # built on first use
    assert (user_tree / "out/train/tiny_stage1/final/transformer/config.json").exists()
    assert (user_tree / "out/train/tiny_stage2/final/motion_lora.safetensors").exists()
    assert (user_tree / "out/train/tiny_stage3/final/content_lora.safetensors").exists()

    out = user_tree / "sample"
    assert sample_workflow.main(["--config", str(ROOT / "configs/train/tiny_stage3.yaml"), "--fg", "a ball",
                                 "--bg", "a wall", "--blend", "a ball at a wall", "--out", str(out),
                                 "--steps", "2", *small[1:]]) == 0
    with av.open(str(out / "fg_rgba.mov")) as container:
        rgba = [f.to_ndarray(format="rgba") for f in container.decode(video=0)]
    assert len(rgba) == 8 and rgba[0].shape == (H, W, 4)
    assert {p.name for p in out.iterdir()} == {"fg_rgba.mov", "fg.mp4", "alpha.mkv", "bg.mp4", "blend.mp4"}


def test_sampling_a_stage1_config_uses_its_trained_export(user_tree, monkeypatch):
    """Stage-1 configs (e.g. cond_bg_stage1.yaml) name no transformer_dir: sampling must load that config's
    own export (transformer + layer embedder), never silently the untrained base model."""
    from layerflow_train import sample as sample_module

    small = ["optim.max_steps=1", f"data.height={H}", f"data.width={W}"]
    cfg = str(ROOT / "configs/train/tiny_stage1.yaml")
    args = ["--config", cfg, "--fg", "a", "--bg", "b", "--blend", "c", "--out", str(user_tree / "s"),
            "--steps", "1", *small[1:]]
    with pytest.raises(FileNotFoundError, match="stage-1 export"):
        sample_workflow.main(args)
    assert train_workflow.main(["--config", cfg, *small]) == 0
    seen = []
    real = sample_module.LayerFlowSampler

    def spy(model_cfg, lora_cfg=None, device=None):
        seen.append(model_cfg)
        return real(model_cfg, lora_cfg, device)

    monkeypatch.setattr(sample_module, "LayerFlowSampler", spy)
    assert sample_workflow.main(args) == 0
    final = Path("out/train/tiny_stage1/final")
    assert seen[0].transformer_dir == str(final / "transformer")
    assert seen[0].layer_embedder_path == str(final / "layer_embedder.safetensors")


def test_precompute_workflow_then_train_from_it(user_tree, capsys):
    from workflows import precompute as precompute_workflow

    cfg = str(ROOT / "configs/train/tiny_stage1.yaml")
    small = ["optim.max_steps=1", f"data.height={H}", f"data.width={W}", "data.precomputed_dir=out/pre"]
    assert precompute_workflow.main(["--config", cfg, "--local", *small]) == 0
    assert (user_tree / "out/pre/_meta.json").exists()
    assert train_workflow.main(["--config", cfg, *small]) == 0
    assert "stage 1: 1 steps" in capsys.readouterr().out
