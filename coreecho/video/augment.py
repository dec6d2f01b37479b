"""Training augmentation: zero-pad a clip and crop it back at a random position (one position per clip).

``pad`` and its ``style`` come from the model's :class:`~coreecho.models.config.PreprocessConfig`
(see :data:`coreecho.constants.PAD_STYLES`):

* ``"coreecho"`` (default, the official CoReEcho recipe): the frame is zero-padded by ``pad`` pixels per axis in
  total (``pad // 2`` before, the rest after) and a window of the original size is cropped at one of ``pad + 1``
  uniform positions per axis. With ``pad=12`` at 112 px this is the official ``PadIfNeeded(124, 124)`` with zeros
  followed by ``RandomCrop(112, 112)``: every pixel moves by the same offset, uniform over ``-6 .. +6`` on each axis.
* ``"echonet-dynamic"``: EchoNet-Dynamic's ``pad``: ``pad`` zeros on every side and a crop at one of ``2 * pad``
  positions per axis (offsets ``-(pad - 1) .. +pad``).

The augmentation runs on ``uint8`` clips, before normalisation, so the padding is black pixels. The two axes are
drawn independently; all frames of a clip share the draw; every clip (every view) gets its own.

Example:
    >>> import numpy as np
    >>> shift_range(12), shift_range(12, "echonet-dynamic")
    ((-6, 6), (-11, 12))
    >>> pad_and_crop(np.ones((2, 3, 8, 8, 3), np.uint8), 4, np.random.default_rng(0)).shape
    (2, 3, 8, 8, 3)
"""

from __future__ import annotations

import numpy as np

from coreecho.constants import PAD_STYLES
from coreecho.errors import InputError

__all__ = ["pad_and_crop", "shift_range", "draw_offsets", "apply_offsets", "crop_window"]


def _layout(pad: int, style: str) -> tuple[int, int]:
    """``(before, positions)``: zero rows added before the frame and crop positions per axis."""
    if style not in PAD_STYLES:
        raise InputError("pad_style", f"must be one of {list(PAD_STYLES)}, got {style!r}")
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
        raise InputError("pad", f"must be a whole number of pixels >= 0, got {pad!r}")
    pad = int(pad)
    return (pad // 2, pad + 1) if style == "coreecho" else (pad, 2 * pad)


def shift_range(pad: int, style: str = "coreecho") -> tuple[int, int]:
    """The smallest and largest move in pixels (per axis, inclusive) of :func:`pad_and_crop`.

    A move of ``+d`` shows the content ``d`` pixels further down (or right) than in the original; every value in
    between is equally likely. ``(0, 0)`` when ``pad`` is 0.
    """
    before, positions = _layout(pad, style)
    if positions <= 1:
        return 0, 0
    return before - (positions - 1), before


def draw_offsets(k: int, pad: int, rng: np.random.Generator, style: str = "coreecho") -> np.ndarray:
    """The random crops of ``k`` clips as source offsets: int64 ``[k, 2]`` ``(row, column)``, with crop ``j`` being
    ``out[.., i, c] = clip[.., i + row, c + column]`` (zeros outside the clip).

    Draws exactly what :func:`pad_and_crop` draws (two integers per clip, in clip order), so a worker can hand the
    offsets over with its uint8 clips and the crop be applied later (:func:`coreecho.video.model_input.to_model_input`)
    with the same result. All zeros when ``pad`` is 0 (nothing is drawn).

    Example:
        >>> draw_offsets(2, 12, np.random.default_rng(0)).tolist()
        [[5, 2], [0, -3]]
    """
    before, positions = _layout(pad, style)
    out = np.zeros((int(k), 2), dtype=np.int64)
    if positions <= 1:
        return out
    for j in range(int(k)):
        out[j] = rng.integers(0, positions, size=2)
    return out - before


def crop_window(size: int, offset: int) -> tuple[slice, slice]:
    """``(destination, source)`` slices along one axis of ``out[i] = clip[i + offset]`` (zero outside the clip).

    Example:
        >>> crop_window(8, -3), crop_window(8, 2)
        ((slice(3, 8, None), slice(0, 5, None)), (slice(0, 6, None), slice(2, 8, None)))
    """
    lo = max(0, -offset)
    hi = min(size, size - offset)
    if hi <= lo:
        return slice(0, 0), slice(0, 0)
    return slice(lo, hi), slice(lo + offset, hi + offset)


def apply_offsets(clips: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Crop each clip ``[K, T, H, W, C]`` at its :func:`draw_offsets` offset (zeros outside); a new array."""
    k, t, h, w, c = clips.shape
    out = np.zeros_like(clips)
    for j in range(k):
        rows, cols = crop_window(h, int(offsets[j, 0])), crop_window(w, int(offsets[j, 1]))
        out[j, :, rows[0], cols[0]] = clips[j, :, rows[1], cols[1]]
    return out


def pad_and_crop(clips: np.ndarray, pad: int, rng: np.random.Generator, style: str = "coreecho") -> np.ndarray:
    """Move each clip by a random whole-pixel offset, filling with zeros (see the module docstring).

    Args:
        clips: ``uint8`` ``[K, T, H, W, C]``.
        pad: padding in pixels, read as ``style`` says; 0 returns ``clips`` unchanged.
        rng: the generator of the offsets (two integers per clip: row position, then column position).
        style: ``"coreecho"`` or ``"echonet-dynamic"``.

    Returns:
        An array of the same shape and dtype.
    """
    before, positions = _layout(pad, style)
    if positions <= 1:
        return clips
    return apply_offsets(clips, draw_offsets(clips.shape[0], pad, rng, style))
