"""uint8 clips → the model's float32 input in one pass, exactly as :func:`coreecho.video.transforms.normalize`
computes it, on the CPU or on the device, with the training crop applied in the same pass.

A normalised pixel depends only on its channel and its uint8 value, so the model input is a table lookup: the
table (:func:`pixel_table`, ``[3, 256]`` float32) is made once per ``mean``/``std`` by the reference arithmetic
itself (float64, rounded to float32 after each step, as the official pipeline's numpy does), and every pixel reads
its entry. The result is bit-identical to the float arithmetic by construction, for every ``mean``/``std`` — a
float32 ``(x - mean) / std`` (fused or not, or ``addcmul`` with a reciprocal) is not: checked over all 768 (channel,
value) pairs with the EchoNet mean/std, float32 subtract-then-divide differs in the last bit for 385 of them,
multiply-by-reciprocal for 365, float64 subtract then float32 divide for 291 — the reference rounds twice.
Folding the normalisation into the first convolution is not exact either (the convolution then sums other
numbers in another order), so it is not done.

Workers hand over uint8 clips ``[K, T, H, W, 3]`` (a quarter of the float32 bytes) and, in training, the crop
offsets they drew (:func:`coreecho.video.augment.draw_offsets`); :func:`to_model_input` then

* on the CPU: writes each (clip, channel) plane straight into the preallocated ``[K, 3, T, H, W]`` output with one
  vectorised gather (``numpy.take``), reading only the source window the crop keeps and filling the zero border
  with the table's value for 0 — no padded copy, no float intermediate;
* on a CUDA device: copies the uint8 clips (``non_blocking``; from pinned memory when the loader pinned them) and
  crops the whole batch with one gather and looks its values up with one gather per channel, on the device.

Example:
    >>> import numpy as np, torch
    >>> from coreecho.video.transforms import normalize
    >>> px = np.random.default_rng(0).integers(0, 256, (2, 4, 8, 8, 3), dtype=np.uint8)
    >>> torch.equal(to_model_input(px), normalize(px))
    True
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch

from coreecho.constants import ECHONET_MEAN, ECHONET_STD
from coreecho.errors import InputError
from coreecho.video.augment import crop_window

__all__ = ["pixel_table", "to_model_input", "to_pixels", "normalize_reference"]


def normalize_reference(
    clips: Any,
    mean: Sequence[float] = ECHONET_MEAN,
    std: Sequence[float] = ECHONET_STD,
) -> torch.Tensor:
    """:func:`~coreecho.video.transforms.normalize` computed elementwise in float64: the definition of the model
    input's numbers (0.2's implementation; slower).

    ``y = float32(x - mean)``, then ``float32(y / std)``, both steps in float64.

    Example:
        >>> import numpy as np, torch
        >>> px = np.arange(256, dtype=np.uint8).repeat(3).reshape(1, 1, 16, 16, 3)
        >>> torch.equal(normalize_reference(px), to_model_input(px))
        True
    """
    x = clips if isinstance(clips, torch.Tensor) else torch.from_numpy(np.asarray(clips))
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5 or x.shape[-1] != 3:
        raise InputError("clips", f"expected (K, T, H, W, 3), got shape {tuple(x.shape)}")
    m = torch.as_tensor(np.asarray(mean, dtype=np.float64)).reshape(-1, 1, 1, 1)
    s = torch.as_tensor(np.asarray(std, dtype=np.float64)).reshape(-1, 1, 1, 1)
    if m.numel() != 3 or s.numel() != 3 or bool((s <= 0).any()):
        raise InputError("mean/std", "need 3 values each, std positive")
    x = x.permute(0, 4, 1, 2, 3).to(torch.float64)
    y = (x - m).to(torch.float32).to(torch.float64)
    return (y / s).to(torch.float32).contiguous()


@lru_cache(maxsize=64)
def _table(mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    values = np.arange(256, dtype=np.uint8)
    pixels = np.repeat(values[:, None], 3, axis=1).reshape(1, 256, 1, 1, 3)
    return normalize_reference(pixels, mean, std)[0, :, :, 0, 0].contiguous()


def pixel_table(mean: Sequence[float] = ECHONET_MEAN, std: Sequence[float] = ECHONET_STD) -> torch.Tensor:
    """float32 ``[3, 256]``: the normalised value of every uint8 value of every channel (reference arithmetic).

    Example:
        >>> from coreecho.constants import ECHONET_MEAN, ECHONET_STD
        >>> t = pixel_table(ECHONET_MEAN, ECHONET_STD)
        >>> t.shape, float(t[0, 0]) < 0 < float(t[0, 255])
        (torch.Size([3, 256]), True)
    """
    m = tuple(float(v) for v in np.asarray(mean, dtype=np.float64).reshape(-1))
    s = tuple(float(v) for v in np.asarray(std, dtype=np.float64).reshape(-1))
    if len(m) != 3 or len(s) != 3 or min(s) <= 0:
        raise InputError("mean/std", "need 3 values each, std positive")
    return _table(m, s)


def to_pixels(clip: Any, mean: Sequence[float] = ECHONET_MEAN, std: Sequence[float] = ECHONET_STD) -> np.ndarray:
    """The inverse of :func:`to_model_input` for one clip: float ``(3, T, H, W)`` → uint8 frames ``[T, H, W, 3]``.

    Each value becomes the uint8 whose :func:`pixel_table` entry is nearest, so a clip the pipeline made comes back
    exactly (no float inversion of mean/std anywhere else: Grad-CAM shows the pixels through this).

    Example:
        >>> import numpy as np
        >>> px = np.random.default_rng(0).integers(0, 256, (1, 4, 8, 8, 3), dtype=np.uint8)
        >>> bool((to_pixels(to_model_input(px)[0]) == px[0]).all())
        True
    """
    x = torch.as_tensor(clip).detach().to("cpu", torch.float32)
    if x.ndim != 4 or x.shape[0] != 3:
        raise InputError("clip", f"expected a normalised clip (3, T, H, W), got shape {tuple(x.shape)}")
    table = pixel_table(mean, std)
    out = np.empty(tuple(x.shape[1:]) + (3,), dtype=np.uint8)
    for c in range(3):
        row, v = table[c], x[c].reshape(-1)
        hi = torch.searchsorted(row, v.contiguous()).clamp_(1, 255)
        lo = hi - 1
        nearest = torch.where((v - row[lo]).abs() <= (row[hi] - v).abs(), lo, hi)
        out[..., c] = nearest.to(torch.uint8).reshape(x.shape[1:]).numpy()
    return out


def _check(pixels: Any, offsets: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = pixels if isinstance(pixels, torch.Tensor) else torch.from_numpy(np.asarray(pixels))
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise InputError("clips", f"expected uint8 (K, T, H, W, 3), got {x.dtype} of shape {tuple(x.shape)}")
    if offsets is None:
        return x, None
    off = torch.as_tensor(np.asarray(offsets) if not isinstance(offsets, torch.Tensor) else offsets)
    off = off.to(torch.int64).reshape(-1, 2)
    if off.shape[0] != x.shape[0]:
        raise InputError("offsets", f"expected one (row, column) offset per clip ({x.shape[0]}), got {off.shape[0]}")
    return x, off


def to_model_input(pixels: Any, mean: Sequence[float] = ECHONET_MEAN, std: Sequence[float] = ECHONET_STD, *,
                   offsets: Any = None, device: str | torch.device | None = None,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 clips → float32 ``[K, 3, T, H, W]`` model input, bit-identical to
    ``normalize(pad_and_crop(...))`` (see the module docstring).

    Args:
        pixels: uint8 ``[K, T, H, W, 3]`` (or one clip ``[T, H, W, 3]``), numpy or torch (any device).
        mean, std: per channel, in 0..255 units.
        offsets: training crop per clip, int ``[K, 2]`` ``(row, column)``: ``out[.., i, j] = clip[i + row, j +
            column]``, the normalised value of 0 outside the clip (:func:`coreecho.video.augment.draw_offsets`).
            ``None``: no crop.
        device: where the output lives (default: where ``out`` is, else where ``pixels`` are).
        out: a float32 ``[K, 3, T, H, W]`` tensor to write into (e.g. a slice of a forward pass's batch).

    Returns:
        ``out`` (or a new tensor).
    """
    x, off = _check(pixels, offsets)
    k, t, h, w, _ = x.shape
    dev = torch.device(device) if device is not None else (out.device if out is not None else x.device)
    if out is None:
        out = torch.empty((k, 3, t, h, w), dtype=torch.float32, device=dev)
    elif out.shape != (k, 3, t, h, w) or out.dtype != torch.float32 or out.device != dev:
        raise InputError("out", f"expected float32 {(k, 3, t, h, w)} on {dev}, got {out.dtype} "
                                f"{tuple(out.shape)} on {out.device}")
    table = pixel_table(mean, std)
    if dev.type == "cpu":
        _lookup_cpu(x.cpu(), table, off, out)
    else:
        if dev.type == "cuda" and x.device.type == "cpu" and not x.is_pinned():
            x = x.pin_memory()  # a loader that pins hands over pinned clips; anything else is pinned here
        _lookup_device(x.to(dev, non_blocking=True), table.to(dev, non_blocking=True), off, out)
    return out


