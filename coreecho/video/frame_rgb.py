"""Decoded PyAV frames → RGB rows, skipping the colour conversion for grey frames where that is exact.

Colour conversion (swscale's YUV → RGB) costs about twice the MJPEG decoding itself on 112 px EchoNet-style frames
(0.14 against 0.07 ms per frame, measured on ``benchmarks/bench_loader.py``'s files). A B-mode ultrasound frame is
grey: its two chroma planes hold one value each (128 when exactly neutral; JPEG compression of grey often leaves
127 or 129). With constant chroma, the RGB of a pixel is a function of its luma alone, so a frame converts with a
256-entry table per (format, size, chroma) pair, read straight off the luma plane.

The table is made by the conversion itself, once per process and pair, on a synthetic frame of the same format and
size with that chroma, whose luma holds every value at many positions (:func:`luma_table`). It is used only where
that frame proves the conversion position-independent (every pixel of one luma value converted to the same RGB);
otherwise, and for frames whose chroma varies (colour Doppler, coloured overlays), frames go through the
conversion as before. Either way the pixels are those of ``frame.to_ndarray(format="rgb24")``, bit for bit
(``tests/test_model_input.py`` compares both on grey and on phantom AVIs).

Example:
    >>> convert = frame_converter()
    >>> callable(convert)
    True
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import numpy as np

__all__ = ["frame_converter", "constant_chroma", "luma_table", "YUV_FORMATS"]

#: 8-bit planar YUV formats whose constant-chroma frames convert through a luma table.
YUV_FORMATS: frozenset[str] = frozenset({"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuv420p", "yuv422p",
                                         "yuv444p", "yuv440p"})


def _plane(plane: Any) -> np.ndarray:
    """A frame plane as ``[height, width]`` uint8 (a view of PyAV's buffer without its line padding)."""
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, :plane.width]


def constant_chroma(frame: Any) -> tuple[int, int] | None:
    """``(Cb, Cr)`` of a planar YUV frame whose chroma planes each hold one value, else ``None``."""
    if frame.format.name not in YUV_FORMATS:
        return None
    out = []
    for p in frame.planes[1:3]:
        c = _plane(p)
        lo = int(c.min())
        if lo != int(c.max()):
            return None
        out.append(lo)
    return out[0], out[1]


def _reformatter() -> Callable[[Any], np.ndarray]:
    try:
        from av.video.reformatter import VideoReformatter  # noqa: PLC0415

        reformatter = VideoReformatter()

        def to_rgb(frame: Any) -> np.ndarray:
            return reformatter.reformat(frame, format="rgb24").to_ndarray()
    except ImportError:  # pragma: no cover - very old PyAV

        def to_rgb(frame: Any) -> np.ndarray:
            return frame.to_ndarray(format="rgb24")

    return to_rgb


@lru_cache(maxsize=256)
def luma_table(fmt: str, height: int, width: int, cb: int, cr: int) -> np.ndarray | None:
    """uint8 ``[256, 3]``: the RGB this PyAV/FFmpeg gives a pixel of each luma value in a ``fmt`` frame of that size
    with chroma ``(cb, cr)`` everywhere; ``None`` where the conversion is not a function of luma alone there."""
    try:
        import av  # noqa: PLC0415
    except ImportError:  # pragma: no cover - the readers need PyAV anyway
        return None
    frame = av.VideoFrame(width, height, fmt)
    luma = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    ramp = np.arange(256, dtype=np.uint8)
    n = min(256, luma.size)
    luma.flat[:n] = ramp[:n]  # every value present (on frames of 256 pixels or more)
    for k, plane in enumerate(frame.planes):
        buf = np.full((plane.height, plane.line_size), (0, cb, cr)[k], np.uint8)
        if k == 0:
            buf[:, :width] = luma
        plane.update(buf.tobytes())
    rgb = _reformatter()(frame).reshape(-1, 3)
    values = luma.reshape(-1)
    table = np.zeros((256, 3), np.uint8)
    table[values] = rgb  # one of each value's pixels; then all of them must agree
    if n < 256 or not np.array_equal(table[values], rgb):
        return None
    return table


def frame_converter() -> Callable[[Any], np.ndarray]:
    """``convert(frame)`` → uint8 ``[H, W, 3]``, equal to the frame's ``rgb24`` conversion (see the module
    docstring): through a luma table for constant-chroma frames where that is exact, else the conversion."""
    to_rgb = _reformatter()

    def convert(frame: Any) -> np.ndarray:
        chroma = constant_chroma(frame)
        table = None if chroma is None else luma_table(frame.format.name, frame.height, frame.width, *chroma)
        if table is None:
            return to_rgb(frame)
        return np.take(table, _plane(frame.planes[0]), axis=0)  # (numpy's take: 3x faster than table[luma])

    return convert
