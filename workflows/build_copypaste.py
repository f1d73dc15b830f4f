"""Build the copy-paste layered video dataset (LayerFlow stage 3, motion scale 0) from coarse shards.

    python workflows/build_copypaste.py --config configs/copypaste.yaml [key.path=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from a checkout

from dataset_builder.derived.cli import derived_main
from workflows._cli import run_cli
from dataset_builder.derived.config import load_copypaste_config
from dataset_builder.derived.pipeline import run_copypaste


def main(argv: list[str] | None = None) -> int:
    return derived_main(argv, doc=__doc__,
                        default_config="configs/copypaste.yaml",
                        overrides_example="output.dir=out/x paste.seed=3",
                        load_config=load_copypaste_config, run=run_copypaste)


if __name__ == "__main__":
    run_cli(main)
