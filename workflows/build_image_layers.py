"""Build static layered videos from images / MULAN-style layer folders (LayerFlow stages 2/3, motion scale 1).

    python workflows/build_image_layers.py --config configs/image_layers.yaml [key.path=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from a checkout

from dataset_builder.derived.cli import derived_main
from workflows._cli import run_cli
from dataset_builder.derived.config import load_image_layers_config
from dataset_builder.derived.pipeline import run_image_layers


def main(argv: list[str] | None = None) -> int:
    return derived_main(argv, doc=__doc__,
                        default_config="configs/image_layers.yaml",
                        overrides_example="input.paths=[imgs] frames.height=240",
                        load_config=load_image_layers_config, run=run_image_layers)


if __name__ == "__main__":
    run_cli(main)
