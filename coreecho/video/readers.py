"""One entry point to every video source: :func:`open_video` picks the reader and probes the source once.

Readers (all :class:`~coreecho.video.base.VideoReader`): :class:`~coreecho.video.containers.PyAVReader`,
:class:`~coreecho.video.containers.DecordReader`, :class:`~coreecho.video.dicom.DicomReader`,
:class:`~coreecho.video.arrays.NpyReader` and :class:`~coreecho.video.arrays.ArrayReader`.

:data:`~coreecho.video.limits.READABLE_EXTENSIONS` is the one list of file extensions the readers take by design
(containers, DICOM, ``.npy``); ``coreecho predict DIR`` picks up exactly these files in a folder.

Backend policy for video containers (``backend="auto"``): PyAV first; decord only when PyAV cannot open
the file at all (PyAV not installed, or FFmpeg cannot open or identify the container). An error after
opening (a refused container, a size change, a truncated or corrupt file, a limit) is reported, never
retried with another decoder.

Example:
    >>> import numpy as np
    >>> from coreecho.video import open_video
    >>> reader = open_video(np.zeros((10, 16, 16), np.uint8), fps=50.0, name="item 0")
    >>> reader.info.n_frames, reader.info.backend, reader.read([0, 9]).shape
    (10, 'array', (2, 16, 16, 3))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from coreecho.errors import InputError, MissingDependencyError, VideoReadError
from coreecho.video import containers  # its readers are looked up at call time (tests replace them there)
from coreecho.video.arrays import ArrayReader, NpyReader
from coreecho.video.base import Video, VideoReader
from coreecho.video.dicom import DicomReader
from coreecho.video.limits import DEFAULT_LIMITS, DICOM_EXTENSIONS, NPY_EXTENSIONS, Limits

__all__ = ["open_video", "BACKENDS"]

#: Values of ``backend=``.
BACKENDS: tuple[str, ...] = ("auto", "pyav", "decord")


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise VideoReadError(str(p), "no such file; check the path")
    if p.is_dir():
        raise VideoReadError(str(p), "is a directory, expected a video, DICOM or .npy file")
    if p.stat().st_size == 0:
        raise VideoReadError(str(p), "is an empty file (0 bytes); it was probably not copied or written completely")
    return p


def _is_dicom(p: Path) -> bool:
    if p.suffix.lower() in DICOM_EXTENSIONS:
        return True
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise VideoReadError(str(p), f"cannot be opened: {exc}") from exc
    return len(head) == 132 and head[128:132] == b"DICM"


def _open_container(p: Path, backend: str, limits: Limits) -> VideoReader:
    DecordReader, PyAVReader, _CannotOpen = containers.DecordReader, containers.PyAVReader, containers._CannotOpen
    if backend == "decord":
        return DecordReader(p, limits)
    try:
        return PyAVReader(p, limits)
    except MissingDependencyError:
        if backend == "pyav":
            raise
        return DecordReader(p, limits)
    except _CannotOpen as av_error:
        if backend == "pyav":
            raise
        try:
            return DecordReader(p, limits)
        except MissingDependencyError:
            raise av_error from None
        except VideoReadError as dec_error:
            if isinstance(dec_error, _CannotOpen):
                raise VideoReadError(str(p), f"{av_error.problem}; decord cannot open it either") from None
            raise


def open_video(source: Any, *, backend: str = "auto", limits: Limits | None = None, fps: float | None = None,
               name: str | None = None) -> VideoReader:
    """Open a video and probe it once: the reader's ``info`` is ready, ``read(indices)`` decodes only those frames.

    Args:
        source: a path (video container, DICOM, ``.npy``), a numpy array / torch tensor of frames ``(T, H, W)``
            or ``(T, H, W, C)``, or a :class:`~coreecho.video.Video`.
        backend: for video containers: ``"auto"`` (PyAV; decord only when PyAV cannot open the file at all),
            ``"pyav"`` or ``"decord"``. DICOM, ``.npy`` and arrays ignore it.
        limits: the :class:`~coreecho.video.limits.Limits` to enforce (default :data:`DEFAULT_LIMITS`).
        fps: frame rate of in-memory input (files carry their own).
        name: how in-memory input is named in errors (default ``"array"``).

    Returns:
        A :class:`~coreecho.video.base.VideoReader` (use it as a context manager, or call ``close()``).

    Raises:
        VideoReadError: missing/empty file, not a video container (text, HTML, subtitles, one image), header
            that lies about what the file holds, truncated or corrupt file, frame size changes.
        InputError: bad argument or input shape; a size over ``limits``.
        MissingDependencyError: the decoder needed (PyAV/decord, pydicom, a DICOM codec) is not installed.

    Example:
        >>> with open_video("a4c.avi") as reader:  # doctest: +SKIP
        ...     reader.info.n_frames, reader.read([0, 10, 20]).shape
        (173, (3, 112, 112, 3))
    """
    if backend not in BACKENDS:
        raise InputError(f"backend={backend!r}", f"unknown backend; use one of {list(BACKENDS)}")
    if limits is None:
        limits = DEFAULT_LIMITS
    elif not isinstance(limits, Limits):
        raise InputError(f"limits={limits!r}"[:80], "expected a coreecho.video.Limits")
    if isinstance(source, (str, os.PathLike)):
        p = _check_path(source)
        if p.suffix.lower() in NPY_EXTENSIONS:
            return NpyReader(p, limits)
        if _is_dicom(p):
            return DicomReader(p, limits)
        return _open_container(p, backend, limits)
    if isinstance(source, Video):
        return ArrayReader(source, name=name, limits=limits)
    return ArrayReader(source, fps=fps, name=name, limits=limits)
