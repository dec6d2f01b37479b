"""Reading echocardiogram videos: video files, DICOM cines, ``.npy`` files and in-memory arrays.

Every reader returns a :class:`Video` whose ``frames`` are ``uint8`` RGB ``[T, H, W, 3]``. A reader can
decode only some frames (``indices=``), which is what clip sampling uses: :func:`probe_video` tells the
length cheaply, the sampler picks the frames the clips need, and only those are decoded.

Backends for video containers (AVI, MP4, MOV, MKV, GIF, ...):

* ``"pyav"`` (PyAV / FFmpeg). Used first by ``backend="auto"``: it reads the container's packet index
  without decoding, detects truncated files, and decodes only the packets of the requested frames when
  the codec is intra-only (MJPEG, the codec of EchoNet-Dynamic-style AVIs); otherwise it decodes
  sequentially up to the last requested frame and converts only the requested ones.
* ``"decord"``: ``decord.VideoReader.get_batch`` over contiguous runs of the requested frames.
  ``"auto"`` falls back to it only when PyAV is missing or FFmpeg cannot open the file at all; a decode
  error after opening (size change, corrupt packet, truncation) is reported, never retried.

All functions here are thin wrappers over the readers of :func:`coreecho.video.open_video`, which probe a
file once and enforce :class:`coreecho.video.Limits` before allocating anything.

DICOM files (``.dcm``/``.dicom``, or any file with ``DICM`` at byte 128) are read with pydicom (the
``dicom`` extra): multi-frame MONOCHROME1/2, RGB, YBR_FULL/YBR_FULL_422 (JPEG baseline included) and
PALETTE COLOR cines become 8-bit RGB; the frame rate comes from FrameTime, CineRate or
RecommendedDisplayFrameRate.

A 1-frame video reads fine (``Video.n_frames == 1``); clip sampling
(:mod:`coreecho.video.sampling`, and so :class:`~coreecho.video.pipeline.ClipPipeline`) refuses videos with fewer than 2 frames, so callers that
need motion get a clear error there.

Example:
    >>> import numpy as np
    >>> from coreecho.video.io import as_frames
    >>> as_frames(np.zeros((4, 8, 8), dtype=np.float32)).shape
    (4, 8, 8, 3)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coreecho.errors import InputError
from coreecho.video.arrays import as_frames, limits_from
from coreecho.video.base import (DEFAULT_MAX_BYTES, DEFAULT_MAX_SIDE, DICOM_EXTENSIONS, VIDEO_EXTENSIONS, Video,
                                 VideoInfo, validate_indices)
from coreecho.video.containers import import_av
from coreecho.video.limits import Limits
from coreecho.video.readers import open_video

__all__ = [
    "Video",
    "VideoInfo",
    "read_video",
    "probe_video",
    "load_video",
    "as_frames",
    "write_video",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SIDE",
    "VIDEO_EXTENSIONS",
    "DICOM_EXTENSIONS",
]


def _require_path(path: Any) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(repr(path)[:80], f"expected a path (str or os.PathLike), got {type(path).__name__}; "
                         "for arrays and tensors use as_frames() or load_video()")


def probe_video(path: str | os.PathLike, *, backend: str = "auto", limits: Limits | None = None) -> VideoInfo:
    """Frame count, fps and frame size of a file, without decoding its frames (``open_video(path).info``).

    Video containers are probed by reading the packet index once (no decoding); truncated files (fewer frames
    than the header declares), 0-frame files and non-video containers raise. DICOM files are probed from their
    header, checked against the pixel data; ``.npy`` files from the array header, checked against the file size.

    Args:
        path: a video, DICOM or ``.npy`` file.
        backend: ``"auto"``, ``"pyav"`` or ``"decord"`` for video containers.
        limits: see :class:`~coreecho.video.Limits`.

    Returns:
        A :class:`VideoInfo`.

    Raises:
        VideoReadError: missing, empty, directory, truncated, 0 frames, not a video, header that lies.
        MissingDependencyError: pydicom missing for a DICOM file.

    Example:
        >>> info = probe_video("a4c.avi")  # doctest: +SKIP
        >>> info.n_frames, info.fps, info.height, info.width  # doctest: +SKIP
        (173, 50.0, 112, 112)
    """
    _require_path(path)
    with open_video(path, backend=backend, limits=limits) as reader:
        return reader.info


def read_video(
    path: str | os.PathLike,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    backend: str = "auto",
    max_bytes: int | None = None,
    max_side: int | None = None,
    limits: Limits | None = None,
) -> Video:
    """Read a video, DICOM cine or ``.npy`` file into ``uint8`` RGB frames.

    Args:
        path: the file. DICOM is recognised by extension or by the ``DICM`` magic; ``.npy`` by extension;
            anything else is opened as a video container (AVI, MP4, MOV, MKV, GIF, ...).
        indices: frame numbers to decode (in the order given; repeats allowed). ``None`` decodes all.
            Only these frames are decoded where the format allows it.
        backend: for video containers: ``"auto"`` (PyAV, falling back to decord only when PyAV is missing or
            cannot open the file), ``"pyav"`` or ``"decord"``. DICOM and ``.npy`` ignore it.
        max_bytes: refuse to decode more than this many bytes (uint8 RGB output; raw pixels for DICOM when
            larger); default ``limits.max_bytes`` (2 GiB).
        max_side: refuse frames higher or wider than this; default ``limits.max_side`` (4096).
        limits: all the limits (:class:`~coreecho.video.Limits`); ``max_bytes``/``max_side`` override its fields.

    Returns:
        A :class:`Video`; ``video.n_frames`` is the file's full length and ``video.frame_indices`` says which
        frames ``video.frames`` holds. A 1-frame file reads fine (clip extraction refuses it later).

    Raises:
        VideoReadError: missing path, directory, empty, truncated or corrupt file, not a video, 0 frames,
            DICOM without pixel data, a header that lies, frames that change size.
        InputError: bad ``indices``/``backend``, or a size over the limits.
        MissingDependencyError: pydicom (``dicom`` extra) or an image decoder for a compressed DICOM
            transfer syntax is missing, or the requested backend is not installed.

    Example:
        >>> v = read_video("a4c.avi", indices=[0, 4, 8])  # doctest: +SKIP
        >>> v.frames.shape, v.n_frames  # doctest: +SKIP
        ((3, 112, 112, 3), 173)
    """
    _require_path(path)
    with open_video(path, backend=backend, limits=limits_from(max_bytes, max_side, limits)) as reader:
        info = reader.info
        idx = validate_indices(info.source, indices, info.n_frames)
        frames = reader.read(idx)
        return Video(frames, info.fps, info.source, info.n_frames, idx, info.backend, dict(reader.metadata))


def load_video(
    video: Any,
    *,
    indices: Sequence[int] | None = None,
    backend: str = "auto",
    source: str | None = None,
    fps: float | None = None,
    max_bytes: int | None = None,
    max_side: int | None = None,
    limits: Limits | None = None,
) -> Video:
    """A :class:`Video` from a path, an array/tensor of frames, or a :class:`Video`.

    Args:
        video: path (str or PathLike), array or tensor (see :func:`as_frames`), or a :class:`Video`.
        indices: frames to keep (all when ``None``).
        backend: decoder for video files (see :func:`read_video`).
        source: name for error messages of in-memory input (default ``"array"``).
        fps: frame rate of in-memory input (files carry their own).
        max_bytes: size limit (bytes), see :func:`read_video`.
        max_side: size limit (pixels per side), see :func:`read_video`.
        limits: see :class:`~coreecho.video.Limits`.

    Returns:
        The :class:`Video`.

    Example:
        >>> import numpy as np
        >>> load_video(np.zeros((5, 8, 8), np.uint8), indices=[0, 4]).frames.shape
        (2, 8, 8, 3)
    """
    if isinstance(video, (str, os.PathLike)):
        return read_video(video, indices=indices, backend=backend, max_bytes=max_bytes, max_side=max_side,
                          limits=limits)
    if isinstance(video, Video) and indices is None:
        return video
    lim = limits_from(max_bytes, max_side, limits)
    reader = open_video(video, limits=lim, fps=fps, name=source)
    info = reader.info
    idx = validate_indices(info.source, indices, info.n_frames)
    frames = reader.read(idx)
    if isinstance(video, Video):
        return Video(frames, video.fps, video.source, video.n_frames, idx, video.backend, dict(video.metadata))
    return Video(frames, fps, info.source, info.n_frames, idx, "array")


# ----------------------------------------------------------------------------------------------------------
# writing


def write_video(
    path: str | os.PathLike,
    frames: Any,
    fps: float,
    *,
    codec: str = "mjpeg",
    bit_rate: int = 8_000_000,
) -> Path:
    """Write frames to a video file with PyAV (MJPEG in AVI by default, as EchoNet-style files).

    MJPEG is intra-only: every frame can be decoded alone, and both PyAV and decord read it.

    Args:
        path: output file; the container follows the extension (``.avi``, ``.mp4``, ``.mkv``...).
        frames: anything :func:`as_frames` accepts.
        fps: frame rate written to the container (an integer rate is stored exactly).
        codec: FFmpeg encoder name (``"mjpeg"``, ``"libx264"``, ``"mpeg4"``, ``"gif"``...).
        bit_rate: target bit rate; the default keeps MJPEG near-lossless at 112x112.

    Returns:
        The path written.

    Example:
        >>> import numpy as np
        >>> write_video("/tmp/x.avi", np.zeros((4, 16, 16), np.uint8), fps=50)  # doctest: +SKIP
        PosixPath('/tmp/x.avi')
    """
    from fractions import Fraction  # noqa: PLC0415

    av = import_av(str(path))
    data = as_frames(frames, str(path))
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise InputError(str(path), f"fps must be a positive number, got {fps!r}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    h, w = data.shape[1:3]
    if codec not in ("mjpeg", "gif") and (h % 2 or w % 2):
        raise InputError(str(path), f"codec {codec} needs even frame sizes, got {h}x{w}")
    container = av.open(str(p), mode="w")
    try:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = {"mjpeg": "yuvj420p", "gif": "rgb8"}.get(codec, "yuv420p")
        if codec != "gif":
            stream.codec_context.bit_rate = int(bit_rate)
        for frame in data:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return p
