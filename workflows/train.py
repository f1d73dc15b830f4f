"""Train one LayerFlow stage.

    python workflows/train.py --config configs/train/stage1.yaml [optim.lr=5e-5 ...] [--ray]
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
    parser.add_argument("--config", required=True, help="configs/train/*.yaml")
    parser.add_argument("--ray", action="store_true", help="run with Ray Train (TorchTrainer, cfg.ray scaling)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.max_steps=10")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load_config(args.config, args.overrides)
    from layerflow_train.memory import estimate_for_config

    # before anything is loaded: the configured model on the meta device, so a user sees whether it fits
    print(estimate_for_config(cfg, cfg.ray.num_workers if args.ray else 1).summary(), flush=True)
    if args.ray:
        from layerflow_train.ray_train import fit_with_ray

        result = fit_with_ray(cfg)
        print(f"ray result: {result.metrics}")
    else:
        from layerflow_train.recipes import RECIPES
        from layerflow_train.recipes.common import run

        losses = run(cfg, RECIPES[cfg.stage]())
        print(f"stage {cfg.stage}: {len(losses)} steps, last loss {losses[-1] if losses else float('nan'):.4f}, "
              f"outputs in {Path(cfg.checkpoint.output_dir) / 'final'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
