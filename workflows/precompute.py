"""Precompute VAE latents + T5 embeddings for a training config (Ray Data job), then train from them.

    python workflows/precompute.py --config configs/train/stage1.yaml data.precomputed_dir=out/pre/stage1 [--local]
    python workflows/train.py --config configs/train/stage1.yaml data.precomputed_dir=out/pre/stage1
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerflow_train.config import load_config
from workflows._cli import run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training config (configs/train/*.yaml)")
    parser.add_argument("--local", action="store_true", help="run in this process instead of on Ray")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. data.precomputed_dir=...")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load_config(args.config, args.overrides)
    if not cfg.data.precomputed_dir:
        parser.error("set data.precomputed_dir=... (where the latents go; the same value trains from them)")
    from layerflow_train.precompute import precompute

    root = precompute(cfg, use_ray=not args.local)
    print(f"precomputed into {root}; train with data.precomputed_dir={cfg.data.precomputed_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
