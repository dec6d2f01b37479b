"""What the video readers accept: the file extensions they read, and explicit limits on what they may allocate.

The extension lists and :data:`MAX_CLIPS` are defined here, once, and used by the readers, the samplers and the
command line (``coreecho predict DIR`` picks up :data:`READABLE_EXTENSIONS`; ``--clips`` is bounded by
:data:`MAX_CLIPS`). This module imports nothing heavy, so the command line can read it while it parses options.

Every size or count a reader learns from a file header (frames, rows, columns) is checked against
:class:`Limits` and against what the file really holds before memory is allocated, so a small file whose
header lies costs a few kilobytes and a typed error, never gigabytes or a ``MemoryError``.

Example:
    >>> from coreecho.video.limits import Limits
    >>> Limits(max_frames=500).max_frames
    500
    >>> Limits(max_side=0)
    Traceback (most recent call last):
    ...
    coreecho.errors.InputError: Limits: max_side must be a positive integer, got 0
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from coreecho.errors import InputError, VideoReadError
from coreecho.video.budget import DEFAULT_MAX_BYTES, env_max_bytes

__all__ = ["Limits", "DEFAULT_LIMITS", "MAX_CLIPS", "VIDEO_EXTENSIONS", "DICOM_EXTENSIONS", "NPY_EXTENSIONS",
           "READABLE_EXTENSIONS"]

#: File extensions read as video containers (files with other extensions are tried as containers too).
VIDEO_EXTENSIONS: tuple[str, ...] = (".avi", ".mp4", ".mov", ".mkv", ".m4v", ".webm", ".gif", ".wmv", ".mpg", ".mpeg")
#: File extensions read as DICOM (files with the ``DICM`` magic are DICOM whatever their extension).
DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom", ".dic")
#: File extensions read as numpy arrays of frames.
NPY_EXTENSIONS: tuple[str, ...] = (".npy",)
#: Every file extension :func:`coreecho.video.open_video` reads by design (lower case: compare ``suffix.lower()``).
READABLE_EXTENSIONS: tuple[str, ...] = VIDEO_EXTENSIONS + DICOM_EXTENSIONS + NPY_EXTENSIONS

#: Most clips one video may be cut into (``clips="every"`` on a long video, ``--clips 100000000``); the samplers of
#: :mod:`coreecho.video.sampling` and the command line's ``--clips`` share it.
MAX_CLIPS = 4096


@dataclass(frozen=True)
class Limits:
    """Upper bounds a video reader enforces before allocating memory.

    The defaults leave room for any clinical echo while refusing what would exhaust a workstation:

    * ``max_frames = 100_000``: frames a video may hold, declared (DICOM ``NumberOfFrames``, ``.npy`` shape)
      or counted (container packets). 100 000 frames is 33 minutes at 50 fps or 17 minutes at 100 fps;
      echo loops hold tens to a few hundred frames. Counting packets stops at ``max_frames + 1``.
    * ``max_side = 4096``: frame height or width in pixels (ultrasound scanners export at most ~1920).
    * ``max_pixels = 4096 * 4096``: pixels per frame (one RGB frame is then at most 48 MiB).
    * ``max_bytes = 2 GiB``: the memory budget of one video. A :class:`~coreecho.video.pipeline.ClipPipeline`
      adds up what every stage will hold for the video (timeline, decoded frames, resize, clip batch and, on a
      CPU, the forward pass: :mod:`coreecho.video.budget`) and refuses a video over it before allocating
      anything (:class:`~coreecho.errors.MemoryBudgetError`). A reader alone refuses one ``read()`` whose decoded
      ``uint8`` RGB bytes (raw sample bytes for DICOM when larger) exceed it. The default is the
      ``COREECHO_MAX_BYTES`` environment variable when set (bytes, or e.g. ``4G``, ``512M``), else 2 GiB.

    Override with e.g. ``open_video(path, limits=Limits(max_frames=500_000))``,
    ``dataclasses.replace(DEFAULT_LIMITS, max_bytes=8 * 1024**3)`` or ``COREECHO_MAX_BYTES=8G``.

    Attributes:
        max_frames: frames a video may hold; more is refused.
        max_side: largest frame height or width.
        max_pixels: largest number of pixels per frame.
        max_bytes: the memory budget of one video's whole path (and the largest decoded size of one read), in
            bytes.

    Example:
        >>> from coreecho.video import open_video, Limits
        >>> reader = open_video("a4c.avi", limits=Limits(max_bytes=64 * 1024**2))  # doctest: +SKIP
    """

    max_frames: int = 100_000
    max_side: int = 4096
    max_pixels: int = 4096 * 4096
    max_bytes: int = field(default_factory=env_max_bytes)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError("Limits", f"{f.name} must be a positive integer, got {value!r}")


#: The limits readers use when none are given (the built-in budget; ``Limits()`` reads ``COREECHO_MAX_BYTES``).
DEFAULT_LIMITS = Limits(max_bytes=DEFAULT_MAX_BYTES)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_frame_size(source: str, height: int, width: int, limits: Limits, field: str = "frame size",
                     error: type[InputError] = InputError) -> None:
    """Refuse frame sizes that are not positive or over ``max_side`` / ``max_pixels``."""
    if height <= 0 or width <= 0:
        raise VideoReadError(source, f"{field} {height}x{width} is invalid (rows and columns must be positive)")
    if height > limits.max_side or width > limits.max_side:
        side = max(height, width)
        raise error(source, f"{field} is {height}x{width} pixels, larger than the limit of {limits.max_side} pixels "
                            f"per side; if this is intended, raise it: Limits(max_side={side}) "
                            f"(max_side={side} in read_video/as_frames)")
    if height * width > limits.max_pixels:
        raise error(source, f"{field} is {height}x{width} = {height * width} pixels, more than the limit of "
                            f"{limits.max_pixels} pixels per frame; raise it: Limits(max_pixels={height * width})")


def check_frame_count(source: str, n_frames: int, limits: Limits, field: str = "frame count",
                      error: type[InputError] = InputError) -> None:
    """Refuse frame counts over ``max_frames``."""
    if n_frames > limits.max_frames:
        raise error(source, f"{field} is {n_frames}, more than the limit of {limits.max_frames} frames; if the video "
                            f"really is that long, raise it: Limits(max_frames={n_frames})")


def check_read_bytes(source: str, n_frames: int, height: int, width: int, limits: Limits,
                     bytes_per_pixel: float = 3) -> None:
    """Refuse a read whose output (``n_frames`` x H x W x bytes per pixel) would exceed ``max_bytes``."""
    total = float(n_frames) * height * width * bytes_per_pixel
    if total > limits.max_bytes:
        need = int(total) + 1
        raise InputError(source, f"reading {n_frames} frames of {height}x{width} needs {_fmt_bytes(total)}, more than "
                                 f"the limit of {_fmt_bytes(limits.max_bytes)}; read fewer frames (indices=) or raise "
                                 f"the limit: Limits(max_bytes={need}) (max_bytes={need} in read_video)")
