"""Pad to a square and resize, without ever building the full-resolution square.

:func:`square_resize` gives exactly the bytes of ``resize_frames(pad_to_square(frames), size)`` (antialiased
bilinear, torch), but holds at most :data:`WORK_BYTES` of temporaries whatever the frame geometry: a video of
2x4096-pixel frames no longer becomes a stack of 4096x4096 float squares (11.7 GB for 60 frames).

How: torch's antialiased resize is separable. It resamples the rows (the horizontal pass) into a float32 buffer
of ``S`` x ``size``, then the columns (the vertical pass). Each row of the horizontal pass depends on that row
only, and a padding row gives zeros, so the rows of the content are resampled in small blocks (each padded to
the square's width), the padding rows are left at zero, and one vertical pass runs over the small buffer. The
weights, the order of the sums and the float32 buffer are those of the one-call resize: the output is
bit-identical (``tests/test_transforms.py`` compares both on ordinary and extreme geometries).

Example:
    >>> import numpy as np
    >>> square_resize(np.zeros((2, 3, 4000, 3), np.uint8), 32).shape
    (2, 32, 32, 3)
"""

from __future__ import annotations

import numpy as np

__all__ = ["square_resize", "square_resize_bytes", "WORK_BYTES"]

#: Bytes of float32 temporaries one :func:`square_resize` call aims at (a few times this at most, see
#: :func:`square_resize_bytes`); the output itself is counted apart.
WORK_BYTES = 64 * 2**20


def _plan(h: int, w: int, size: int, n_frames: int, work: int = WORK_BYTES) -> tuple[int, int]:
    """``(frames per chunk, content rows per block)`` for frames of ``h`` x ``w`` resized to ``size``."""
    s = max(h, w)
    per_frame = 3 * 4 * (s * size + 2 * size * size)  # the horizontal buffer, the resized frame and its rounding
    chunk = int(max(1, min(n_frames, work // per_frame)))
    rows = int(max(1, min(h, work // (chunk * 3 * 4 * (w + s + size)))))
    return chunk, rows


def square_resize_bytes(n_frames: int, height: int, width: int, size: int) -> int:
    """Upper bound of the bytes :func:`square_resize` holds at once for these frames: its float32 temporaries and
    its uint8 output (the input is not counted).

    Example:
        >>> square_resize_bytes(60, 2, 4096, 112) < 100 * 2**20
        True
    """
    h, w, size = int(height), int(width), int(size)
    chunk, rows = _plan(h, w, size, n_frames)
    s = max(h, w)
    temps = 3 * 4 * chunk * (s * size + 2 * size * size + rows * (w + s + size))
    return int(temps + n_frames * size * size * 3)


def square_resize(frames: np.ndarray, size: int) -> np.ndarray:
    """``resize_frames(pad_to_square(frames), size)``, bit for bit, in bounded memory (see the module docstring).

    Args:
        frames: ``uint8`` ``[T, H, W, 3]``.
        size: output side.

    Returns:
        ``uint8`` ``[T, size, size, 3]``; the input itself when it already has that size.
    """
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    t, h, w, c = frames.shape
    size = int(size)
    if (h, w) == (size, size):
        return frames
    s = max(h, w)
    y0, x0 = (s - h) // 2, (s - w) // 2
    chunk, rows = _plan(h, w, size, t)
    out = np.empty((t, size, size, c), dtype=np.uint8)

    def resample(x: "torch.Tensor", shape: tuple[int, int]) -> "torch.Tensor":
        return F.interpolate(x, size=shape, mode="bilinear", antialias=True, align_corners=False)

    for i in range(0, t, chunk):
        part = frames[i:i + chunk]
        n = part.shape[0]
        mid = torch.zeros((n, c, s, size), dtype=torch.float32)  # the horizontal pass; padding rows stay zero
        for r in range(0, h, rows):
            block = torch.from_numpy(np.ascontiguousarray(part[:, r:r + rows])).permute(0, 3, 1, 2).float()
            k = block.shape[2]
            if w != s:
                wide = torch.zeros((n, c, k, s), dtype=torch.float32)
                wide[..., x0:x0 + w] = block
                block = wide
            mid[:, :, y0 + r:y0 + r + k] = resample(block, (k, size))
            del block
        y = resample(mid, (size, size))
        del mid
        out[i:i + n] = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out
