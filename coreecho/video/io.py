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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from coreecho.errors import InputError, MissingDependencyError, VideoReadError

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

#: Largest decoded size (bytes of uint8 RGB output, or of raw DICOM pixels) a reader accepts by default.
DEFAULT_MAX_BYTES: int = 4 * 1024**3
#: Largest frame height or width a reader accepts by default.
DEFAULT_MAX_SIDE: int = 4096
#: File extensions read as video containers (others are tried as containers too).
VIDEO_EXTENSIONS: tuple[str, ...] = (".avi", ".mp4", ".mov", ".mkv", ".m4v", ".webm", ".gif", ".wmv", ".mpg", ".mpeg")
#: File extensions read as DICOM (files with the ``DICM`` magic are DICOM whatever their extension).
DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom", ".dic")

_BACKENDS = ("auto", "pyav", "decord")


@dataclass
class VideoInfo:
    """What :func:`probe_video` learns about a file without decoding its frames.

    Attributes:
        source: the path, as a string.
        n_frames: number of frames in the file.
        fps: frames per second, or ``None`` when the file does not say.
        height: frame height in pixels.
        width: frame width in pixels.
        kind: ``"video"``, ``"dicom"`` or ``"npy"``.
        codec: codec name (videos), transfer syntax name (DICOM) or dtype (npy).
    """

    source: str
    n_frames: int
    fps: float | None
    height: int
    width: int
    kind: str
    codec: str = ""


@dataclass
class Video:
    """Decoded frames of a video and where they came from.

    Attributes:
        frames: ``uint8`` RGB frames ``[len(frame_indices), H, W, 3]``.
        fps: frames per second, or ``None`` when unknown.
        source: the path, or ``"array"`` / ``"item i"`` for in-memory input.
        n_frames: the full length of the video, even when only some frames were decoded.
        frame_indices: the index in the full video of each row of ``frames`` (int64).
        backend: what decoded it (``"pyav"``, ``"decord"``, ``"pydicom"``, ``"npy"``, ``"array"``).
        metadata: extra facts (codec, photometric interpretation, ...).

    Example:
        >>> import numpy as np
        >>> v = load_video(np.zeros((3, 4, 4, 3), np.uint8))
        >>> v.n_frames, v.frame_indices.tolist(), v.is_partial
        (3, [0, 1, 2], False)
    """

    frames: np.ndarray
    fps: float | None
    source: str
    n_frames: int
    frame_indices: np.ndarray
    backend: str = "array"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return int(self.frames.shape[2])

    @property
    def is_partial(self) -> bool:
        """True when ``frames`` holds something other than every frame in order."""
        return len(self.frame_indices) != self.n_frames or bool(
            np.any(self.frame_indices != np.arange(self.n_frames))
        )


# ----------------------------------------------------------------------------------------------------------
# helpers


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _check_size(
    source: str, n_frames: int, height: int, width: int, bytes_per_pixel: float, max_bytes: int, max_side: int,
    what: str = "read_video",
) -> None:
    """Refuse absurd sizes before anything is allocated."""
    if height > max_side or width > max_side:
        raise InputError(
            source,
            f"frames are {height}x{width} pixels, larger than the limit of {max_side} pixels per side; "
            f"if this is really intended, pass max_side={max(height, width)} (or larger) to {what}",
        )
    total = float(n_frames) * height * width * bytes_per_pixel
    if total > max_bytes:
        raise InputError(
            source,
            f"decoding {n_frames} frames of {height}x{width} needs {_fmt_bytes(total)}, more than the limit of "
            f"{_fmt_bytes(max_bytes)}; pass max_bytes={int(total) + 1} (or larger) to {what} to allow it"
            + (", or decode fewer frames with indices=" if what == "read_video" else ""),
        )


def _missing(package: str, extra: str | None, feature: str, hint: str) -> MissingDependencyError:
    """A MissingDependencyError whose message names the exact package to install."""
    err = MissingDependencyError(package, extra or "", feature)
    message = f"{feature} needs the package '{package}', which is not installed. {hint}"
    err.args = (message,)
    err.msg = message  # ImportError.__str__ prints .msg
    return err


