"""Build static layered videos from images / MULAN-style layer folders (LayerFlow stages 2/3, motion scale 1).

    python workflows/build_image_layers.py --config configs/image_layers.yaml [key.path=value ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from a checkout

from dataset_builder.derived.config import load_image_layers_config
from dataset_builder.derived.pipeline import run_image_layers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/image_layers.yaml")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. input.paths=[imgs] frames.height=240")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(run_image_layers(load_image_layers_config(args.config, args.overrides)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
