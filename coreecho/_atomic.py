"""Atomic file replacement: write a temporary file in the target's folder, flush it to disk, rename it over the target.

A run killed or failing while writing leaves the target as it was (a checkpoint, a CSV of predictions).

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> replace_atomically(p, lambda fh: fh.write("done")).read_text()
    'done'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["replace_atomically"]


def replace_atomically(target: str | os.PathLike, write: Callable[[IO[Any]], Any], *, binary: bool = False) -> Path:
    """Call ``write(fh)`` on a temporary file next to ``target`` (text, or bytes with ``binary``), then rename it."""
    t = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{t.name}.", suffix=".tmp", dir=t.absolute().parent)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8")) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, t)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return t
