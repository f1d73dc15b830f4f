"""Build the copy-paste layered video dataset (LayerFlow stage 3, motion scale 0) from coarse shards.

    python workflows/build_copypaste.py --config configs/copypaste.yaml [key.path=value ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from a checkout

from dataset_builder.derived.config import load_copypaste_config
from dataset_builder.derived.pipeline import run_copypaste


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/copypaste.yaml")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. output.dir=out/x paste.seed=3")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(run_copypaste(load_copypaste_config(args.config, args.overrides)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
