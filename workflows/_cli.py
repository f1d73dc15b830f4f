"""Shared CLI behaviour: user errors (missing files or weights, invalid config) print one line and exit 2;
set LAYERFLOW_DEBUG=1 for the traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from pydantic import ValidationError

USER_ERRORS = (FileNotFoundError, NotADirectoryError, ValidationError, ValueError, KeyError)


def run_cli(main: Callable[[], int]) -> None:
    try:
        code = main()
    except USER_ERRORS as exc:
        if os.environ.get("LAYERFLOW_DEBUG"):
            raise
        message = str(exc).strip() or type(exc).__name__
        print(f"error: {message}\n(set LAYERFLOW_DEBUG=1 for the traceback)", file=sys.stderr)
        code = 2
    raise SystemExit(code)
