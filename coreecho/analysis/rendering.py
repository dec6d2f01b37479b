"""Rendering Grad-CAM heatmaps: colour maps, overlays on the frames, GIF/MP4 files and PNG montages.

Pure image work on ``uint8`` frames ``[T, H, W, 3]`` and heatmaps ``[T, H, W]`` in 0..1; no model is involved
(:mod:`coreecho.analysis.gradcam` computes the maps and its :class:`~coreecho.analysis.gradcam.Explanation` calls
these functions).

Files: GIFs are written with Pillow (PyAV's GIF encoder when Pillow is missing), videos with PyAV, PNG montages
with matplotlib (the labelled figure) or, without matplotlib, Pillow (the plain :func:`montage` grid). Pillow is
not listed in coreecho's own dependencies but is always installed with them (timm requires torchvision, which
requires Pillow); it is imported only when a file is written, and its absence is a
:class:`~coreecho.errors.MissingDependencyError` naming the package.

Example:
    >>> import numpy as np
    >>> overlay(np.zeros((2, 8, 8, 3), np.uint8), np.ones((2, 8, 8))).shape
    (2, 8, 8, 3)
    >>> montage(np.zeros((8, 16, 16, 3), np.uint8), np.zeros((8, 16, 16)), n=4, scale=1).shape
    (44, 74, 3)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from coreecho.errors import InputError, MissingDependencyError
from coreecho.video.io import write_video

__all__ = ["OVERLAY_FLOOR", "colorize", "overlay", "montage", "save_overlay", "save_montage"]

#: Share of ``alpha`` that every pixel of a written overlay gets, so that a cold frame shows the colour of 0
#: (dark blue with "jet") instead of looking as if the heatmap were missing.
OVERLAY_FLOOR = 0.4


def _image_module(feature: str) -> ModuleType:
    """``PIL.Image``, or a :class:`MissingDependencyError` saying how to install Pillow."""
    try:
        from PIL import Image  # noqa: PLC0415  (imported when a file is written: ``import coreecho`` stays light)
    except ImportError as err:
        raise MissingDependencyError("pillow", "viz", feature) from err
    return Image


_JET = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0],
                 [0.5, 0.0, 0.0]])
_JET_AT = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])


def colorize(values: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """Map values in 0..1 to ``uint8`` RGB (``[..., 3]``).

    ``"jet"`` is built in; other names use matplotlib's colormaps when matplotlib is installed.

    Example:
        >>> colorize(np.array([0.0, 1.0])).tolist()
        [[0, 0, 128], [128, 0, 0]]
    """
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)), 0.0, 1.0)
    if colormap == "jet":
        rgb = np.stack([np.interp(v, _JET_AT, _JET[:, c]) for c in range(3)], axis=-1)
    else:
        try:
            import matplotlib  # noqa: PLC0415
        except ImportError as err:
            raise MissingDependencyError("matplotlib", "viz", f"the colormap {colormap!r}") from err
        try:
            cmap = matplotlib.colormaps[colormap]
        except KeyError as err:
            raise InputError(f"colormap={colormap!r}", "not a matplotlib colormap name") from err
        rgb = cmap(v)[..., :3]
    return np.round(rgb * 255.0).astype(np.uint8)


def _resize_cam(cam: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    return F.interpolate(t, size=shape, mode="trilinear", align_corners=False)[0, 0].numpy()


def overlay(frames: Any, cam: Any, *, alpha: float = 0.45, colormap: str = "jet", floor: float = 0.0) -> np.ndarray:
    """Blend a heatmap into frames: ``(1 - w) * frame + w * colour(heat)`` with
    ``w = alpha * (floor + (1 - floor) * heat)``.

    With ``floor=0`` the blend weight grows with the heat, so cold regions show the echo untouched; with
    ``floor > 0`` (what the written GIFs and montages use, :data:`OVERLAY_FLOOR`) every pixel carries at least
    ``alpha * floor`` of its colour, so a frame without heat shows the colour of 0 rather than nothing.

    Args:
        frames: ``uint8`` ``[T, H, W, 3]`` or ``[T, H, W]``.
        cam: ``[T, H, W]`` in 0..1; resized (trilinear) when its shape differs from the frames'.
        alpha: largest weight of the colour.
        colormap: ``"jet"`` (built in) or a matplotlib colormap name.
        floor: share of ``alpha`` given to every pixel, 0..1.

    Returns:
        ``uint8`` ``[T, H, W, 3]``.

    Example:
        >>> overlay(np.zeros((2, 8, 8, 3), np.uint8), np.ones((2, 8, 8))).shape
        (2, 8, 8, 3)
    """
    f = np.asarray(frames)
    if f.ndim == 3:
        f = np.repeat(f[..., None], 3, axis=-1)
    if f.ndim != 4 or f.shape[-1] not in (1, 3):
        raise InputError("frames", f"expected [T, H, W, 3] or [T, H, W], got shape {f.shape}")
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    c = np.asarray(cam, dtype=np.float32)
    if c.ndim != 3:
        raise InputError("cam", f"expected a heatmap [T, H, W], got shape {c.shape}")
    if c.shape != f.shape[:3]:
        c = _resize_cam(c, f.shape[:3])
    if not (0.0 <= alpha <= 1.0):
        raise InputError(f"alpha={alpha}", "must be between 0 and 1")
    if not (0.0 <= floor <= 1.0):
        raise InputError(f"floor={floor}", "must be between 0 and 1")
    c = np.clip(np.nan_to_num(c), 0.0, 1.0)
    w = (alpha * (floor + (1.0 - floor) * c))[..., None]
    out = (1.0 - w) * f.astype(np.float32) + w * colorize(c, colormap).astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise InputError(f"scale={scale!r}", "must be a positive integer")
    return frames if scale == 1 else frames.repeat(scale, axis=-3).repeat(scale, axis=-2)


def save_overlay(path: str | os.PathLike, frames: Any, cam: Any = None, *, fps: float = 10.0, alpha: float = 0.45,
                 colormap: str = "jet", scale: int = 2, floor: float = OVERLAY_FLOOR) -> Path:
    """Write frames with a heatmap as an animated GIF (``.gif``) or a video (``.mp4``, ``.avi``...).

    GIFs are written with Pillow when it is installed, else with PyAV's GIF encoder; other extensions with
    PyAV (H.264 in MP4, MJPEG in AVI).

    Args:
        path: output file; its extension picks the format.
        frames: ``uint8`` ``[T, H, W, 3]``; already blended when ``cam`` is ``None``.
        cam: heatmap ``[T, H, W]`` in 0..1, or ``None``.
        fps: playback rate.
        alpha, colormap, floor: see :func:`overlay`.
        scale: integer upscaling (nearest) so that 112-pixel clips are visible.

    Returns:
        The path written.

    Example:
        >>> save_overlay("/tmp/cam.gif", np.zeros((4, 16, 16, 3), np.uint8), np.ones((4, 16, 16)))  # doctest: +SKIP
        PosixPath('/tmp/cam.gif')
    """
    img = (overlay(frames, cam, alpha=alpha, colormap=colormap, floor=floor) if cam is not None
           else np.asarray(frames, np.uint8))
    if img.ndim != 4 or img.shape[-1] != 3:
        raise InputError("frames", f"expected [T, H, W, 3], got shape {img.shape}")
    if not (np.isfinite(fps) and fps > 0):
        raise InputError(f"fps={fps}", "must be positive")
    img = _upscale(img, scale)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ext = p.suffix.lower()
    if ext == ".gif":
        try:
            from PIL import Image  # noqa: PLC0415  (optional here: PyAV, a core dependency, writes GIFs too)
        except ImportError:
            return write_video(p, img, fps=fps, codec="gif")
        pics = [Image.fromarray(f) for f in img]
        pics[0].save(p, save_all=True, append_images=pics[1:], duration=max(1, int(round(1000.0 / fps))), loop=0)
        return p
    if ext in (".mp4", ".mov", ".mkv", ".m4v"):
        if img.shape[1] % 2 or img.shape[2] % 2:
            img = np.pad(img, ((0, 0), (0, img.shape[1] % 2), (0, img.shape[2] % 2), (0, 0)))
        return write_video(p, img, fps=fps, codec="libx264")
    if ext == ".avi":
        return write_video(p, img, fps=fps)
    raise InputError(str(p), "unsupported extension; use .gif, .mp4 or .avi")


def _picks(t: int, n: Any) -> np.ndarray:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n={n!r}", "must be a positive integer")
    return np.unique(np.round(np.linspace(0, t - 1, min(int(n), t))).astype(int))


def montage(frames: Any, cam: Any, *, n: int = 6, alpha: float = 0.45, colormap: str = "jet", scale: int = 2,
            gap: int = 2, floor: float = OVERLAY_FLOOR) -> np.ndarray:
    """A grid image without text (no plotting library needed): ``n`` evenly spaced frames on top, the same
    frames with the heatmap below, and a colour bar (0 → 1, left to right) at the bottom.

    :func:`save_montage` draws the labelled figure with matplotlib instead when it is installed.

    Returns:
        ``uint8`` ``[rows, cols, 3]`` (white background).

    Example:
        >>> montage(np.zeros((8, 16, 16, 3), np.uint8), np.zeros((8, 16, 16)), n=4, scale=1).shape
        (44, 74, 3)
    """
    f = np.asarray(frames)
    if f.ndim == 3:
        f = np.repeat(f[..., None], 3, axis=-1)
    blended = overlay(f, cam, alpha=alpha, colormap=colormap, floor=floor)
    picks = _picks(len(f), n)
    top = _upscale(f[picks].astype(np.uint8), scale)
    bottom = _upscale(blended[picks], scale)
    k, h, w = top.shape[:3]
    bar_h = max(4, h // 8)
    width = k * w + (k + 1) * gap
    height = 2 * h + bar_h + 4 * gap
    canvas = np.full((height, width, 3), 255, np.uint8)
    for i in range(k):
        x0 = gap + i * (w + gap)
        canvas[gap:gap + h, x0:x0 + w] = top[i]
        canvas[2 * gap + h:2 * gap + 2 * h, x0:x0 + w] = bottom[i]
    bar = colorize(np.linspace(0.0, 1.0, width - 2 * gap), colormap)
    canvas[3 * gap + 2 * h:3 * gap + 2 * h + bar_h, gap:width - gap] = bar[None]
    return canvas


def _montage_figure(path: Path, frames: np.ndarray, cam: Any, *, n: int, alpha: float, colormap: str, floor: float,
                    title: str | None, frame_indices: Any, fps: float | None, dpi: int = 110) -> None:
    """The labelled montage (matplotlib): title, frame numbers and times, per-frame peak, colour bar with scale."""
    from matplotlib.cm import ScalarMappable  # noqa: PLC0415
    from matplotlib.colors import LinearSegmentedColormap, Normalize  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    f = np.asarray(frames)
    if f.ndim == 3:
        f = np.repeat(f[..., None], 3, axis=-1)
    c = np.asarray(cam, dtype=np.float32)
    blended = overlay(f, c, alpha=alpha, colormap=colormap, floor=floor)
    if c.ndim == 3 and c.shape != f.shape[:3]:
        c = _resize_cam(c, f.shape[:3])
    c = np.clip(np.nan_to_num(c), 0.0, 1.0)
    picks = _picks(len(f), n)
    idx = None if frame_indices is None else np.asarray(frame_indices).reshape(-1)
    if idx is not None and (len(idx) != len(f) or not (idx >= 0).any()):
        idx = None  # a clip given as a tensor: no video frame numbers
    k = len(picks)
    fig = Figure(figsize=(1.55 * k + 1.6, 4.0), dpi=dpi)
    grid = fig.add_gridspec(2, k + 1, width_ratios=[1.0] * k + [0.09], left=0.05, right=0.88, top=0.76,
                            bottom=0.1, wspace=0.06, hspace=0.28)
    for j, i in enumerate(picks):
        top, bottom = fig.add_subplot(grid[0, j]), fig.add_subplot(grid[1, j])
        top.imshow(f[i].astype(np.uint8), interpolation="nearest")
        bottom.imshow(blended[i], interpolation="nearest")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
        if idx is None:
            label = f"clip frame {i}"
        elif idx[i] < 0:
            label = "padding\n(past the end)"
        else:
            label = f"frame {int(idx[i])}" + (f"\n{idx[i] / fps:.2f} s" if fps else "")
        top.set_title(label, fontsize=8)
        bottom.set_xlabel(f"peak {float(c[i].max()):.2f}", fontsize=8)
    fig.axes[0].set_ylabel("echo", fontsize=9)
    fig.axes[1].set_ylabel("Grad-CAM", fontsize=9)
    if colormap == "jet":
        cmap = LinearSegmentedColormap.from_list("coreecho_jet", list(zip(_JET_AT, _JET)))
    else:
        import matplotlib  # noqa: PLC0415

        cmap = matplotlib.colormaps[colormap]
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), cax=fig.add_subplot(grid[:, k]))
    bar.set_ticks([0.0, 0.25, 0.5, 0.75, 1.0])
    bar.set_label("Grad-CAM relevance\n(0 = none, 1 = clip maximum)", fontsize=8)
    bar.ax.tick_params(labelsize=8)
    fig.suptitle(title or "Grad-CAM", fontsize=9.5, y=0.985)
    fig.text(0.5, 0.005, "colour: where features push the output up (min-max over the whole clip); "
             "dark blue = no such evidence", ha="center", va="bottom", fontsize=7, color="0.3")
    fig.savefig(path, dpi=dpi)


def save_montage(path: str | os.PathLike, frames: Any, cam: Any, *, n: int = 6, alpha: float = 0.45,
                 colormap: str = "jet", scale: int = 2, floor: float = OVERLAY_FLOOR, title: str | None = None,
                 frame_indices: Any = None, fps: float | None = None) -> Path:
    """Write a PNG montage of ``n`` evenly spaced frames of a clip, without and with the heatmap.

    With matplotlib (the ``viz`` or ``dev`` extra) the figure has a title, each frame's video frame number and
    time (``frame_indices``, ``fps``), each overlay's peak value and a colour bar with its 0..1 scale. Without
    matplotlib it is the unlabelled :func:`montage` grid (a ``UserWarning`` says so).

    Args:
        path: ``.png`` file.
        frames: ``uint8`` ``[T, H, W, 3]`` or ``[T, H, W]``.
        cam: heatmap ``[T, H, W]`` in 0..1.
        n: frames shown.
        alpha, colormap, floor: see :func:`overlay`.
        scale: upscaling of the plain grid (without matplotlib).
        title: figure title (:meth:`~coreecho.analysis.gradcam.Explanation.save_montage` writes model, video, stage and clip).
        frame_indices: video frame of each clip frame (``-1`` = zero padding); ``None``: clip positions.
        fps: frame rate, for the times under the frame numbers.

    Example:
        >>> save_montage("/tmp/cam.png", np.zeros((8, 16, 16, 3), np.uint8), np.zeros((8, 16, 16)))  # doctest: +SKIP
        PosixPath('/tmp/cam.png')
    """
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise InputError(str(p), "the montage is written as PNG; use a .png file name")
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        warnings.warn("matplotlib is not installed: the montage has no title, frame labels or colour-bar values "
                      "(pip install matplotlib, or the 'viz' extra)", UserWarning, stacklevel=2)
        image = montage(frames, cam, n=n, alpha=alpha, colormap=colormap, scale=scale, floor=floor)
        image_module = _image_module(f"writing the montage {p.name}")
        image_module.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(p, format="PNG")
        return p
    _montage_figure(p, np.asarray(frames), cam, n=n, alpha=alpha, colormap=colormap, floor=floor, title=title,
                    frame_indices=frame_indices, fps=fps)
    return p
