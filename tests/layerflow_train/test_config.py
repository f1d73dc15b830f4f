from pathlib import Path

import pytest
from pydantic import ValidationError

from layerflow_train.config import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.stage in (1, 2, 3)
    assert cfg.data.frames_per_layer % 8 == 0
    if cfg.stage == 2:
        assert cfg.data.static == "all"


def test_overrides_parse_yaml_values():
    cfg = load_config(ROOT / "configs/train/stage1.yaml",
                      ["optim.lr=3e-5", "data.shards=[a, b]", "checkpoint.every_n_steps=7", "conditioning=fg",
                       "validation.every_n_steps=0"])  # conditional variants validate only with condition videos
    assert cfg.optim.lr == 3e-5 and cfg.data.shards == ["a", "b"]
    assert cfg.checkpoint.every_n_steps == 7 and cfg.conditioning == "fg"


def test_invalid_configs_rejected():
    with pytest.raises(ValidationError, match="multiple of 8"):
        load_config(ROOT / "configs/train/stage1.yaml", ["data.frames_per_layer=13"])
    with pytest.raises(ValidationError, match="motion_weights"):
        load_config(ROOT / "configs/train/stage3.yaml", ["lora.motion_weights=null"])
    with pytest.raises(ValidationError):
        load_config(ROOT / "configs/train/stage1.yaml", ["optim.typo=1"])
