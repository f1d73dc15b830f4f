"""Every YAML under configs/ validates against the typed model it mirrors."""

from pathlib import Path

import pytest
import yaml

from dataset_builder.config import BuildConfig, apply_overrides, load_build_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _model_for(path: Path):
    rel = path.relative_to(CONFIGS)
    if rel.parts[0] == "train":
        from layerflow_train.config import TrainConfig

        return TrainConfig
    if path.stem.startswith("copypaste"):
        from dataset_builder.derived.config import CopyPasteConfig

        return CopyPasteConfig
    if path.stem.startswith("image_layers"):
        from dataset_builder.derived.config import ImageLayersConfig

        return ImageLayersConfig
    return BuildConfig


ALL_YAML = sorted(CONFIGS.rglob("*.yaml"))


def test_there_are_configs():
    assert {"cpu.yaml"} <= {p.name for p in ALL_YAML}


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_yaml_validates(path):
    data = yaml.safe_load(path.read_text())
    _model_for(path).model_validate(data)


def test_unknown_keys_and_bad_values_are_errors():
    with pytest.raises(ValueError, match="extra"):
        BuildConfig.model_validate({"clip": {"num_frame": 16}})
    with pytest.raises(ValueError, match="even"):
        BuildConfig.model_validate({"clip": {"height": 481}})


def test_overrides_and_processing_hash(tmp_path):
    cfg = load_build_config(CONFIGS / "cpu.yaml", ["clip.height=240", "output.dir=/tmp/x"])
    assert cfg.clip.height == 240 and cfg.output.dir == "/tmp/x"
    base = load_build_config(CONFIGS / "cpu.yaml")
    moved = load_build_config(CONFIGS / "cpu.yaml", ["output.dir=elsewhere", "ray.num_cpus=8"])
    assert base.processing_hash() == moved.processing_hash()  # paths/parallelism don't change samples
    assert base.processing_hash() != cfg.processing_hash()
    with pytest.raises(ValueError, match="key.path=value"):
        apply_overrides({}, ["nonsense"])


def test_override_through_a_value_is_an_error():
    with pytest.raises(ValueError, match="not a section"):
        apply_overrides({"clip": 3}, ["clip.height=2"])
