"""Paths and the error wrapper shared by the stage scripts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from ldp.config import load_params
from ldp.runs import Layout

PARAMS = Path("params.yaml")
LAYOUT = Layout()
DATASET, BLURMAPS, CHECKPOINTS, RESULTS = LAYOUT.dataset, LAYOUT.blurmaps, LAYOUT.checkpoints, LAYOUT.results


def run_stage(main: Callable[[dict, list[str]], None]) -> None:
    """Run ``main(params, argv)``; a known error becomes one line on stderr and exit status 1."""
    try:
        main(load_params(PARAMS), sys.argv[1:])
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(1)


def one_arg(argv: list[str], what: str) -> str:
    if len(argv) != 1:
        raise ValueError(f"usage: python -m pipelines.<stage> <{what}>")
    return argv[0]
