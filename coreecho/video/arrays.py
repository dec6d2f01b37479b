"""In-memory frames and ``.npy`` files: :func:`as_frames`, :class:`ArrayReader` and :class:`NpyReader`.

Example:
    >>> import numpy as np
    >>> from coreecho.video.arrays import ArrayReader
    >>> ArrayReader(np.zeros((4, 8, 8), np.float32), fps=30.0).read([3]).shape
    (1, 8, 8, 3)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from coreecho.errors import InputError, VideoReadError
from coreecho.video.base import DEFAULT_MAX_BYTES, DEFAULT_MAX_SIDE, Video, VideoInfo, VideoReader
from coreecho.video.limits import DEFAULT_LIMITS, Limits, check_frame_count, check_frame_size, check_read_bytes

__all__ = ["as_frames", "ArrayReader", "NpyReader"]


def limits_from(max_bytes: int | None, max_side: int | None, base: Limits | None = None) -> Limits:
    """``base`` (default :data:`DEFAULT_LIMITS`) with the legacy ``max_bytes``/``max_side`` arguments applied."""
    limits = base or DEFAULT_LIMITS
    if max_bytes is not None and max_bytes != limits.max_bytes:
        limits = dataclasses.replace(limits, max_bytes=int(max_bytes))
    if max_side is not None and max_side != limits.max_side:
        limits = dataclasses.replace(limits, max_side=int(max_side),
                                     max_pixels=max(limits.max_pixels, int(max_side) ** 2))
    return limits


def _to_numpy(array: Any, src: str) -> np.ndarray:
    if hasattr(array, "detach") and hasattr(array, "cpu") and type(array).__module__.startswith("torch"):
        if getattr(array, "is_meta", False):
            raise InputError(src, "is a tensor on the 'meta' device, which holds no data (shape only); pass the "
                                  "frames themselves")
        layout = str(getattr(array, "layout", "torch.strided"))
        if layout != "torch.strided":
            raise InputError(src, f"is a {layout.replace('torch.', '')} tensor; pass a dense one (tensor.to_dense())")
        if getattr(array, "is_quantized", False):
            raise InputError(src, f"is a quantized tensor ({array.dtype}); pass tensor.dequantize() or an integer "
                                  "or float tensor")
        array = array.detach().cpu()
        if str(array.dtype) == "torch.bfloat16":
            array = array.float()
        return array.numpy()
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except Exception as exc:  # noqa: BLE001 - anything numpy cannot take is bad input
            raise InputError(src, f"cannot be converted to an array ({type(array).__name__}): {exc}") from exc
    return array


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
            floats that look normalised (0..1 or negative) or exceed 512 (a higher bit depth), or a size over
            the limits.

    Example:
        >>> import numpy as np
        >>> int(as_frames(np.full((2, 4, 4, 1), 300.7)).max())
        255
    """
    src = str(source)
    if isinstance(array, Video):
        return array.frames
    array = _to_numpy(array, src)
    _check_array_shape(src, array)
    t, h, w = array.shape[:3]
    limits = limits_from(max_bytes, max_side)
    check_frame_size(src, h, w, limits)
    check_read_bytes(src, t, h, w, limits)

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
        if hi > 512.0:  # past any resampling overshoot: a higher bit depth or a scaling error, never saturated
            raise InputError(
                src, f"float values go up to {hi:.3g}; pixel values must lie in 0..255 (scale higher bit depths to "
                     "8 bits first)"
            )
        out = np.clip(np.rint(array), 0, 255).astype(np.uint8)

    from coreecho.video.transforms import to_rgb

    return np.ascontiguousarray(to_rgb(out))



def _check_array_shape(src: str, array: np.ndarray) -> None:
    """Refuse shapes that are not ``(T, H, W)`` / ``(T, H, W, C)`` frames, without touching the pixels."""
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


