"""Failures of the file system named for what they are: disk full, permission denied, read-only, file-size limit.

:func:`as_output_error` turns an :class:`OSError` (or the error of a library that wraps one: torch's
``[enforce fail at inline_container.cc ...]``, safetensors' ``SafetensorError ... (os error 28)``) raised while writing
a file into an :class:`~coreecho.errors.OutputError` subclass whose message is one line naming the file and what to
do. Anything else gives ``None`` (the caller re-raises the original).

Example:
    >>> import errno
    >>> err = as_output_error(OSError(errno.ENOSPC, "No space left on device"), "runs/a/ckpt.pt")
    >>> type(err).__name__
    'DiskFullError'
    >>> print(err)  # doctest: +NORMALIZE_WHITESPACE
    runs/a/ckpt.pt: cannot be written: the disk is full (No space left on device); free some space or write
    elsewhere. The previous file, if any, is unchanged
"""

from __future__ import annotations

import errno
import os
import re

from coreecho.errors import DiskFullError, NotWritableError, OutputError

__all__ = ["as_output_error", "errno_of", "os_error_hint"]

_FULL = {errno.ENOSPC: ("the disk is full", "free some space or write elsewhere"),
         errno.EFBIG: ("the file-size limit is reached", "raise the file-size limit (ulimit -f) or write elsewhere")}
if hasattr(errno, "EDQUOT"):
    _FULL[errno.EDQUOT] = ("the disk quota is exceeded", "free some space or write elsewhere")
_DENIED = {errno.EACCES: ("permission denied", "check the permissions of the file and its folder, or write elsewhere"),
           errno.EPERM: ("operation not permitted", "check the permissions of the file and its folder, or write "
                         "elsewhere"),
           errno.EROFS: ("the file system is read-only", "write elsewhere")}
#: What to do about a failed file operation, by errno: the write failures above plus path mistakes.
_HINTS = {**{code: fix for code, (_what, fix) in {**_FULL, **_DENIED}.items()},
          errno.EISDIR: "give a file name, not a folder", errno.ENOENT: "check the path",
          errno.ENOTDIR: "a part of the path is a file, not a folder"}
_OS_CODE = re.compile(r"\(os error (\d+)\)|\[Errno (\d+)\]|code: (\d+)")
_TORCH_WRITE = ("inline_container.cc", "PytorchStreamWriter", "file write failed", "unexpected pos")


def os_error_hint(code: int | None) -> str:
    """What to do about a file operation that failed with ``code`` (an errno), or ``""`` when there is no advice.

    Example:
        >>> os_error_hint(errno.EROFS)
        'write elsewhere'
    """
    return _HINTS.get(code if code is not None else -1, "")


def errno_of(err: BaseException) -> int | None:
    """The ``errno`` of an :class:`OSError`, or the one a wrapping library quotes in its message (``os error 28``)."""
    if isinstance(err, OSError) and err.errno is not None:
        return err.errno
    match = _OS_CODE.search(str(err))
    if match is not None:
        return int(next(g for g in match.groups() if g is not None))
    if "No space left" in str(err):
        return errno.ENOSPC
    return None


def as_output_error(err: BaseException, path: str | os.PathLike) -> OutputError | None:
    """``err``, raised while writing ``path``, as a typed one-line :class:`OutputError`; ``None`` if not a file-system
    failure (the caller re-raises ``err``). An :class:`OutputError` is returned unchanged."""
    if isinstance(err, OutputError):
        return err
    if not isinstance(err, Exception):
        return None  # KeyboardInterrupt, SystemExit: not a failure of the file system
    code = errno_of(err)
    if not isinstance(err, OSError) and code is None:
        text = str(err)
        if type(err).__name__ == "SafetensorError" or any(m in text for m in _TORCH_WRITE):
            if isinstance(err, RuntimeError) or type(err).__name__ == "SafetensorError":
                return OutputError(f"{path}: cannot be written: the write failed part-way ({_first_line(text)}); the "
                                   "disk may be full or the file-size limit reached: free some space or write "
                                   "elsewhere. The previous file, if any, is unchanged")
        return None
    if code is None:
        return None
    detail = getattr(err, "strerror", None) or _first_line(str(err))
    tail = "The previous file, if any, is unchanged"
    if code in _FULL:
        what, fix = _FULL[code]
        return DiskFullError(f"{path}: cannot be written: {what} ({detail}); {fix}. {tail}")
    if code in _DENIED:
        what, fix = _DENIED[code]
        return NotWritableError(f"{path}: cannot be written: {what}; {fix}. {tail}")
    if isinstance(err, OSError) and code in (errno.EIO,):
        return OutputError(f"{path}: cannot be written: input/output error ({detail}); check the disk or write "
                           f"elsewhere. {tail}")
    return None


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[: limit - 1] + "…"
