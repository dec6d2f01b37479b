"""One run per output: an exclusive lock that a second coreecho run on the same output meets at once.

:func:`output_lock` takes an exclusive, non-blocking ``flock`` on a lock file next to the output (``.NAME.lock``;
for a folder ``runs/s1`` it is ``runs/.s1.lock``) and writes the holder's pid, command line, host and start time
into it. A second run on the same output gets a :class:`~coreecho.errors.BusyError` right away that names the
holder. The lock ends with the ``with`` block (the file is removed), and a lock whose process was killed is no
obstacle: the kernel releases a dead process's ``flock`` (a leftover file is just reused).

Platforms: Linux and macOS (``fcntl``). On a file system without ``flock`` support (some network mounts) and on
platforms without ``fcntl`` (Windows), no lock is taken and a :class:`UserWarning` says that concurrent runs on the
output are not detected; the run goes on. Locks are per machine: two machines writing one network folder are not
detected.

Example:
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "ef.csv")
    >>> with output_lock(out, command="predict"):
    ...     try:
    ...         with output_lock(out):
    ...             pass
    ...     except BusyError as err:
    ...         print("busy:", "predict" in str(err))
    busy: True
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from coreecho.errors import BusyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["output_lock", "lock_path", "lock_holder", "BusyError"]

_LOCK_TRIES = 5  # a holder that removes the file between our open and our flock: open again


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of ``output`` (a file or a folder): ``.NAME.lock`` next to it."""
    p = Path(output).absolute()
    return p.parent / f".{p.name}.lock"


def lock_holder(output: str | os.PathLike) -> dict[str, Any]:
    """What the lock file of ``output`` says about its holder (``{}`` when there is none or it cannot be read)."""
    try:
        data = json.loads(lock_path(output).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "another coreecho run"
    when = info.get("started")
    parts = [f"pid {info.get('pid', '?')}"]
    if info.get("host") and info.get("host") != socket.gethostname():
        parts.append(f"on {info['host']}")
    if when:
        parts.append(f"started {when}")
    command = str(info.get("command") or "")
    return f"another coreecho run ({', '.join(parts)}{f': {command[:200]}' if command else ''})"


@contextlib.contextmanager
def output_lock(output: str | os.PathLike, *, command: str | None = None) -> Iterator[Path | None]:
    """Hold the exclusive lock of ``output`` for the ``with`` block; yields the lock file (``None`` when unlocked).

    Args:
        output: the output file or folder (the lock file is created next to it; its folder must exist).
        command: what to write as the holder's command (default: the process's command line).

    Raises:
        BusyError: another process holds the lock (at once, no waiting); the message names it.
        OutputError: the lock file cannot be created (typed: permission, read-only, disk full).
    """
    path = lock_path(output)
    if fcntl is None:  # pragma: no cover - Windows
        warnings.warn(f"{output}: this platform has no fcntl; the output is not locked, so a second coreecho run "
                      "on it at the same time would not be detected", UserWarning, stacklevel=3)
        yield None
        return
    fd = _acquire(path, output)
    if fd is None:
        yield None
        return
    try:
        info = {"pid": os.getpid(), "command": command or " ".join(sys.argv), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "output": str(output)}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        except OSError:
            pass  # the lock holds without its description
        yield path
    finally:
        try:
            os.unlink(path)  # still holding the lock: a waiting opener sees another file and tries again
        except OSError:
            pass
        os.close(fd)  # releases the flock


def _acquire(path: Path, output: str | os.PathLike) -> int | None:
    from coreecho._oserrors import as_output_error

    for _ in range(_LOCK_TRIES):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            typed = as_output_error(err, path)
            if typed is not None:
                raise typed from err
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BusyError(f"{output}: {_describe(lock_holder(output))} is writing this output (lock "
                                f"{path}); wait for it to finish, or choose another output") from None
            warnings.warn(f"{output}: the file system does not support locks ({err.strerror}); the output is not "
                          "locked, so a second coreecho run on it at the same time would not be detected",
                          UserWarning, stacklevel=4)
            return None
        try:  # the file we locked must still be the one at the path (a holder may have removed it meanwhile)
            held, now = os.fstat(fd), os.stat(path)
            same = (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
        except OSError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise BusyError(f"{output}: its lock {path} keeps changing hands; another coreecho run is starting on this "
                    "output. Wait for it, or choose another output")
