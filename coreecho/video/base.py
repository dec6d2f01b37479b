"""Shared pieces of the video readers: the :class:`Video`/:class:`VideoInfo` records, the :class:`VideoReader`
interface and index checks.

Example:
    >>> from coreecho.video.base import validate_indices
    >>> validate_indices("a.avi", [3, 1], 10).tolist()
    [3, 1]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from coreecho.errors import InputError, MissingDependencyError, NoSignalError
from coreecho.video.limits import (  # the extension lists are defined (once) in limits, beside the other bounds
    DEFAULT_LIMITS, DICOM_EXTENSIONS, VIDEO_EXTENSIONS, Limits, check_read_bytes)

__all__ = ["Video", "VideoInfo", "VideoReader", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_SIDE", "VIDEO_EXTENSIONS",
           "DICOM_EXTENSIONS", "MIN_CONTRAST", "NO_SIGNAL_NOTE", "signal_problem", "check_signal"]

#: Largest decoded size (bytes of uint8 RGB output, or of raw DICOM pixels) one read accepts by default.
DEFAULT_MAX_BYTES: int = DEFAULT_LIMITS.max_bytes
#: Largest frame height or width a reader accepts by default.
DEFAULT_MAX_SIDE: int = DEFAULT_LIMITS.max_side

_BACKENDS = ("auto", "pyav", "decord")


@dataclass
class VideoInfo:
    """What a reader learns about a video when it is opened (once), without decoding its frames.

    Attributes:
        source: the path, as a string.
        n_frames: number of frames in the file.
        fps: frames per second, or ``None`` when the file does not say.
        height: frame height in pixels.
        width: frame width in pixels.
        kind: ``"video"``, ``"dicom"``, ``"npy"`` or ``"array"``.
        codec: codec name (videos), transfer syntax name (DICOM) or dtype (npy, arrays).
        backend: the reader that probed it and will decode it (``"pyav"``, ``"decord"``, ``"pydicom"``,
            ``"npy"``, ``"array"``).
    """

    source: str
    n_frames: int
    fps: float | None
    height: int
    width: int
    kind: str
    codec: str = ""
    backend: str = ""


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
# the reader interface


class VideoReader:
    """One opened video: ``info`` (probed once, at open) and ``read(indices)`` (only the frames asked for).

    Subclasses: one per source (PyAV, decord, DICOM, ``.npy``, in-memory arrays); get one with
    :func:`coreecho.video.open_video`. ``read`` never probes the file again.

    Attributes:
        info: the :class:`VideoInfo`, computed once when the reader was opened.
        limits: the :class:`~coreecho.video.limits.Limits` this reader enforces.
        metadata: extra facts about the source (codec, photometric interpretation, ...).

    Example:
        >>> import numpy as np
        >>> from coreecho.video import open_video
        >>> with open_video(np.zeros((5, 8, 8), np.uint8), fps=25.0) as r:
        ...     r.info.n_frames, r.read([4, 0, 4]).shape
        (5, (3, 8, 8, 3))
    """

    backend: str = ""
    info: VideoInfo
    limits: Limits

    def __init__(self, source: str, limits: Limits):
        self.source = source
        self.limits = limits
        self.metadata: dict[str, Any] = {}

    def read(self, indices: Iterable[int] | np.ndarray | None = None) -> np.ndarray:
        """Decode frames ``indices`` (in that order, repeats allowed; ``None``: all) to ``uint8`` RGB ``[N, H, W, 3]``.

        Raises:
            InputError: indices out of range or not integers; the read would exceed ``limits.max_bytes``.
            VideoReadError: the frames cannot be decoded (corrupt, truncated, frame size changes).
        """
        idx = validate_indices(self.source, indices, self.info.n_frames)
        wanted, inverse = _gather(idx)
        check_read_bytes(self.source, len(wanted), self.info.height, self.info.width, self.limits,
                         self._bytes_per_pixel())
        if len(wanted) == 0:
            return np.empty((0, self.info.height, self.info.width, 3), np.uint8)
        frames = self._read_sorted(wanted)
        if len(wanted) != len(idx) or not np.array_equal(wanted, idx):
            frames = frames[inverse]
        return frames

    def _bytes_per_pixel(self) -> float:
        return 3

    def _read_sorted(self, wanted: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Decode the sorted, unique, in-range frame numbers ``wanted``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file (a closed reader cannot read)."""

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return f"{type(self).__name__}({i.source!r}, n_frames={i.n_frames}, size={i.height}x{i.width}, fps={i.fps})"


