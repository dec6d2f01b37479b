"""Shared pieces of the video readers: the :class:`Video`/:class:`VideoInfo` records and size/index checks.

Example:
    >>> from coreecho.video.base import _check_size
    >>> _check_size("a.avi", 10, 112, 112, 3, max_bytes=1 << 30, max_side=4096)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from coreecho.errors import InputError, MissingDependencyError

__all__ = ["Video", "VideoInfo", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_SIDE", "VIDEO_EXTENSIONS", "DICOM_EXTENSIONS"]

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
        >>> from coreecho.video.io import load_video
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


def _gather(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    wanted, inverse = np.unique(idx, return_inverse=True)
    return wanted, inverse.reshape(-1)