class ArrayReader(VideoReader):
    """Frames already in memory (numpy array, torch tensor or a :class:`Video`); values are checked per read.

    Args:
        array: ``(T, H, W)`` or ``(T, H, W, C)`` frames (see :func:`as_frames`), or a :class:`Video`.
        fps: frame rate (ignored for a :class:`Video`, which carries its own).
        name: how the input is named in errors (default ``"array"``; a :class:`Video` keeps its source).
        limits: see :class:`~coreecho.video.limits.Limits`.
    """

    backend = "array"

    def __init__(self, array: Any, *, fps: float | None = None, name: str | None = None,
                 limits: Limits = DEFAULT_LIMITS):
        self._rows: dict[int, int] | None = None
        if isinstance(array, Video):
            video = array
            super().__init__(name or video.source, limits)
            self._array = video.frames
            n_frames, fps, backend = video.n_frames, video.fps, video.backend
            if video.is_partial:
                self._rows = {int(i): k for k, i in enumerate(video.frame_indices)}
            self.metadata = dict(video.metadata)
        else:
            super().__init__(name or "array", limits)
            self._array = _to_numpy(array, self.source)
            _check_array_shape(self.source, self._array)
            n_frames, backend = int(self._array.shape[0]), "array"
        t, h, w = (int(x) for x in self._array.shape[:3])
        check_frame_size(self.source, h, w, limits)
        check_frame_count(self.source, n_frames, limits, field="shape[0] (frames)")
        self.info = VideoInfo(self.source, n_frames, fps, h, w, "array", str(self._array.dtype), backend)

    def _read_sorted(self, wanted: np.ndarray) -> np.ndarray:
        rows = wanted
        if self._rows is not None:
            missing = [int(i) for i in wanted if int(i) not in self._rows]
            if missing:
                raise InputError(self.source, f"frames {missing[:5]} were not decoded in this Video")
            rows = np.array([self._rows[int(i)] for i in wanted], dtype=np.int64)
        sel = self._array if len(rows) == len(self._array) and np.array_equal(rows, np.arange(len(rows))) \
            else self._array[rows]
        return as_frames(sel, self.source, max_bytes=self.limits.max_bytes, max_side=self.limits.max_side)


class NpyReader(VideoReader):
    """A ``.npy`` file of frames, memory-mapped; its header is checked against the file size and the limits first.

    Object (pickled) arrays are refused; only the frames asked for are copied out of the map.
    """

    backend = "npy"

    def __init__(self, path: Path, limits: Limits = DEFAULT_LIMITS):
        super().__init__(str(path), limits)
        src = self.source
        try:
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                offset = fh.tell()
        except Exception as exc:  # noqa: BLE001 - numpy raises ValueError/SyntaxError/... on junk
            raise VideoReadError(src, f"is not a valid .npy file ({exc})") from exc
        if dtype.hasobject:
            raise VideoReadError(src, f"dtype {dtype} holds Python objects (pickled data), which are not loaded for "
                                      "safety; save a plain numeric array (e.g. uint8)")
        if dtype.kind not in "uif" or dtype.subdtype is not None or dtype.names:
            raise VideoReadError(src, f"dtype {dtype} is not a pixel type; save uint8 (or another integer or float) "
                                      "frames")
        shape = tuple(int(x) for x in shape)
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3, 4)):
            raise InputError(src, f"shape {shape}: expected frames shaped (T, H, W) or (T, H, W, C) with C = 1, 3 or 4")
        if shape[0] == 0:
            raise VideoReadError(src, f"shape {shape} contains no frames (0-frame array)")
        check_frame_size(src, shape[1], shape[2], limits, field=f"shape {shape}: frame size", error=VideoReadError)
        check_frame_count(src, shape[0], limits, field=f"shape {shape}: frame count", error=VideoReadError)
        need = int(np.prod(shape, dtype=object)) * dtype.itemsize
        have = path.stat().st_size - offset
        if have < need:
            raise VideoReadError(src, f"is truncated or lies: its header declares shape {shape} of {dtype} "
                                      f"({need} bytes) but the file holds {max(have, 0)} bytes of data; "
                                      "save the array again")
        try:
            self._map = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                  order="F" if fortran else "C")
        except Exception as exc:  # noqa: BLE001
            raise VideoReadError(src, f"cannot be memory-mapped ({exc})") from exc
        self.info = VideoInfo(src, shape[0], None, shape[1], shape[2], "npy", str(dtype), "npy")
        self.metadata = {"dtype": str(dtype)}

    def _bytes_per_pixel(self) -> float:
        shape = self._map.shape
        return max(3, self._map.dtype.itemsize * (shape[3] if len(shape) == 4 else 1))

    def _read_sorted(self, wanted: np.ndarray) -> np.ndarray:
        try:
            sel = np.asarray(self._map[wanted])
        except Exception as exc:  # noqa: BLE001
            raise VideoReadError(self.source, f"frames cannot be read from the file ({exc})") from exc
        return np.ascontiguousarray(as_frames(sel, self.source, max_bytes=self.limits.max_bytes,
                                              max_side=self.limits.max_side))

    def close(self) -> None:
        mm = getattr(self._map, "_mmap", None)
        self._map = None
        if mm is not None:
            try:
                mm.close()
            except Exception:  # noqa: BLE001 - a view may still hold it; the GC closes it then
                pass
