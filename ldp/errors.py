"""One way to turn a user-input error into one line on stderr and exit status 2 (the ``ldp`` CLI and DVC stages)."""

from __future__ import annotations

import sys
from collections.abc import Callable

# Exit status for bad input (a params key, a file, an argument): the same as argparse's usage errors.
BAD_INPUT = 2
# A run stopped by SIGTERM after writing its checkpoint (ldp.train.TrainingTerminated): 128 + SIGTERM, as a shell.
TERMINATED = 143

# ConfigError, DatasetError, EvaluationError, ImageReadError, CheckpointError ... are ValueErrors; downloads raise
# RuntimeErrors; a missing file is a FileNotFoundError, an unknown name a KeyError.
KNOWN_ERRORS = (ValueError, KeyError, FileNotFoundError, RuntimeError)


def error_line(exc: BaseException) -> str:
    """The message of ``exc`` without KeyError's quotes."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def run_guarded(fn: Callable[[], object], prefix: str) -> int:
    """Run ``fn()``; a known error prints ``prefix: error: message`` and returns :data:`BAD_INPUT`, else 0.

    An interrupt that carries a message (a training stopped by SIGTERM after its checkpoint) prints it and returns
    :data:`TERMINATED`."""
    try:
        fn()
    except KNOWN_ERRORS as exc:
        print(f"{prefix}: error: {error_line(exc)}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt as exc:
        if not str(exc):
            raise  # Ctrl-C: Python's own message and status
        print(f"{prefix}: stopped: {exc}", file=sys.stderr)
        return TERMINATED
    return 0
