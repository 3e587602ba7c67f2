"""Atomic file and folder writes: build beside the target, then ``os.replace`` (never half-written output).
Also the one file hash of the suite (:func:`sha256_file`).

Files and folders get the permissions a plain ``open``/``mkdir`` would give (0o666/0o777 minus the umask),
not the owner-only 0o600/0o700 of ``mkstemp``/``mkdtemp``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _read_umask() -> int:
    try:  # Linux: read it without the racy set-and-restore dance
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()
HASH_CHUNK = 1 << 20
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, fsync: bool = False,
                newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temp file beside ``path`` for writing; on a clean exit it replaces ``path``, else it is removed.

    ``mode`` is ``"wb"`` or ``"w"`` (UTF-8 text); the parent folder is created if needed.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[IO[Any]], object], mode: str = "wb", *,
                 fsync: bool = False, newline: str | None = None) -> Path:
    """Call ``write(fh)`` on a temp file beside ``path``, then move it into place; returns ``Path(path)``."""
    with atomic_open(path, mode, fsync=fsync, newline=newline) as fh:
        write(fh)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data), "wb")


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text), "w")


def atomic_write_json(path: str | Path, data: Any, **dumps_kwargs: Any) -> Path:
    """``json.dumps(data, indent=2, **dumps_kwargs)`` plus a final newline, written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, **dumps_kwargs) + "\n")


def temp_dir_beside(final: str | Path, tag: str = "tmp") -> Path:
    """A fresh folder next to ``final`` (same file system, so it can be renamed onto it)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.{tag}-"))
    os.chmod(tmp, DIR_MODE)
    return tmp


def replace_dir(tmp: str | Path, final: str | Path) -> Path:
    """Move a finished folder onto ``final``; a previous ``final`` is set aside first, then deleted."""
    tmp, final = Path(tmp), Path(final)
    os.chmod(tmp, DIR_MODE)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


@contextmanager
def atomic_dir(final: str | Path, tag: str = "tmp") -> Iterator[Path]:
    """Yield a temp folder beside ``final``; on a clean exit it replaces ``final``, else it is deleted."""
    tmp = temp_dir_beside(final, tag)
    try:
        yield tmp
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(HASH_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