def _lookup_cpu(x: torch.Tensor, table: torch.Tensor, off: torch.Tensor | None, out: torch.Tensor) -> None:
    """One ``numpy.take`` per (clip, channel) plane, straight into ``out`` (when contiguous; else via one buffer)."""
    k, t, h, w, _ = x.shape
    direct = out.is_contiguous()
    dst = out.numpy() if direct else np.empty(tuple(out.shape), np.float32)
    src, lut = x.numpy(), table.numpy()
    whole = (slice(0, h), slice(0, h)), (slice(0, w), slice(0, w))
    for j in range(k):
        rows, cols = whole if off is None else (crop_window(h, int(off[j, 0])), crop_window(w, int(off[j, 1])))
        border = (rows, cols) != whole
        for c in range(3):
            plane = dst[j, c]
            if border:
                plane.fill(lut[c, 0])
            if rows[0].stop > rows[0].start and cols[0].stop > cols[0].start:
                np.take(lut[c], src[j, :, rows[1], cols[1], c], out=plane[:, rows[0], cols[0]], mode="clip")
    if not direct:
        out.copy_(torch.from_numpy(dst))


def _lookup_device(x: torch.Tensor, table: torch.Tensor, off: torch.Tensor | None, out: torch.Tensor) -> None:
    """The whole batch at once on the device: one gather for the crops (zero border), one lookup per channel."""
    k, t, h, w, _ = x.shape
    dev = x.device
    if off is not None and bool((off != 0).any()):
        p = int(off.abs().max())
        padded = torch.zeros((k, t, h + 2 * p, w + 2 * p, 3), dtype=x.dtype, device=dev)
        padded[:, :, p:p + h, p:p + w] = x
        off = off.to(dev)
        rows = p + off[:, :1] + torch.arange(h, device=dev)  # [K, H]
        cols = p + off[:, 1:] + torch.arange(w, device=dev)  # [K, W]
        clip = torch.arange(k, device=dev)[:, None, None]
        x = padded[clip, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2, 4)  # [K, T, H, W, 3]
    for c in range(3):
        out[:, c] = table[c][x[..., c].to(torch.int32)]
