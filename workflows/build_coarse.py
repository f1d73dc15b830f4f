"""Build the coarse layered video dataset.

    python workflows/build_coarse.py --config configs/cpu.yaml [key.path=value ...]
    ray job submit --working-dir . -- python workflows/build_coarse.py --config configs/cpu.yaml

Runs on an embedded local Ray unless RAY_ADDRESS is set (``ray job submit`` sets it) or
``ray.address`` is given. Prints a JSON summary; exits non-zero if an input went unaccounted for.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from a checkout

from workflows._cli import run_cli  # noqa: E402

from dataset_builder.config import load_build_config
from dataset_builder.pipeline import run_build
from dataset_builder.stages.circuit_breaker import BuildAborted
from dataset_builder.stages.pool_sizing import format_cost_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--local", action="store_true", help="run the stages in this process, without Ray")
    parser.add_argument("--costs-from", metavar="DIR",
                        help="size the GPU pools by the stage costs measured in this earlier build's output dir "
                             "(ray.costs_from)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. output.dir=out/x clip.height=240")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = args.overrides + ([f"ray.costs_from={args.costs_from}"] if args.costs_from else [])
    cfg = load_build_config(args.config, overrides)
    try:
        summary = run_build(cfg, use_ray=not args.local)
    except BuildAborted as exc:  # systematic failure: one line, not a "successful" run of error rejects
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(summary, indent=1))
    if summary["stage_costs"]:
        print("measured stage costs (run_summary.json: stage_costs)\n" + format_cost_table(summary["stage_costs"]),
              file=sys.stderr)
    return 1 if summary["unaccounted_inputs"] else 0


if __name__ == "__main__":
    run_cli(main)
