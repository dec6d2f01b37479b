"""Frame transforms: to 3 channels, ultrasound sector crop, pad, resize, normalise, fps resampling.

Pure functions of their arguments: the model configuration decides the values (size, mean, std...).
Frames are ``uint8`` ``[T, H, W, 3]`` unless stated; clips are ``[K, T, H, W, 3]``.

These are the pixel steps of :class:`coreecho.video.pipeline.ClipPipeline` (its ``transform`` calls
:func:`prepare_frames`; the model input is made by :mod:`coreecho.video.model_input`, which gives exactly the
numbers of :func:`normalize`). A model's input comes from the pipeline, ``model.pipeline()(video).x``, which also
finds the fan box in the whole video and applies the fps policy, the memory budget and the clip limit.

Example:
    >>> import numpy as np
    >>> frames = np.zeros((4, 112, 112, 3), np.uint8)
    >>> prepare_frames(frames) is frames
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily, inside the functions that need it
    import torch

from coreecho.constants import ECHONET_MEAN, ECHONET_STD  # re-exported: defined in coreecho.constants
from coreecho.errors import InputError

__all__ = [
    "ECHONET_MEAN",
    "ECHONET_STD",
    "to_rgb",
    "find_sector_bbox",
    "crop_sector",
    "pad_to_square",
    "resize_frames",
    "prepare_frames",
    "normalize",
    "resample_indices",
    "resample_fps",
]


def _check_frames(frames: Any, name: str = "frames") -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        raise InputError(name, f"expected a numpy array, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(name, f"expected frames shaped (T, H, W, 3), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise InputError(name, f"expected uint8 frames, got {frames.dtype}; convert with coreecho.video.as_frames")
    if 0 in frames.shape:
        raise InputError(name, f"has no pixels (shape {frames.shape})")
    return frames


def to_rgb(frames: np.ndarray) -> np.ndarray:
    """Give frames exactly 3 channels: grey ``(T,H,W)``/``(T,H,W,1)`` is repeated, RGBA loses alpha.

    The dtype is kept; an array that already has 3 channels is returned as is.

    Args:
        frames: ``(T, H, W)`` or ``(T, H, W, C)`` with C in {1, 3, 4}.

    Returns:
        ``(T, H, W, 3)`` array.

    Raises:
        InputError: another shape.

    Example:
        >>> import numpy as np
        >>> to_rgb(np.zeros((2, 5, 5), np.uint8)).shape
        (2, 5, 5, 3)
    """
    a = np.asarray(frames)
    if a.ndim == 3:
        return np.repeat(a[..., None], 3, axis=-1)
    if a.ndim == 4 and a.shape[-1] == 3:
        return a
    if a.ndim == 4 and a.shape[-1] == 1:
        return np.repeat(a, 3, axis=-1)
    if a.ndim == 4 and a.shape[-1] == 4:
        return a[..., :3]
    raise InputError("frames", f"expected (T, H, W) or (T, H, W, C) with C in 1, 3, 4; got shape {a.shape}")


# ----------------------------------------------------------------------------------------------------------
# sector detection


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)x(2r+1) square (separable shifts)."""
    if r <= 0:
        return mask.copy()
    out = mask.copy()
    for axis in (0, 1):
        src = out.copy()
        for s in range(1, r + 1):
            if axis == 0:
                out[s:] |= src[:-s]
                out[:-s] |= src[s:]
            else:
                out[:, s:] |= src[:, :-s]
                out[:, :-s] |= src[:, s:]
    return out


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of a 2-D boolean mask (ties: the one met first in raster order)."""
    from scipy import ndimage  # noqa: PLC0415 - scipy comes with scikit-learn

    labels, n = ndimage.label(mask)  # 4-connectivity; labels numbered in raster order of first pixel
    if n == 0:
        return np.zeros_like(mask)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return labels == 1 + int(np.argmax(counts))


def find_sector_bbox(
    frames: np.ndarray,
    *,
    motion_threshold: float = 3.0,
    brightness_threshold: float = 8.0,
    colour_threshold: float = 40.0,
    max_stat_frames: int = 32,
) -> tuple[int, int, int, int]:
    """Bounding box ``(top, bottom, left, right)`` (half-open) of the ultrasound fan in the frames.

    Heuristics, in order:

    1. Coloured pixels (max - min over RGB above ``colour_threshold`` in any frame, e.g. an ECG trace,
       colour annotations) are never part of the fan: B-mode ultrasound is grey.
    2. With 3 or more frames, the fan is where the grey level changes over time (temporal standard
       deviation above ``motion_threshold``): burned-in text, logos, rulers and scales are static.
       With fewer frames, or when less than 0.5 % of the image moves, the non-zero (above
       ``brightness_threshold``) pixels are used instead.
    3. The mask is dilated by ~2 % of the image size to bridge speckle gaps, and the largest connected
       region is kept (a moving grey ECG line or a cine counter is a separate, smaller region).
    4. The box is that of the kept candidate pixels. If it covers less than 5 % of the image, the
       detection is deemed to have failed and the whole frame is returned.

    Statistics use at most ``max_stat_frames`` evenly spaced frames; large frames are analysed on a grid
    of at most ~160 pixels per side.

    Args:
        frames: ``uint8`` ``[T, H, W, 3]``.
        motion_threshold: temporal standard deviation (grey levels) above which a pixel moves.
        brightness_threshold: grey level above which a pixel counts as non-zero.
        colour_threshold: channel spread above which a pixel is coloured.
        max_stat_frames: frames used for the statistics.

    Returns:
        ``(top, bottom, left, right)`` with ``frames[:, top:bottom, left:right]`` the fan.

    Example:
        >>> import numpy as np
        >>> f = np.zeros((8, 64, 64, 3), np.uint8)
        >>> f[:, 10:40, 20:50] = np.random.default_rng(0).integers(0, 255, (8, 30, 30, 1), dtype=np.uint8)
        >>> find_sector_bbox(f)
        (10, 40, 20, 50)
    """
    f = _check_frames(frames)
    t, h, w, _ = f.shape
    sel = np.unique(np.linspace(0, t - 1, min(t, max_stat_frames)).round().astype(int))
    # analysis grid: block-subsample big frames (a 1024x768 frame becomes ~160 pixels per side)
    step = max(1, int(np.ceil(max(h, w) / 160)))
    sub = np.ascontiguousarray(f[sel][:, ::step, ::step])
    rgb = sub.astype(np.int16)
    coloured = (rgb.max(axis=-1) - rgb.min(axis=-1)).max(axis=0) > colour_threshold
    grey = sub.mean(axis=-1, dtype=np.float32)
    bright = grey.max(axis=0) > brightness_threshold
    mask = None
    if len(sel) >= 3:
        moving = (grey.std(axis=0) > motion_threshold) & ~coloured
        if moving.mean() >= 0.005:
            mask = moving
    if mask is None:
        mask = bright & ~coloured
    if not mask.any():
        return 0, h, 0, w
    gh, gw = mask.shape
    r = max(1, int(round(0.02 * max(gh, gw))))
    region = _largest_component(_dilate(mask, r))
    keep = mask & region
    ys, xs = np.nonzero(keep)
    top, bottom = int(ys.min()) * step, min(h, (int(ys.max()) + 1) * step)
    left, right = int(xs.min()) * step, min(w, (int(xs.max()) + 1) * step)
    if (bottom - top) * (right - left) < 0.05 * h * w:
        return 0, h, 0, w
    return top, bottom, left, right


def crop_sector(frames: np.ndarray, bbox: Sequence[int] | None = None, **kwargs: Any) -> np.ndarray:
    """Crop the frames to the ultrasound fan (see :func:`find_sector_bbox`).

    Args:
        frames: ``uint8`` ``[T, H, W, 3]``.
        bbox: ``(top, bottom, left, right)``; found with :func:`find_sector_bbox` when ``None``.
        **kwargs: thresholds passed to :func:`find_sector_bbox`.

    Returns:
        A view ``frames[:, top:bottom, left:right]``.

    Example:
        >>> import numpy as np
        >>> crop_sector(np.zeros((2, 10, 10, 3), np.uint8), bbox=(1, 9, 2, 8)).shape
        (2, 8, 6, 3)
    """
    f = _check_frames(frames)
    top, bottom, left, right = find_sector_bbox(f, **kwargs) if bbox is None else (int(v) for v in bbox)
    if not (0 <= top < bottom <= f.shape[1] and 0 <= left < right <= f.shape[2]):
        raise InputError("bbox", f"({top}, {bottom}, {left}, {right}) is empty or outside frames of size "
                                 f"{f.shape[1]}x{f.shape[2]}")
    return f[:, top:bottom, left:right]


def pad_to_square(frames: np.ndarray, value: int = 0) -> np.ndarray:
    """Pad the shorter side with ``value`` (centred; an odd extra pixel goes bottom/right).

    Args:
        frames: ``[T, H, W, C]``.
        value: fill value.

    Returns:
        ``[T, S, S, C]`` with ``S = max(H, W)``; the input itself when already square.

    Example:
        >>> import numpy as np
        >>> pad_to_square(np.ones((1, 2, 5, 3), np.uint8)).shape
        (1, 5, 5, 3)
    """
    t, h, w, c = frames.shape
    if h == w:
        return frames
    s = max(h, w)
    out = np.full((t, s, s, c), value, dtype=frames.dtype)
    y0, x0 = (s - h) // 2, (s - w) // 2
    out[:, y0:y0 + h, x0:x0 + w] = frames
    return out


def resize_frames(frames: np.ndarray, size: int | tuple[int, int] = 112, *, chunk: int = 64) -> np.ndarray:
    """Resize ``uint8`` frames with antialiased bilinear interpolation (torch), rounding back to ``uint8``.

    Args:
        frames: ``uint8`` ``[T, H, W, 3]``.
        size: output side (square) or ``(height, width)``.
        chunk: frames resized per torch call (bounds memory).

    Returns:
        ``uint8`` ``[T, h, w, 3]``; the input itself when it already has that size.

    Example:
        >>> import numpy as np
        >>> resize_frames(np.zeros((2, 300, 400, 3), np.uint8), 112).shape
        (2, 112, 112, 3)
    """
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    f = _check_frames(frames)
    oh, ow = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if oh <= 0 or ow <= 0:
        raise InputError(f"size={size!r}", "must be positive")
    if f.shape[1:3] == (oh, ow):
        return f
    out = np.empty((f.shape[0], oh, ow, 3), dtype=np.uint8)
    chunk = max(1, min(chunk, (64 * 2**20) // (12 * max(f.shape[1] * f.shape[2], oh * ow))))  # float32 bounded
    for i in range(0, f.shape[0], chunk):
        x = torch.from_numpy(np.ascontiguousarray(f[i:i + chunk])).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(oh, ow), mode="bilinear", antialias=True, align_corners=False)
        out[i:i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def prepare_frames(frames: np.ndarray, *, size: int = 112, crop_sector: bool = True,
                   sector_from: np.ndarray | None = None,
                   bbox: Sequence[int] | None = None) -> np.ndarray:
    """Raw frames to the model's square ``size`` x ``size`` RGB frames.

    ``size`` x ``size`` input passes through untouched (the same array, bit-exact), as EchoNet-Dynamic videos
    do. Anything else is cropped to the ultrasound fan (when ``crop_sector``), padded to a square (so the
    fan keeps its aspect ratio) and resized with antialiasing.

    Args:
        frames: ``[T, H, W]`` or ``[T, H, W, C]`` ``uint8`` frames (use :func:`coreecho.video.as_frames`
            for other dtypes).
        size: output side.
        crop_sector: crop to the fan first (see :func:`find_sector_bbox`).
        sector_from: frames to find the fan in (default: ``frames``). The clip pipeline passes frames spread
            over the whole video, so the crop is a property of the video, not of the clips read with it.
        bbox: the fan's ``(top, bottom, left, right)`` when already known (then nothing is searched).

    Returns:
        ``uint8`` ``[T, size, size, 3]``.

    Example:
        >>> import numpy as np
        >>> prepare_frames(np.zeros((3, 600, 800, 3), np.uint8)).shape
        (3, 112, 112, 3)
    """
    f = _check_frames(to_rgb(frames) if isinstance(frames, np.ndarray) else frames)
    if f.shape[1:3] == (size, size):
        return f
    if crop_sector:
        if bbox is None:
            bbox = find_sector_bbox(f if sector_from is None else _check_frames(sector_from))
        top, bottom, left, right = (int(v) for v in bbox)
        f = f[:, top:bottom, left:right]
    from coreecho.video.resize import square_resize  # noqa: PLC0415

    return square_resize(f, size)  # = resize_frames(pad_to_square(f), size), without the full-size square


def normalize(
    clips: Any,
    mean: Sequence[float] = ECHONET_MEAN,
    std: Sequence[float] = ECHONET_STD,
) -> torch.Tensor:
    """``(x - mean) / std`` per channel, in 0..255 pixel units, to the model's float32 layout.

    The numbers are those of :func:`coreecho.video.model_input.normalize_reference` (float64, rounded to float32
    after each step, as numpy's in-place float32 arithmetic with float64 constants does in the official pipeline),
    bit for bit; they are read from a 256-entry table per channel in one pass
    (:func:`coreecho.video.model_input.to_model_input`).

    Args:
        clips: ``uint8`` ``[K, T, H, W, 3]`` (or one clip ``[T, H, W, 3]``), numpy or torch.
        mean: 3 channel means in 0..255 units.
        std: 3 channel standard deviations in 0..255 units.

    Returns:
        ``torch.float32`` tensor ``(K, 3, T, H, W)``.

    Example:
        >>> import numpy as np
        >>> normalize(np.zeros((2, 36, 112, 112, 3), np.uint8)).shape
        torch.Size([2, 3, 36, 112, 112])
    """
    from coreecho.video.model_input import to_model_input  # noqa: PLC0415 - it imports torch

    return to_model_input(clips, mean, std)


def resample_indices(n_frames: int, fps_in: float, fps_out: float) -> np.ndarray:
    """Source frame of each output frame for nearest-frame resampling from ``fps_in`` to ``fps_out``.

    Output frame ``j`` is at time ``j / fps_out``; it takes the source frame nearest that time,
    ``round(j * fps_in / fps_out)`` (ties go to the earlier frame). The output has ``max(1, round(n_frames * fps_out / fps_in))`` frames.

    Args:
        n_frames: source length.
        fps_in: source frame rate.
        fps_out: target frame rate.

    Returns:
        int64 array of source indices.

    Example:
        >>> resample_indices(10, 50, 25).tolist()
        [0, 2, 4, 6, 8]
    """
    for name, v in (("fps_in", fps_in), ("fps_out", fps_out)):
        if v is None or not np.isfinite(v) or v <= 0:
            raise InputError(f"{name}={v!r}", "frame rates must be positive numbers")
    if n_frames < 1:
        raise InputError(f"n_frames={n_frames}", "needs at least one frame")
    n_out = max(1, int(round(n_frames * fps_out / fps_in)))
    idx = np.ceil(np.arange(n_out) * (fps_in / fps_out) - 0.5 - 1e-9).astype(np.int64)
    return np.minimum(idx, n_frames - 1)


def resample_fps(frames: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Nearest-frame temporal resampling (see :func:`resample_indices`).

    Args:
        frames: ``[T, ...]`` array.
        fps_in: its frame rate.
        fps_out: the wanted frame rate.

    Returns:
        The resampled frames (the input itself when the rates are equal).

    Example:
        >>> import numpy as np
        >>> resample_fps(np.zeros((100, 2, 2, 3), np.uint8), 100.0, 50.0).shape
        (50, 2, 2, 3)
    """
    if fps_in == fps_out:
        return frames
    return frames[resample_indices(len(frames), fps_in, fps_out)]
