"""The runner shared by the stage scripts: read and check every param first, then do the work.

Each stage module defines ``configure(params, argv) -> config`` (reads only the params keys the stage declares in
dvc.yaml, checks them, touches no file) and ``run(config)``. tests/test_stage_params.py checks the keys.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ldp.config import load_params
from ldp.errors import run_guarded

C = TypeVar("C")


def params_path(argv: list[str]) -> tuple[Path, list[str]]:
    """``--params FILE`` (default ``params.yaml``) and the remaining arguments."""
    rest, path = list(argv), Path("params.yaml")
    if "--params" in rest:
        i = rest.index("--params")
        if i + 1 >= len(rest):
            raise ValueError("--params: expected a file")
        path = Path(rest[i + 1])
        del rest[i : i + 2]
    return path, rest


def run_stage(configure: Callable[[Mapping[str, Any], list[str]], C], run: Callable[[C], None],
              argv: list[str] | None = None) -> None:
    """``run(configure(params, argv))``; a known error is one line on stderr and exit status 2."""
    argv = sys.argv[1:] if argv is None else argv

    def go() -> None:
        path, rest = params_path(argv)
        run(configure(load_params(path), rest))

    status = run_guarded(go, f"stage {Path(sys.argv[0]).stem}")
    if status:
        sys.exit(status)


def one_arg(argv: list[str], what: str) -> str:
    """The stage's one argument (an experiment or blur-map id)."""
    if len(argv) != 1:
        raise ValueError(f"usage: python -m pipelines.<stage> <{what}> [--params FILE]")
    return argv[0]


def no_args(argv: list[str], stage: str) -> None:
    """A stage that takes no argument besides ``--params``."""
    if argv:
        raise ValueError(f"usage: python -m pipelines.{stage} [--params FILE]")
