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
  ``"auto"`` falls back to it when PyAV is missing or cannot decode a file.

DICOM files (``.dcm``/``.dicom``, or any file with ``DICM`` at byte 128) are read with pydicom (the
``dicom`` extra): multi-frame MONOCHROME1/2, RGB, YBR_FULL/YBR_FULL_422 (JPEG baseline included) and
PALETTE COLOR cines become 8-bit RGB; the frame rate comes from FrameTime, CineRate or
RecommendedDisplayFrameRate.

A 1-frame video reads fine (``Video.n_frames == 1``); clip extraction
(:func:`coreecho.video.sampling.extract_clips`) refuses videos with fewer than 2 frames, so callers that
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

from coreecho.errors import InputError, MissingDependencyError, VideoReadError
from coreecho.video.base import (DEFAULT_MAX_BYTES, DEFAULT_MAX_SIDE, DICOM_EXTENSIONS, VIDEO_EXTENSIONS, Video,
                                 VideoInfo, _BACKENDS, _check_size, _gather, _validate_indices)
from coreecho.video.containers import _av_decode, _av_probe, _decord_decode, _decord_probe, _import_av
from coreecho.video.dicom import _dicom_header, _read_dicom

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

def _check_path(path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(repr(path)[:80], f"expected a path (str or os.PathLike), got {type(path).__name__}; "
                         "for arrays and tensors use as_frames() or load_video()")
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


def _kind(p: Path) -> str:
    if p.suffix.lower() == ".npy":
        return "npy"
    if _is_dicom(p):
        return "dicom"
    return "video"


# ----------------------------------------------------------------------------------------------------------
# arrays


def as_frames(
    array: Any,
    source: str = "array",
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
) -> np.ndarray:
    """Turn in-memory frames into ``uint8`` RGB ``[T, H, W, 3]``.

    Accepts numpy arrays and torch tensors shaped ``(T, H, W)`` (grey) or ``(T, H, W, C)`` with C = 1 (grey),
    3 (RGB) or 4 (RGBA, alpha dropped). Integer input must lie in 0..255; float input is taken as 0..255
    pixel values, rounded and clipped to 0..255. A ``uint8`` RGB array is returned as is (no copy).

    Args:
        array: the frames.
        source: how to name the input in error messages (``"array"``, ``"item 3"``, a path...).
        max_bytes: largest output size accepted (bytes).
        max_side: largest height or width accepted.

    Returns:
        ``np.ndarray`` of dtype ``uint8`` and shape ``[T, H, W, 3]``.

    Raises:
        InputError: wrong ndim or channel count, 0 frames, NaN/inf, values outside 0..255 for integers,
            floats that look normalised (0..1 or negative), or a size over the limits.

    Example:
        >>> import numpy as np
        >>> int(as_frames(np.full((2, 4, 4, 1), 300.7)).max())
        255
    """
    src = str(source)
    if hasattr(array, "detach") and hasattr(array, "cpu") and type(array).__module__.startswith("torch"):
        array = array.detach().cpu()
        if str(array.dtype) == "torch.bfloat16":
            array = array.float()
        array = array.numpy()
    if isinstance(array, Video):
        return array.frames
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except Exception as exc:  # noqa: BLE001 - anything numpy cannot take is bad input
            raise InputError(src, f"cannot be converted to an array ({type(array).__name__}): {exc}") from exc
    shape = tuple(array.shape)
    if array.ndim not in (3, 4):
        raise InputError(
            src,
            f"expected frames shaped (T, H, W) or (T, H, W, C), got {array.ndim}-D shape {shape}"
            + ("; for a single image add a frame axis, e.g. array[None]" if array.ndim == 2 else ""),
        )
    if array.ndim == 3 and shape[-1] in (1, 3, 4) and shape[0] > 4 and shape[1] > 4:
        raise InputError(
            src,
            f"shape {shape} looks like one (H, W, C) image, not (T, H, W) frames; "
            "pass array[None] for a single frame, or (T, H, W, C) frames",
        )
    if array.ndim == 4 and shape[-1] not in (1, 3, 4):
        hint = ""
        if shape[1] in (1, 3, 4):
            hint = "; it looks channel-first (T, C, H, W): move the channel axis last, e.g. x.permute(0, 2, 3, 1)"
        elif shape[0] in (1, 3, 4):
            hint = "; it looks like (C, T, H, W): move the channel axis last, e.g. x.permute(1, 2, 3, 0)"
        raise InputError(src, f"expected 1, 3 or 4 channels in the last axis, got shape {shape}{hint}")
    if 0 in shape:
        raise InputError(src, f"has no pixels (shape {shape}); a video needs at least one frame of at least 1x1")
    t, h, w = shape[:3]
    _check_size(src, t, h, w, 3, max_bytes, max_side, what="as_frames")

    dt = array.dtype
    if dt == np.uint8:
        out = array
    elif dt == np.bool_ or not (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
        raise InputError(src, f"unsupported dtype {dt}; expected uint8, another integer type or a float type")
    elif np.issubdtype(dt, np.integer):
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > 255:
            raise InputError(
                src,
                f"integer pixel values must lie in 0..255, found {lo}..{hi}; scale higher bit depths to 8 bits first",
            )
        out = array.astype(np.uint8)
    else:
        finite = np.isfinite(array)
        if not finite.all():
            n_nan = int(np.isnan(array).sum())
            n_inf = int(array.size - finite.sum() - n_nan)
            raise InputError(src, f"contains {n_nan} NaN and {n_inf} infinite values; pixel values must be finite")
        lo, hi = float(array.min()), float(array.max())
        if lo < -1.0:
            raise InputError(
                src,
                f"float values go down to {lo:.3g}; it looks normalised already. Pass raw pixel values in 0..255",
            )
        if 0.0 < hi <= 1.0:
            raise InputError(
                src, f"float values lie in {lo:.3g}..{hi:.3g}, which looks like 0..1 scaling; multiply by 255 first"
            )
        out = np.clip(np.rint(array), 0, 255).astype(np.uint8)

    from coreecho.video.transforms import to_rgb

    return np.ascontiguousarray(to_rgb(out))


def load_video(
    video: Any,
    *,
    indices: Sequence[int] | None = None,
    backend: str = "auto",
    source: str | None = None,
    fps: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
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

    Returns:
        The :class:`Video`.

    Example:
        >>> import numpy as np
        >>> load_video(np.zeros((5, 8, 8), np.uint8), indices=[0, 4]).frames.shape
        (2, 8, 8, 3)
    """
    if isinstance(video, (str, os.PathLike)):
        return read_video(video, indices=indices, backend=backend, max_bytes=max_bytes, max_side=max_side)
    if isinstance(video, Video):
        if indices is None:
            return video
        idx = _validate_indices(video.source, indices, video.n_frames)
        pos = {int(i): k for k, i in enumerate(video.frame_indices)}
        missing = [int(i) for i in idx if int(i) not in pos]
        if missing:
            raise InputError(video.source, f"frames {missing[:5]} were not decoded in this Video")
        rows = np.array([pos[int(i)] for i in idx], dtype=np.int64)
        return Video(video.frames[rows], video.fps, video.source, video.n_frames, idx, video.backend,
                     dict(video.metadata))
    src = source or "array"
    frames = as_frames(video, src, max_bytes=max_bytes, max_side=max_side)
    n = frames.shape[0]
    idx = _validate_indices(src, indices, n)
    if indices is not None:
        frames = frames[idx]
    return Video(frames, fps, src, n, idx, "array")


# ----------------------------------------------------------------------------------------------------------
# npy


def _npy_header(p: Path) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        with open(p, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    except Exception as exc:  # noqa: BLE001
        raise VideoReadError(str(p), f"is not a valid .npy file ({exc})") from exc
    return tuple(shape), dtype, fortran


def _read_npy(p: Path, indices, max_bytes: int, max_side: int) -> Video:
    shape, dtype, _ = _npy_header(p)
    if dtype.hasobject:
        raise VideoReadError(str(p), "holds Python objects (pickled data), which are not loaded for safety; "
                                     "save a plain numeric array")
    if len(shape) not in (3, 4):
        raise InputError(str(p), f"expected frames shaped (T, H, W) or (T, H, W, C), got shape {shape}")
    if shape[0] == 0:
        raise VideoReadError(str(p), "contains no frames (0-frame array)")
    idx = _validate_indices(str(p), indices, shape[0])
    _check_size(str(p), len(idx), shape[1], shape[2], max(3, dtype.itemsize * (shape[3] if len(shape) == 4 else 1)),
                max_bytes, max_side)
    try:
        arr = np.load(p, allow_pickle=False, mmap_mode="r")
        sel = np.asarray(arr if indices is None else arr[idx])
    except Exception as exc:  # noqa: BLE001
        raise VideoReadError(str(p), f"cannot be loaded (truncated or corrupt .npy file: {exc})") from exc
    frames = as_frames(sel, str(p), max_bytes=max_bytes, max_side=max_side)
    return Video(np.ascontiguousarray(frames), None, str(p), shape[0], idx, "npy", {"dtype": str(dtype)})


# ----------------------------------------------------------------------------------------------------------
# public readers


def probe_video(path: str | os.PathLike, *, backend: str = "auto") -> VideoInfo:
    """Frame count, fps and frame size of a file, without decoding its frames.

    Video containers are probed by reading the packet index (no decoding); truncated files (fewer frames
    than the header declares) and 0-frame files raise. DICOM files are probed from their header, ``.npy``
    files from the array header.

    Args:
        path: a video, DICOM or ``.npy`` file.
        backend: ``"auto"``/``"pyav"`` or ``"decord"`` for video containers.

    Returns:
        A :class:`VideoInfo`.

    Raises:
        VideoReadError: missing, empty, directory, truncated, 0 frames, not a video.
        MissingDependencyError: pydicom missing for a DICOM file.

    Example:
        >>> info = probe_video("a4c.avi")  # doctest: +SKIP
        >>> info.n_frames, info.fps, info.height, info.width  # doctest: +SKIP
        (173, 50.0, 112, 112)
    """
    if backend not in _BACKENDS:
        raise InputError(f"backend={backend!r}", f"unknown backend; use one of {list(_BACKENDS)}")
    p = _check_path(path)
    kind = _kind(p)
    if kind == "npy":
        shape, dtype, _ = _npy_header(p)
        if len(shape) not in (3, 4):
            raise InputError(str(p), f"expected frames shaped (T, H, W) or (T, H, W, C), got shape {shape}")
        return VideoInfo(str(p), int(shape[0]), None, int(shape[1]), int(shape[2]), "npy", str(dtype))
    if kind == "dicom":
        _, hdr = _dicom_header(p)
        return VideoInfo(str(p), hdr.n_frames, hdr.fps, hdr.rows, hdr.columns, "dicom", hdr.transfer_syntax_name)
    if backend == "decord":
        return _decord_probe(p)[0]
    try:
        pr = _av_probe(p)
    except MissingDependencyError:
        if backend == "pyav":
            raise
        return _decord_probe(p)[0]
    except VideoReadError as av_error:
        if backend == "pyav" or _is_final(av_error):
            raise
        try:
            return _decord_probe(p)[0]
        except (MissingDependencyError, VideoReadError):
            raise av_error from None
    return VideoInfo(str(p), pr.n_frames, pr.fps, pr.height, pr.width, "video", pr.codec)


def _is_final(error: VideoReadError) -> bool:
    """PyAV errors that another decoder must not paper over (decord would silently read fewer frames)."""
    text = str(error)
    return "truncated" in text or "no frames" in text


def read_video(
    path: str | os.PathLike,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    backend: str = "auto",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
) -> Video:
    """Read a video, DICOM cine or ``.npy`` file into ``uint8`` RGB frames.

    Args:
        path: the file. DICOM is recognised by extension or by the ``DICM`` magic; ``.npy`` by extension;
            anything else is opened as a video container (AVI, MP4, MOV, MKV, GIF, ...).
        indices: frame numbers to decode (in the order given; repeats allowed). ``None`` decodes all.
            Only these frames are decoded where the format allows it.
        backend: for video containers: ``"auto"`` (PyAV, falling back to decord when PyAV is missing or
            fails on the file), ``"pyav"`` or ``"decord"``. DICOM and ``.npy`` ignore it.
        max_bytes: refuse to decode more than this many bytes (uint8 RGB output; raw pixels for DICOM).
        max_side: refuse frames higher or wider than this.

    Returns:
        A :class:`Video`; ``video.n_frames`` is the file's full length and ``video.frame_indices`` says which
        frames ``video.frames`` holds. A 1-frame file reads fine (clip extraction refuses it later).

    Raises:
        VideoReadError: missing path, directory, empty, truncated or corrupt file, not a video, 0 frames,
            DICOM without pixel data.
        InputError: bad ``indices``/``backend``, or a size over ``max_bytes``/``max_side``.
        MissingDependencyError: pydicom (``dicom`` extra) or an image decoder for a compressed DICOM
            transfer syntax is missing, or the requested backend is not installed.

    Example:
        >>> v = read_video("a4c.avi", indices=[0, 4, 8])  # doctest: +SKIP
        >>> v.frames.shape, v.n_frames  # doctest: +SKIP
        ((3, 112, 112, 3), 173)
    """
    if backend not in _BACKENDS:
        raise InputError(f"backend={backend!r}", f"unknown backend; use one of {list(_BACKENDS)}")
    p = _check_path(path)
    kind = _kind(p)
    if kind == "npy":
        return _read_npy(p, indices, max_bytes, max_side)
    if kind == "dicom":
        return _read_dicom(p, indices, max_bytes, max_side)

    if backend == "decord":
        return _read_with_decord(p, indices, max_bytes, max_side)
    try:
        return _read_with_pyav(p, indices, max_bytes, max_side)
    except MissingDependencyError:
        if backend == "pyav":
            raise
        return _read_with_decord(p, indices, max_bytes, max_side)
    except VideoReadError as av_error:
        if backend == "pyav" or _is_final(av_error):
            raise
        try:
            return _read_with_decord(p, indices, max_bytes, max_side)
        except MissingDependencyError:
            raise av_error from None
        except VideoReadError as dec_error:
            raise VideoReadError(str(p), f"{av_error.problem}; decord failed too: {dec_error.problem}") from None


def _read_with_pyav(p: Path, indices, max_bytes: int, max_side: int) -> Video:
    pr = _av_probe(p)
    idx = _validate_indices(str(p), indices, pr.n_frames)
    _check_size(str(p), len(idx), pr.height, pr.width, 3, max_bytes, max_side)
    wanted, inverse = _gather(idx)
    frames = _av_decode(p, pr, wanted)
    if len(wanted) != len(idx) or not np.array_equal(wanted, idx):
        frames = frames[inverse]
    return Video(frames, pr.fps, str(p), pr.n_frames, idx, "pyav", {"codec": pr.codec})


def _read_with_decord(p: Path, indices, max_bytes: int, max_side: int) -> Video:
    info, vr = _decord_probe(p)
    idx = _validate_indices(str(p), indices, info.n_frames)
    _check_size(str(p), len(idx), info.height, info.width, 3, max_bytes, max_side)
    wanted, inverse = _gather(idx)
    frames = _decord_decode(p, vr, wanted, info.height, info.width)
    if len(wanted) != len(idx) or not np.array_equal(wanted, idx):
        frames = frames[inverse]
    return Video(frames, info.fps, str(p), info.n_frames, idx, "decord", {})


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

    av = _import_av(str(path))
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