# ----------------------------------------------------------------------------------------------------------
# helpers


def missing_dependency(package: str, extra: str | None, feature: str, hint: str) -> MissingDependencyError:
    """A MissingDependencyError whose message names the exact package to install."""
    err = MissingDependencyError(package, extra or "", feature)
    message = f"{feature} needs the package '{package}', which is not installed. {hint}"
    err.args = (message,)
    err.msg = message  # ImportError.__str__ prints .msg
    return err


def validate_indices(source: str, indices: Iterable[int] | None, n_frames: int) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------------------------
# usable signal

#: The contrast floor: a video whose grey levels, between the 1st and the 99th percentile of the frames looked at,
#: span fewer than this many levels (of 0..255) has no usable signal. An echo cine spans well over 100 levels (dark
#: blood pools and background, bright myocardium); a blank, black, white or washed-out video spans a handful.
MIN_CONTRAST: float = 8.0
#: How a test-time :class:`~coreecho.video.pipeline.ClipPipeline` flags such a video in its notes (``ClipBatch.warnings``):
#: ``predict_ef`` / ``coreecho predict`` turn a flagged video into an error row (:class:`~coreecho.errors.NoSignalError`),
#: never an EF; ``embed`` returns the embedding with the note as a warning.
NO_SIGNAL_NOTE: str = "no usable signal"


def signal_problem(frames: np.ndarray, floor: float = MIN_CONTRAST) -> str | None:
    """Why ``frames`` (uint8 ``[N, H, W]`` or ``[N, H, W, C]``) hold no usable signal, or ``None`` when they do.

    Looks at up to 16 frames spread over ``frames``, each subsampled to at most about 128x128 pixels (cheap on any
    video). The reasons: constant (every pixel has one value, e.g. all black or all white), or a contrast (99th minus
    1st percentile of the grey levels) below ``floor``.

    Example:
        >>> import numpy as np
        >>> signal_problem(np.zeros((4, 8, 8, 3), np.uint8))
        'every pixel of every frame looked at is 0 (all black)'
        >>> signal_problem(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (2, 64, 1))) is None
        True
    """
    arr = np.asarray(frames)
    if arr.size == 0:
        return "there are no pixels"
    if arr.ndim >= 3:
        pick = np.unique(np.linspace(0, arr.shape[0] - 1, min(arr.shape[0], 16)).astype(np.int64))
        step_h = max(1, arr.shape[1] // 128) if arr.ndim >= 3 else 1
        step_w = max(1, arr.shape[2] // 128) if arr.ndim >= 3 else 1
        arr = arr[pick, ::step_h, ::step_w]
    if arr.ndim == 4 and arr.shape[-1] in (3, 4):
        # brightness of any channel: colour Doppler on black stays a signal (two elementwise maxima: numpy's
        # reduction over a last axis of 3 is several times slower)
        arr = np.maximum(np.maximum(arr[..., 0], arr[..., 1]), arr[..., 2])
    lo_v, hi_v = arr.min(), arr.max()
    if lo_v == hi_v:
        v = int(lo_v) if np.issubdtype(arr.dtype, np.integer) else float(lo_v)
        name = " (all black)" if v == 0 else " (all white)" if v == 255 else ""
        return f"every pixel of every frame looked at is {v}{name}"
    lo, hi = np.percentile(arr, [1.0, 99.0])
    if hi - lo < floor:
        return (f"its grey levels span only {hi - lo:.3g} levels between the 1st and 99th percentile, below the "
                f"contrast floor of {floor:g} (coreecho.video.base.MIN_CONTRAST)")
    return None


def check_signal(source: str, frames: np.ndarray, floor: float = MIN_CONTRAST) -> None:
    """Raise :class:`~coreecho.errors.NoSignalError` naming ``source`` and the reason when ``frames`` have no usable
    signal (see :func:`signal_problem`); an EF or embedding computed from them would mean nothing.

    Example:
        >>> import numpy as np
        >>> check_signal("blank.avi", np.full((3, 8, 8), 255, np.uint8))
        Traceback (most recent call last):
        ...
        coreecho.errors.NoSignalError: blank.avi: has no usable signal: every pixel of every frame looked at is 255 \
(all white); check the export (a blank, black or white video gives no EF)
    """
    problem = signal_problem(frames, floor)
    if problem is not None:
        raise NoSignalError(source, f"has {NO_SIGNAL_NOTE}: {problem}; check the export (a blank, black or white "
                                    "video gives no EF)")