def _validate_indices(source: str, indices: Iterable[int] | None, n_frames: int) -> np.ndarray:
    if indices is None:
        return np.arange(n_frames, dtype=np.int64)
    arr = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
    if arr.ndim != 1:
        raise InputError(source, f"indices must be a 1-D sequence of frame numbers, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(source, f"indices must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_frames):
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise InputError(source, f"frame index {bad} is out of range: the video has {n_frames} frames (0..{n_frames - 1})")
    return arr


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
# video containers: PyAV


def _import_av(source: str):
    try:
        import av  # noqa: PLC0415 - lazy on purpose
    except ImportError as exc:
        raise _missing("av", None, f"Reading {source}", "Install it with `pip install av` (PyAV).") from exc
    return av


def _av_open(path: Path):
    av = _import_av(str(path))
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise VideoReadError(str(path), f"is not a readable video file (FFmpeg: {exc.strerror or exc}); "
                                        "check that it is a complete AVI/MP4/MOV/MKV/DICOM file") from exc
    if not container.streams.video:
        container.close()
        raise VideoReadError(str(path), "contains no video stream")
    return container


def _av_fps(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0:
            return float(rate)
    return None


@dataclass
class _AvProbe:
    n_frames: int
    declared: int
    fps: float | None
    height: int
    width: int
    codec: str
    intra_only: bool


def _av_probe(path: Path) -> _AvProbe:
    av = _import_av(str(path))
    container = _av_open(path)
    try:
        stream = container.streams.video[0]
        declared = int(stream.frames or 0)
        codec = stream.codec_context.codec
        n = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    n += 1
        except av.error.FFmpegError as exc:
            raise VideoReadError(str(path), f"the container is corrupt after {n} frames (FFmpeg: {exc.strerror or exc})") from exc
        info = _AvProbe(n, declared, _av_fps(stream), int(stream.codec_context.height),
                        int(stream.codec_context.width), codec.name, bool(getattr(codec, "intra_only", False)))
    finally:
        container.close()
    if info.n_frames == 0:
        raise VideoReadError(str(path), "contains no frames (0-frame video)")
    if info.declared and info.n_frames < info.declared:
        raise VideoReadError(
            str(path),
            f"is truncated: its header declares {info.declared} frames but only {info.n_frames} are present; "
            "the file was probably cut off while copying or writing - copy or export it again",
        )
    if info.height <= 0 or info.width <= 0:
        raise VideoReadError(str(path), f"has an invalid frame size {info.height}x{info.width}")
    return info


def _av_decode(path: Path, probe: _AvProbe, wanted: np.ndarray) -> np.ndarray:
    """Decode the sorted unique frame numbers ``wanted`` with PyAV."""
    av = _import_av(str(path))
    try:
        from av.video.reformatter import VideoReformatter  # noqa: PLC0415

        reformatter = VideoReformatter()

        def to_rgb(frame) -> np.ndarray:
            return reformatter.reformat(frame, format="rgb24").to_ndarray()
    except ImportError:  # pragma: no cover - very old PyAV

        def to_rgb(frame) -> np.ndarray:
            return frame.to_ndarray(format="rgb24")

    out = np.empty((len(wanted), probe.height, probe.width, 3), dtype=np.uint8)
    if len(wanted) == 0:
        return out
    need = {int(i): k for k, i in enumerate(wanted)}
    last = int(wanted[-1])
    got = 0
    container = _av_open(path)
    try:
        stream = container.streams.video[0]
        if probe.intra_only:
            # every packet is a whole frame: decode only the packets of the wanted frames
            ctx = stream.codec_context
            try:
                ctx.thread_type = "SLICE"  # no frame threading: one packet in, one frame out
            except Exception:  # noqa: BLE001 - older PyAV: the default is fine
                pass
            i = 0
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if i in need:
                    frames = ctx.decode(packet)
                    if len(frames) != 1:
                        raise VideoReadError(str(path), f"frame {i} could not be decoded (corrupt or truncated data)")
                    _store(out, need[i], to_rgb(frames[0]), path, i)
                    got += 1
                if i >= last:
                    break
                i += 1
        else:
            for i, frame in enumerate(container.decode(stream)):
                if i in need:
                    _store(out, need[i], to_rgb(frame), path, i)
                    got += 1
                if i >= last:
                    break
    except av.error.FFmpegError as exc:
        raise VideoReadError(str(path), f"decoding failed after {got} frames (FFmpeg: {exc.strerror or exc}); "
                                        "the file is corrupt or truncated") from exc
    finally:
        container.close()
    if got != len(wanted):
        raise VideoReadError(str(path), f"only {got} of the {len(wanted)} requested frames could be decoded "
                                        "(the file is corrupt or truncated)")
    return out


def _store(out: np.ndarray, k: int, rgb: np.ndarray, path: Path, i: int) -> None:
    if rgb.shape != out.shape[1:]:
        raise VideoReadError(str(path), f"frame {i} is {rgb.shape[1]}x{rgb.shape[0]}, unlike the first frame "
                                        f"({out.shape[2]}x{out.shape[1]}); videos that change size are not supported")
    out[k] = rgb


# ----------------------------------------------------------------------------------------------------------
# video containers: decord


def _import_decord(source: str):
    try:
        import decord  # noqa: PLC0415
    except ImportError as exc:
        raise _missing(
            "decord", None, f"Reading {source} with backend='decord'",
            "It has wheels for x86-64 Linux and Windows only (`pip install decord`); "
            "elsewhere use backend='pyav' or 'auto'.",
        ) from exc
    return decord


def _decord_open(path: Path):
    decord = _import_decord(str(path))
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as exc:  # noqa: BLE001 - decord raises its own DECORDError/RuntimeError
        raise VideoReadError(str(path), f"is not a readable video file (decord: {str(exc).splitlines()[0][:200]})") from exc


def _frame_size_without_decoding(path: Path) -> tuple[int, int] | None:
    """Frame size from the container header via PyAV (no decoding), or None when PyAV cannot tell."""
    try:
        import av  # noqa: PLC0415

        with av.open(str(path)) as container:
            if container.streams.video:
                cc = container.streams.video[0].codec_context
                if cc.height > 0 and cc.width > 0:
                    return int(cc.height), int(cc.width)
    except Exception:  # noqa: BLE001 - only a shortcut; decord decodes a frame otherwise
        return None
    return None


def _decord_probe(path: Path, vr=None) -> tuple[VideoInfo, Any]:
    vr = _decord_open(path) if vr is None else vr
    n = len(vr)
    if n == 0:
        raise VideoReadError(str(path), "contains no frames (0-frame video)")
    fps = float(vr.get_avg_fps())
    size = _frame_size_without_decoding(path)
    if size is None:
        try:
            size = tuple(vr[0].shape[:2])
            vr.seek(0)
        except Exception as exc:  # noqa: BLE001
            raise VideoReadError(str(path), f"decord cannot decode its first frame: {str(exc).splitlines()[0][:200]}") from exc
    info = VideoInfo(str(path), n, fps if np.isfinite(fps) and fps > 0 else None, int(size[0]), int(size[1]), "video", "")
    return info, vr


def _decord_decode(path: Path, vr, wanted: np.ndarray, height: int, width: int) -> np.ndarray:
    """Decode sorted unique ``wanted`` frames.

    decord's ``get_batch`` seeks for every non-consecutive index, which is slow on intra-only codecs, so
    nearby indices are grouped into runs decoded contiguously (a run is capped at 256 MiB of frames).
    """
    out = np.empty((len(wanted), height, width, 3), dtype=np.uint8)
    k = 0
    runs: list[list[int]] = []
    max_span = max(1, (256 * 1024**2) // (height * width * 3))  # a decoded run stays under 256 MiB
    for i in wanted.tolist():
        if runs and i - runs[-1][-1] <= 8 and i - runs[-1][0] < max_span:
            runs[-1].append(i)
        else:
            runs.append([i])
    try:
        for run in runs:
            block = vr.get_batch(list(range(run[0], run[-1] + 1))).asnumpy()
            sel = block[np.asarray(run) - run[0]]
            if sel.shape[1:] != out.shape[1:]:
                raise VideoReadError(str(path), f"frames change size ({sel.shape[1:3]} vs {out.shape[1:3]})")
            out[k:k + len(run)] = sel
            k += len(run)
    except VideoReadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise VideoReadError(str(path), f"decoding failed after {k} frames (decord: {str(exc).splitlines()[0][:200]})") from exc
    return out


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
# DICOM (pydicom, the ``dicom`` extra)

# transfer syntax UID -> the package that decodes it (pydicom's own pure-numpy decoders cover RLE)
_DICOM_DECODERS: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg",  # JPEG Baseline (pillow also works)
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",  # JPEG Extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg",  # JPEG-LS Lossless (pyjpegls also works)
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",  # JPEG 2000 Lossless (pillow also works)
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",  # HTJ2K
}


@dataclass
class _DicomHeader:
    n_frames: int
    rows: int
    columns: int
    samples: int
    bits_allocated: int
    bits_stored: int
    photometric: str
    transfer_syntax: str
    transfer_syntax_name: str
    fps: float | None


def _import_pydicom(source: str):
    try:
        import pydicom  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError("pydicom", "dicom", f"Reading the DICOM file {source}") from exc
    return pydicom


def _dicom_fps(ds) -> float | None:
    """Frames per second from FrameTime (ms/frame), CineRate, RecommendedDisplayFrameRate or FrameTimeVector."""
    def num(value) -> float | None:
        try:
            v = float(value)
        except (TypeError, ValueError):
            return None
        return v if np.isfinite(v) and v > 0 else None

    ft = num(ds.get("FrameTime"))
    if ft:
        return 1000.0 / ft
    for key in ("CineRate", "RecommendedDisplayFrameRate"):
        v = num(ds.get(key))
        if v:
            return v
    ftv = ds.get("FrameTimeVector")
    if ftv is not None:
        vals = [num(x) for x in list(ftv)[1:]]
        vals = [x for x in vals if x]
        if vals:
            return 1000.0 / float(np.mean(vals))
    return None


def _dicom_header(p: Path):
    pydicom = _import_pydicom(str(p))
    from pydicom.errors import InvalidDicomError  # noqa: PLC0415

    try:
        try:
            ds = pydicom.dcmread(str(p), defer_size="256 KB")
        except InvalidDicomError:
            # a .dcm file without preamble/magic: parse it anyway; garbage fails below
            ds = pydicom.dcmread(str(p), defer_size="256 KB", force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on broken files
        raise VideoReadError(str(p), f"is not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        if other:
            raise VideoReadError(str(p), f"stores {other[0]} (float pixels), which is not an ultrasound cine")
        sop = ds.get("SOPClassUID")
        kind = f" (SOP class: {getattr(sop, 'name', sop)})" if sop else ""
        raise VideoReadError(str(p), f"has no pixel data{kind}; it is not an image or cine - export the echo "
                                     "loop itself (a multi-frame ultrasound DICOM)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
        photometric = str(ds.PhotometricInterpretation).strip().upper()
    except (AttributeError, TypeError, ValueError) as exc:
        raise VideoReadError(str(p), f"lacks the image attributes needed to decode it ({exc})") from exc
    stored = int(ds.get("BitsStored", bits) or bits)
    nf_raw = ds.get("NumberOfFrames", 1)
    try:
        n_frames = int(nf_raw) if nf_raw not in (None, "") else 1
    except (TypeError, ValueError):
        n_frames = 1
    if n_frames <= 0:
        raise VideoReadError(str(p), f"contains no frames (NumberOfFrames = {nf_raw})")
    if rows <= 0 or cols <= 0:
        raise VideoReadError(str(p), f"has an invalid frame size {rows}x{cols}")
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    ts_uid = str(ts) if ts else "1.2.840.10008.1.2.1"
    ts_name = getattr(ts, "name", ts_uid) if ts else "Explicit VR Little Endian (assumed)"
    hdr = _DicomHeader(n_frames, rows, cols, samples, bits, stored, photometric, ts_uid, str(ts_name), _dicom_fps(ds))
    return ds, hdr


def _dicom_check_decoder(p: Path, hdr: _DicomHeader) -> None:
    """Raise a clear error when the transfer syntax needs a decoder that is not installed."""
    try:
        from pydicom.pixels import get_decoder  # noqa: PLC0415  (pydicom >= 3)
    except ImportError:  # pragma: no cover - pydicom 2.x reports missing handlers when decoding
        return
    from pydicom.uid import UID  # noqa: PLC0415

    uid = UID(hdr.transfer_syntax)
    if not uid.is_compressed:
        return
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise VideoReadError(
            str(p),
            f"stores its pixels as {hdr.transfer_syntax_name}, which coreecho cannot decode (pydicom has no decoder "
            "for it); export the cine as uncompressed or JPEG DICOM, or as an MP4/AVI video",
        ) from exc
    if not decoder.is_available:
        package = _DICOM_DECODERS.get(hdr.transfer_syntax, "pylibjpeg-libjpeg")
        options = "; ".join(decoder.missing_dependencies)
        raise _missing(
            package, "dicom", f"Decoding {p} ({hdr.transfer_syntax_name})",
            f"Install it with `pip install pylibjpeg {package}` (any one of these pydicom plugins works: {options}).",
        )


def _dicom_check_length(p: Path, ds, hdr: _DicomHeader) -> None:
    """Native (uncompressed) pixel data shorter than the header declares means a truncated file."""
    from pydicom.uid import UID  # noqa: PLC0415

    if UID(hdr.transfer_syntax).is_compressed:
        return
    try:
        elem = ds.get_item("PixelData")
        length = int(elem.length) if getattr(elem, "length", None) is not None else len(elem.value)
    except Exception:  # noqa: BLE001 - undefined length or unusual storage: let the decoder judge
        return
    bits = hdr.n_frames * hdr.rows * hdr.columns * hdr.samples * hdr.bits_allocated
    expected = (bits + 7) // 8
    if 0 <= length < expected:
        raise VideoReadError(
            str(p),
            f"is truncated: its pixel data holds {length} bytes but the header declares {hdr.n_frames} frames of "
            f"{hdr.rows}x{hdr.columns} ({expected} bytes); copy or export the file again",
        )


def _dicom_decode(p: Path, ds, idx_sorted: np.ndarray | None, hdr: _DicomHeader) -> np.ndarray:
    """Decoded pixels (YBR converted to RGB by pydicom), shaped [T, H, W] or [T, H, W, S]."""
    try:
        try:
            from pydicom.pixels import iter_pixels, pixel_array  # noqa: PLC0415  (pydicom >= 3)
        except ImportError:  # pragma: no cover - pydicom 2.x: decode everything, convert YBR ourselves
            arr = ds.pixel_array
            if hdr.n_frames == 1:
                arr = arr[None]
            if hdr.photometric in ("YBR_FULL", "YBR_FULL_422") and hdr.samples == 3:
                from pydicom.pixel_data_handlers.util import convert_color_space

                arr = convert_color_space(arr, hdr.photometric, "RGB", per_frame=True)
            return arr if idx_sorted is None else arr[idx_sorted]
        if idx_sorted is None:
            arr = pixel_array(str(p))
            if hdr.n_frames == 1:
                arr = arr[None]
        else:
            arr = np.stack(list(iter_pixels(str(p), indices=[int(i) for i in idx_sorted])))
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        low = text.lower()
        if any(k in low for k in ("less than expected", "too short", "truncat", "cannot reshape", "end of file")):
            raise VideoReadError(str(p), f"is truncated: its pixel data is shorter than the header declares ({text})") from exc
        raise VideoReadError(str(p), f"pixel data could not be decoded ({type(exc).__name__}: {text})") from exc
    return arr


def _to_uint8(x: np.ndarray, bits: int) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    top = float(2**bits - 1) if bits > 0 else float(x.max() or 1)
    return np.clip(np.rint(x.astype(np.float32) * (255.0 / top)), 0, 255).astype(np.uint8)


def _dicom_to_rgb(p: Path, ds, arr: np.ndarray, hdr: _DicomHeader) -> tuple[np.ndarray, dict[str, Any]]:
    pi = hdr.photometric
    info: dict[str, Any] = {"photometric": pi, "transfer_syntax": hdr.transfer_syntax_name}
    if pi in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim == 4:
            arr = arr[..., 0]
        if arr.dtype == np.uint8:
            grey = arr
            info["grey_mapping"] = "as stored (8-bit)"
        else:
            x = arr.astype(np.float32)
            slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
            if slope is not None or intercept is not None:
                x = x * float(slope if slope is not None else 1.0) + float(intercept or 0.0)
            wc, ww = ds.get("WindowCenter"), ds.get("WindowWidth")
            if wc is not None and ww is not None:
                c = float(wc[0] if hasattr(wc, "__len__") and not isinstance(wc, str) else wc)
                w = float(ww[0] if hasattr(ww, "__len__") and not isinstance(ww, str) else ww)
                lo, hi = c - w / 2.0, c + w / 2.0
                info["grey_mapping"] = f"window {c:g}/{w:g}"
            else:
                lo, hi = float(x.min()), float(x.max())
                info["grey_mapping"] = f"min-max {lo:g}..{hi:g} of the decoded frames"
            scale = 255.0 / (hi - lo) if hi > lo else 0.0
            grey = np.clip(np.rint((x - lo) * scale), 0, 255).astype(np.uint8)
        if pi == "MONOCHROME1":
            grey = 255 - grey
        return np.repeat(grey[..., None], 3, axis=-1), info
    if pi == "PALETTE COLOR":
        try:
            from pydicom.pixels import apply_color_lut  # noqa: PLC0415
        except ImportError:  # pragma: no cover - pydicom 2.x
            from pydicom.pixel_data_handlers.util import apply_color_lut
        if arr.ndim == 4:
            arr = arr[..., 0]
        try:
            rgb = apply_color_lut(arr, ds)
        except Exception as exc:  # noqa: BLE001
            raise VideoReadError(str(p), f"its palette colour lookup table cannot be applied ({exc})") from exc
        desc = ds.get("RedPaletteColorLookupTableDescriptor")
        lut_bits = int(desc[2]) if desc is not None and len(desc) == 3 else (16 if rgb.dtype != np.uint8 else 8)
        info["palette_bits"] = lut_bits
        return _to_uint8(rgb, lut_bits), info
    if hdr.samples == 3 and pi in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise VideoReadError(str(p), f"decoded pixels have shape {arr.shape}, expected 3 samples per pixel")
        return _to_uint8(arr, hdr.bits_stored), info
    raise VideoReadError(
        str(p), f"photometric interpretation {pi!r} with {hdr.samples} samples per pixel is not supported "
                "(supported: MONOCHROME1/2, RGB, YBR_FULL, YBR_FULL_422, YBR_ICT/RCT, PALETTE COLOR)",
    )


def _read_dicom(p: Path, indices, max_bytes: int, max_side: int) -> Video:
    ds, hdr = _dicom_header(p)
    idx = _validate_indices(str(p), indices, hdr.n_frames)
    raw_bpp = hdr.samples * max(1, (hdr.bits_allocated + 7) // 8)
    _check_size(str(p), len(idx), hdr.rows, hdr.columns, max(3, raw_bpp), max_bytes, max_side)
    _dicom_check_decoder(p, hdr)
    _dicom_check_length(p, ds, hdr)
    wanted, inverse = _gather(idx)
    partial = indices is not None and not np.array_equal(wanted, np.arange(hdr.n_frames))
    arr = _dicom_decode(p, ds, wanted if partial else None, hdr)
    if arr.shape[0] != len(wanted) or arr.shape[1:3] != (hdr.rows, hdr.columns):
        raise VideoReadError(str(p), f"decoded pixels have shape {arr.shape}, but the header declares "
                                     f"{len(wanted)} frames of {hdr.rows}x{hdr.columns}")
    rgb, info = _dicom_to_rgb(p, ds, arr, hdr)
    if len(wanted) != len(idx) or not np.array_equal(wanted, idx):
        rgb = rgb[inverse]
    info["modality"] = str(ds.get("Modality", ""))
    return Video(np.ascontiguousarray(rgb), hdr.fps, str(p), hdr.n_frames, idx, "pydicom", info)


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


def _gather(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    wanted, inverse = np.unique(idx, return_inverse=True)
    return wanted, inverse.reshape(-1)


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
        codec: FFmpeg encoder name (``"mjpeg"``, ``"libx264"``, ``"mpeg4"``...).
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
    if codec != "mjpeg" and (h % 2 or w % 2):
        raise InputError(str(path), f"codec {codec} needs even frame sizes, got {h}x{w}")
    container = av.open(str(p), mode="w")
    try:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.codec_context.bit_rate = int(bit_rate)
        for frame in data:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return p
