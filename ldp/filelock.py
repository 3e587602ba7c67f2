"""An inter-process lock on a file (``fcntl.flock``): it dies with its process, so a SIGKILL never leaves it held.

The lock file is removed on release while still held; a process that opened the old file before the removal
notices (the path no longer names its file) and opens it again, so two processes never both hold "the" lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ldp.fsutil import FILE_MODE


class LockHeld(RuntimeError):
    """Another process holds the lock; the message names its pid and the lock file."""


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    except OSError:
        return "?"


@contextmanager
def exclusive_lock(path: str | Path, *, wait: bool, what: str = "") -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (created, with this pid written in it) for the ``with`` block.

    ``wait=False``: a lock held elsewhere raises :class:`LockHeld` at once, naming ``what`` and the holder's pid.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise LockHeld(f"{what or path}: in use by process {holder} (lock file {path}); wait for it to end "
                           "or stop it") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file after we opened it: take the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
