"""Atomic file replacement: the one way coreecho writes a result file.

:func:`replace_atomically` writes a temporary file in the target's folder, flushes it to disk (``fsync``), renames it
over the target and flushes the folder, so a run killed or failing while writing leaves the target as it was (a
checkpoint, a CSV of predictions, a model file). The rules:

- **Only a regular file is replaced.** A symbolic link, a folder, a device (``/dev/null``), a FIFO or a socket at
  the target is refused with an :class:`~coreecho.errors.OutputError` naming the path *before* anything is written
  (:func:`check_output_target`, which commands call before any compute), and checked again right before the rename.
- **Modes.** A new file follows the process's umask (``0o666 & ~umask``, as ``open()`` would create it); a file that
  is replaced keeps its mode.
- **Typed failures.** A full disk, a quota, the file-size limit, a permission or a read-only file system become an
  :class:`~coreecho.errors.OutputError` subclass with one line naming the file (:mod:`coreecho._oserrors`); the
  temporary file is removed and the previous target is untouched.
- **Recognisable temporaries.** Temporary files are named ``.NAME.coreecho-PID-RANDOM.tmp`` (plus the writer's own
  suffix for writers that add one). :func:`clean_stale_temporaries` removes those of an interrupted write: only
  names of this pattern, only when their process no longer runs on this machine (or they are a day old), and only
  when untouched for a minute.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> replace_atomically(p, lambda fh: fh.write("done")).read_text()
    'done'
    >>> check_output_target(p.parent)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    coreecho.errors.OutputError: ...: is a folder, not a file; ...
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import IO, Any, Callable

from coreecho._oserrors import as_output_error
from coreecho.errors import OutputError

__all__ = ["replace_atomically", "check_output_target", "temporary_name", "install", "clean_stale_temporaries",
           "TEMPORARY_PATTERN", "STALE_AFTER_S"]

#: The temporary files of coreecho's writers: ``.NAME.coreecho-PID-RANDOM.tmp``, then an optional writer's suffix.
TEMPORARY_PATTERN = r"^\.{name}\.coreecho-(?P<pid>\d+)-[0-9a-f]+\.tmp(\.[A-Za-z0-9]+)?$"
#: A temporary is only removed when it has not been modified for this long (a writer in progress touches it).
STALE_AFTER_S = 60.0
#: ... and when its process is gone, or in any case after this long (a process id may be reused).
ABANDONED_AFTER_S = 24 * 3600.0
#: Temporaries of coreecho before 0.3 (``tempfile.mkstemp``: ``.NAME.XXXXXXXX.tmp``) are removed after an hour.
_LEGACY_PATTERN = r"^\.{name}\.[a-z0-9_]{{8}}\.tmp$"
_LEGACY_AFTER_S = 3600.0

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def check_output_target(path: str | os.PathLike) -> Path:
    """Refuse an output path that holds anything but a regular file (absent is fine); nothing is written.

    Raises:
        OutputError: ``path`` is a symbolic link (even to a regular file: it would replace the link), a folder, a
            device, a FIFO or a socket; the message names it and what to do.
    """
    p = Path(path)
    try:
        mode = os.lstat(p).st_mode
    except FileNotFoundError:
        return p
    except NotADirectoryError:
        return p  # a part of the path is a file: the write reports it with the file's name
    if stat.S_ISREG(mode):
        return p
    kind = next((what for test, what in _KINDS if test(mode)), "not a regular file")
    fix = "give a file name inside it" if stat.S_ISDIR(mode) else \
        "give the path of a regular file (the real file's path, for a link)" if stat.S_ISLNK(mode) else \
        "give the path of a regular file"
    raise OutputError(f"{p}: is {kind}, not a file; coreecho only replaces regular files. Nothing was written; {fix}")


def temporary_name(target: str | os.PathLike) -> Path:
    """A fresh temporary path next to ``target``, of the recognisable pattern (not created)."""
    t = Path(target)
    return t.absolute().parent / f".{t.name}.coreecho-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def _umask() -> int:
    try:  # Linux: read it without changing it (thread-safe)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _mode_for(target: Path) -> int:
    """The mode the file at ``target`` must have: its current mode, or what ``open()`` would create."""
    try:
        st = os.stat(target)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return 0o666 & ~_umask()


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename is done
    finally:
        os.close(fd)


def install(tmp: str | os.PathLike, target: str | os.PathLike, *, keep_previous: str | os.PathLike | None = None
            ) -> Path:
    """Finish an atomic write: give ``tmp`` the target's mode, flush it, rename it over ``target``, flush the folder.

    For writers that create the temporary file themselves (``np.savez``, ``safetensors.save_file``) at a
    :func:`temporary_name`. ``tmp`` is removed when this fails. With ``keep_previous``, the file being replaced
    is kept there first (a hard link, so ``target`` exists at every moment; a rename where links are not allowed).

    Raises:
        OutputError: ``target`` is not a regular file (anymore), or the flush or rename failed (typed: disk full...).
    """
    tmp, t = Path(tmp), Path(target)
    try:
        check_output_target(t)
        os.chmod(tmp, _mode_for(t))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        aside = None
        if keep_previous is not None and os.path.isfile(t) and not os.path.islink(t):
            aside = _link_aside(t, Path(keep_previous))
        try:
            os.replace(tmp, t)
        except BaseException:
            if aside is not None:  # the target was not replaced: the older previous file stays as it was
                _discard(aside)
            raise
        if aside is not None:
            os.replace(aside, keep_previous)
    except BaseException as err:
        _discard(tmp)
        _raise_typed(err, err, t)
    _fsync_folder(t.absolute().parent)
    return t


def _link_aside(target: Path, previous: Path) -> Path | None:
    """Hard-link ``target`` to a temporary name next to ``previous``; it becomes ``previous`` once ``target`` is
    replaced, so a failed replacement keeps the older ``previous``. Without hard links (some network or FAT file
    systems) ``target`` is moved to ``previous`` at once (a moment without target) and ``None`` is returned."""
    check_output_target(previous)
    link = temporary_name(previous)
    try:
        os.link(target, link)
    except OSError:
        os.replace(target, previous)
        return None
    return link


def replace_atomically(target: str | os.PathLike, write: Callable[[Any], Any], *, binary: bool = False,
                       path: bool = False, keep_previous: str | os.PathLike | None = None) -> Path:
    """Call ``write`` on a temporary file next to ``target``, then rename it over ``target`` (see the module doc).

    Args:
        target: the file to write or replace (absent, or a regular file).
        write: called with the open temporary file (text, UTF-8, ``newline=""``; bytes with ``binary``), or with its
            path when ``path`` is true (for writers that open the file themselves; they must write exactly there).
        binary: open the temporary file in binary mode.
        path: pass the temporary file's path instead of an open file.
        keep_previous: keep the file being replaced at this path (see :func:`install`).

    Returns:
        ``target`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the target is a link, folder, device, FIFO or socket (nothing written), or writing failed for a
            reason of the file system (disk full, permission, read-only): the previous file is left as it was.
        Exception: whatever ``write`` raises for other reasons, unchanged (the temporary file is removed).
    """
    t = Path(target)
    check_output_target(t)
    tmp = temporary_name(t)
    recorder: _Recorder | None = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as err:
        _raise_typed(err, err, t)
    try:
        if path:
            os.close(fd)
            write(tmp)
        else:
            fh: IO[Any]
            with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8")) as fh:
                recorder = _Recorder(fh)
                write(recorder)
                fh.flush()
    except BaseException as err:
        _discard(tmp)
        failed = recorder.error if recorder is not None and recorder.error is not None else err
        _raise_typed(err, failed if isinstance(err, Exception) else err, t)
    return install(tmp, t, keep_previous=keep_previous)


def _raise_typed(err: BaseException, cause: BaseException, target: Path) -> None:
    """Raise ``err`` as the typed :class:`OutputError` of ``cause`` (a file-system failure), else unchanged."""
    typed = as_output_error(cause, target)
    if typed is None or typed is err:
        raise err
    raise typed from err


class _Recorder:
    """A file whose failed writes are remembered: torch's writer hides the :class:`OSError` behind its own error."""

    def __init__(self, fh: IO[Any]):
        self._fh, self.error = fh, None

    def write(self, data: Any) -> Any:
        try:
            return self._fh.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        try:
            self._fh.flush()
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def _discard(tmp: Path) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":
        return True  # (on Windows, os.kill would end the process: only age decides there)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: keep
    return True


def clean_stale_temporaries(folder: str | os.PathLike, name: str, *, now: float | None = None) -> list[Path]:
    """Remove the temporary files an interrupted write of ``folder/name`` left behind; returns those removed.

    Only files of :data:`TEMPORARY_PATTERN` for ``name`` (and the ``.NAME.XXXXXXXX.tmp`` of older coreecho versions,
    after an hour) are considered, and only those untouched for :data:`STALE_AFTER_S` whose writing process no
    longer runs on this machine (or that are a day old). Files that cannot be removed are left (no error).
    """
    d = Path(folder)
    now = time.time() if now is None else now
    ours = re.compile(TEMPORARY_PATTERN.format(name=re.escape(name)))
    legacy = re.compile(_LEGACY_PATTERN.format(name=re.escape(name)))
    removed: list[Path] = []
    try:
        entries = list(os.scandir(d))
    except OSError:
        return removed
    for entry in entries:
        match, old = ours.match(entry.name), legacy.match(entry.name)
        if match is None and old is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        age = now - st.st_mtime
        if match is not None:
            stale = age > STALE_AFTER_S and (age > ABANDONED_AFTER_S or not _process_alive(int(match["pid"])))
        else:
            stale = age > _LEGACY_AFTER_S
        if stale:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed
