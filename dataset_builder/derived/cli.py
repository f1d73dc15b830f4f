"""The command line shared by workflows/build_copypaste.py and workflows/build_image_layers.py:
``--config PATH [key.path=value ...]``, log to stderr, print the run's JSON summary."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from typing import Any


def derived_main(argv: list[str] | None, *, doc: str | None, default_config: str, overrides_example: str,
                 load_config: Callable[[str, list[str]], Any], run: Callable[[Any], dict[str, Any]]) -> int:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=default_config)
    parser.add_argument("--local", action="store_true", help="run the stages in this process, without Ray")
    parser.add_argument("overrides", nargs="*", help=f"config overrides, e.g. {overrides_example}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(run(load_config(args.config, args.overrides), use_ray=not args.local), indent=1))
    return 0
