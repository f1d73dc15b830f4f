"""Shared CLI behaviour: user errors (missing files or weights, invalid config) print one line and exit 2;
set LAYERFLOW_DEBUG=1 for the traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from pydantic import ValidationError

from dataset_builder.io.shard_writer import DiskFull, OutputDirBusy

#: DiskFull: the writer already removed its partial files; OutputDirBusy: another build holds the lease.
USER_ERRORS = (FileNotFoundError, NotADirectoryError, ValidationError, ValueError, KeyError, DiskFull, OutputDirBusy)


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
