"""Grad-CAM for the video encoder: where in space and time the EF prediction draws its evidence.

Grad-CAM (Selvaraju et al., ICCV 2017) on a video model: take the feature map ``A`` of a stage,
``(C, T', H', W')``, and the gradient of the chosen output (the EF, or output ``target`` of a multi-output
head) with respect to it; each channel's weight is its gradient averaged over ``(T', H', W')``; the map is
``ReLU(sum_c w_c A_c)``, upsampled to the clip's ``(T, H, W)`` with trilinear interpolation and rescaled to
0..1 (min-max per clip; an all-zero map stays zero).

Stages: ``"blocks1"`` .. ``"blocks4"`` (output of the stage's last block) and ``"norm"`` (the final
BatchNorm, whose output is mean-pooled into the embedding). The default is ``"norm"``, the end of the last
stage: it is the map that the pooling and the head read, so to first order the output is the sum of the
(un-rectified) map plus a constant, as in the original CAM setting. ``"blocks4"`` has the same resolution and
differs from ``"norm"`` only by the BatchNorm's per-channel affine map, which adds a constant to the weighted
sum; after the ReLU that constant can hide everything (an all-zero map). These maps are coarse
(``T/2 x H/32 x W/32``: 3x3 per frame pair at 112 pixels); ``"blocks3"`` is twice as fine in space.

What it shows, and limits: regions whose features, weighted by their average influence on the output, push
the output **up** (evidence for a higher EF); the ReLU drops evidence for a lower EF, so a clip with none
gives an empty map (:attr:`Explanation.empty`). It is a coarse, model-dependent attribution, not a
segmentation, and only as meaningful as the model is accurate.

Example:
    >>> from coreecho.data.phantom import make_phantom
    >>> from coreecho import CoReEcho
    >>> from coreecho.models.config import ModelConfig, PreprocessConfig
    >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
    ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8},
    ...     preprocessing=PreprocessConfig(frames=8, stride=4)))
    >>> frames, meta = make_phantom(ef=55, seed=0, n_frames=40)
    >>> ex = explain(model, frames)
    >>> ex.heatmap.shape, ex.heatmap.dtype, ex.frames.shape
    ((8, 112, 112), dtype('float32'), (8, 112, 112, 3))
    >>> ex.save("/tmp/cam.gif")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from coreecho.errors import InputError

__all__ = [
    "STAGES",
    "DEFAULT_STAGE",
    "GradCAM",
    "Explanation",
    "explain",
    "explain_clip",
    "overlay",
    "colorize",
    "montage",
    "save_overlay",
    "save_montage",
    "OVERLAY_FLOOR",
]

#: Stages a map can be computed at.
STAGES = ("blocks1", "blocks2", "blocks3", "blocks4", "norm")
#: Default stage: the end of the last stage (the feature map that is pooled into the embedding).
DEFAULT_STAGE = "norm"
#: Share of ``alpha`` that every pixel of a written overlay gets, so that a cold frame shows the colour of 0
#: (dark blue with "jet") instead of looking as if the heatmap were missing.
OVERLAY_FLOOR = 0.4


def _stage_module(encoder: torch.nn.Module, stage: str) -> torch.nn.Module:
    if stage not in STAGES:
        raise InputError(f"stage={stage!r}", f"expected one of {list(STAGES)}")
    if stage == "norm":
        return encoder.norm
    blocks = getattr(encoder, stage, None)
    if blocks is None:
        raise InputError(f"stage={stage!r}", f"the encoder ({type(encoder).__name__}) has no {stage}")
    if len(blocks) == 0:  # a stage without blocks: its patch embedding is the stage's output
        return getattr(encoder, "patch_embed" + stage[-1])
    return blocks[-1]


class GradCAM:
    """Grad-CAM maps of a :class:`~coreecho.CoReEcho` for preprocessed clip batches.

    Args:
        model: the model (put in eval mode for the computation, its mode restored afterwards).
        stage: one of :data:`STAGES` (default ``"norm"``).
        target: output index for a multi-output head; ``None`` for the EF head (``[B]`` outputs).

    Example:
        >>> import torch
        >>> from coreecho import CoReEcho
        >>> from coreecho.models.config import ModelConfig
        >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
        ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8}))
        >>> cams, outputs = GradCAM(model, stage="blocks3")(torch.randn(2, 3, 8, 112, 112))
        >>> cams.shape, outputs.shape
        (torch.Size([2, 8, 112, 112]), torch.Size([2]))
    """

    def __init__(self, model: torch.nn.Module, stage: str | None = None, target: int | None = None):
        self.model = model
        self.stage = DEFAULT_STAGE if stage is None else stage
        self.module = _stage_module(model.encoder, self.stage)
        self.target = target

    def __call__(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps ``[B, T, H, W]`` (float32, 0..1 per clip) and the selected outputs ``[B]`` of clips
        ``(B, 3, T, H, W)`` (already normalised as the model's config says)."""
        if not isinstance(clips, torch.Tensor) or clips.ndim != 5 or clips.shape[1] != 3:
            raise InputError("clips", f"expected a float tensor (B, 3, T, H, W), got "
                                      f"{tuple(clips.shape) if isinstance(clips, torch.Tensor) else type(clips)}")
        model = self.model
        param = next(model.parameters())
        store: dict[str, torch.Tensor] = {}

        def hook(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            store["activation"] = output

        handles = [self.module.register_forward_hook(hook)]
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                x = clips.detach().to(device=param.device, dtype=param.dtype).requires_grad_(True)
                out = model(x)
                if out.ndim == 2:
                    if self.target is None and out.shape[1] != 1:
                        raise InputError("target", f"the head has {out.shape[1]} outputs; choose one with target=")
                    index = 0 if self.target is None else self.target
                    if not (-out.shape[1] <= index < out.shape[1]):
                        raise InputError(f"target={self.target}", f"the head has {out.shape[1]} outputs")
                    out = out[:, index]
                elif self.target not in (None, 0):
                    raise InputError(f"target={self.target}", "the head has a single output")
                act = store["activation"]
                (grad,) = torch.autograd.grad(out.sum(), act)
        finally:
            for handle in handles:
                handle.remove()
            model.train(was_training)
        with torch.no_grad():
            weights = grad.float().mean(dim=(2, 3, 4), keepdim=True)
            cam = F.relu((weights * act.detach().float()).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=tuple(clips.shape[2:]), mode="trilinear", align_corners=False)[:, 0]
            flat = cam.flatten(1)
            lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
            hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
            span = hi - lo
            cam = torch.where(span > 0, (cam - lo) / torch.where(span > 0, span, torch.ones_like(span)),
                              torch.zeros_like(cam))
        return cam.cpu(), out.detach().float().cpu()


@dataclass
class Explanation:
    """Grad-CAM of one clip.

    Attributes:
        heatmap: ``float32`` ``[T, H, W]`` in 0..1.
        frames: ``uint8`` ``[T, H, W, 3]``: the frames the model saw (resized, before normalisation).
        output: the explained output of the model for this clip (EF in % for EF models).
        stage: the encoder stage.
        target: the output index (``None`` for the EF head).
        start: first frame of the clip in the video (``-1`` for a clip given as a tensor).
        frame_indices: video frame of each clip frame; ``-1`` for zero-padded frames past the end.
        source: the path, or ``"array"``/``"tensor"``.

    Example:
        >>> ex = explain(model, "a4c.avi")  # doctest: +SKIP
        >>> ex.heatmap.shape, ex.output, ex.empty  # doctest: +SKIP
        ((36, 112, 112), 57.2, False)
    """

    heatmap: np.ndarray
    frames: np.ndarray
    output: float
    stage: str
    target: int | None = None
    start: int = -1
    frame_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    source: str = "tensor"

    @property
    def empty(self) -> bool:
        """True when the map is all zero: no region pushes the output up (Grad-CAM's ReLU removed everything)."""
        return not bool(np.any(self.heatmap > 0))

    def overlay(self, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
        """Frames with the heatmap blended in: ``uint8`` ``[T, H, W, 3]`` (see :func:`overlay`)."""
        return overlay(self.frames, self.heatmap, alpha=alpha, colormap=colormap)

    def save(self, path: str | os.PathLike, *, fps: float = 10.0, alpha: float = 0.45, colormap: str = "jet",
             scale: int = 2, floor: float = OVERLAY_FLOOR) -> Path:
        """Write the overlay as a GIF or MP4 (see :func:`save_overlay`)."""
        return save_overlay(path, self.frames, self.heatmap, fps=fps, alpha=alpha, colormap=colormap, scale=scale,
                            floor=floor)

    def title(self, model: str | None = None) -> str:
        """The montage's title: model, video, stage, clip and output.

        Example:
            >>> ex.title("phantom-tiny")  # doctest: +SKIP
            'Grad-CAM of phantom-tiny on a4c.avi, stage norm\nclip from frame 49 (16 frames, stride 4); output 43.77'
        """
        video = os.path.basename(self.source) if self.source not in ("array", "tensor") else f"an {self.source}"
        head = f"Grad-CAM of {model} on {video}" if model else f"Grad-CAM on {video}"
        head += f", stage {self.stage}" + (f", output {self.target}" if self.target is not None else "")
        idx = np.asarray(self.frame_indices)
        steps = np.diff(idx[idx >= 0])
        clip = f"{len(self.heatmap)} frames" + (f", stride {int(steps[0])}" if len(steps) else "")
        where = f"clip from frame {self.start} ({clip})" if self.start >= 0 else f"clip of {clip}"
        return f"{head}\n{where}; model output {self.output:.2f}"

    def save_montage(self, path: str | os.PathLike, *, n: int = 6, alpha: float = 0.45, colormap: str = "jet",
                     scale: int = 2, floor: float = OVERLAY_FLOOR, model: str | None = None,
                     fps: float | None = None) -> Path:
        """Write a PNG montage of ``n`` frames (see :func:`save_montage`), titled with ``model``, the video, the
        stage and the clip, its frames labelled with their video frame numbers and times.

        Args:
            fps: frame rate for the times under each frame; default: read from the video file when there is one.
        """
        if fps is None and self.source not in ("array", "tensor"):
            try:
                from coreecho.video.io import probe_video  # noqa: PLC0415

                fps = probe_video(self.source).fps
            except Exception:  # noqa: BLE001 - times are a label; a file that moved only loses them
                fps = None
        return save_montage(path, self.frames, self.heatmap, n=n, alpha=alpha, colormap=colormap, scale=scale,
                            floor=floor, title=self.title(model), frame_indices=self.frame_indices, fps=fps)

def _denormalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    x = clip.detach().float().cpu() * s + m
    return x.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def explain_clip(model: torch.nn.Module, clip: torch.Tensor, *, stage: str | None = None,
                 target: int | None = None) -> Explanation | list[Explanation]:
    """Grad-CAM of preprocessed clips.

    Args:
        model: a :class:`~coreecho.CoReEcho`.
        clip: one clip ``(3, T, H, W)`` or a batch ``(B, 3, T, H, W)``, normalised as the model expects
            (e.g. by :func:`coreecho.video.normalize`).
        stage: see :data:`STAGES`.
        target: output index for multi-output heads.

    Returns:
        One :class:`Explanation` (frames recovered by undoing the config's normalisation), or a list for a
        batch.

    Example:
        >>> import torch
        >>> from coreecho import CoReEcho
        >>> from coreecho.models.config import ModelConfig
        >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
        ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8}))
        >>> explain_clip(model, torch.randn(3, 8, 112, 112)).heatmap.shape
        (8, 112, 112)
    """
    if not isinstance(clip, torch.Tensor) or clip.ndim not in (4, 5):
        raise InputError("clip", "expected a preprocessed tensor (3, T, H, W) or (B, 3, T, H, W)")
    single = clip.ndim == 4
    batch = clip[None] if single else clip
    cams, outputs = GradCAM(model, stage, target)(batch)
    pre = model.config.preprocessing
    out = []
    for i in range(len(batch)):
        t = batch.shape[2]
        out.append(Explanation(heatmap=cams[i].numpy().astype(np.float32),
                               frames=_denormalize(batch[i], pre.mean, pre.std), output=float(outputs[i]),
                               stage=stage or DEFAULT_STAGE, target=target, start=-1,
                               frame_indices=np.full(t, -1, np.int64), source="tensor"))
    return out[0] if single else out


def explain(model: torch.nn.Module, video: Any, *, stage: str | None = None, target: int | None = None,
            start: int | None = None, fps: float | None = None) -> Explanation:
    """Grad-CAM of one clip of a raw video, preprocessed exactly as the model's config says.

    Args:
        model: a :class:`~coreecho.CoReEcho`.
        video: a path (AVI/MP4/DICOM/``.npy``) or raw frames ``(T, H, W)`` / ``(T, H, W, C)``.
        stage: see :data:`STAGES` (default ``"norm"``).
        target: output index for multi-output heads.
        start: first frame of the clip; default: the middle clip (the test policy with one clip).
        fps: frame rate of an in-memory array (informational).

    Returns:
        An :class:`Explanation` whose frames are the clip's ``config.preprocessing.frames`` frames.

    Example:
        >>> ex = explain(model, "a4c.avi", stage="blocks3")  # doctest: +SKIP
        >>> ex.save("cam.gif"); ex.save_montage("cam.png")  # doctest: +SKIP
    """
    if start is not None and (not isinstance(start, (int, np.integer)) or isinstance(start, bool)):
        raise InputError(f"start={start!r}", "must be an integer frame index")
    name = str(video) if isinstance(video, (str, os.PathLike)) else "array"
    batch = model.pipeline()(video, [int(start)] if start is not None else 1, fps=fps, name=name)
    cams, outputs = GradCAM(model, stage, target)(batch.x)
    return Explanation(heatmap=cams[0].numpy().astype(np.float32), frames=np.ascontiguousarray(batch.pixels[0]),
                       output=float(outputs[0]), stage=stage or DEFAULT_STAGE, target=target,
                       start=int(batch.starts[0]), frame_indices=batch.frame_indices[0].astype(np.int64),
                       source=batch.source)


# ------------------------------------------------------------------------------------------------ rendering
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
            from coreecho.errors import MissingDependencyError  # noqa: PLC0415

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
            from PIL import Image  # noqa: PLC0415
        except ImportError:
            from coreecho.video.io import write_video  # noqa: PLC0415

            return write_video(p, img, fps=fps, codec="gif")
        pics = [Image.fromarray(f) for f in img]
        pics[0].save(p, save_all=True, append_images=pics[1:], duration=max(1, int(round(1000.0 / fps))), loop=0)
        return p
    from coreecho.video.io import write_video  # noqa: PLC0415

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


def _write_png(path: Path, image: np.ndarray) -> None:
    """Minimal RGB PNG writer (no dependency): one IDAT, filter 0 on every row."""
    h, w = image.shape[:2]
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    path.write_bytes(png)


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
        scale: upscaling of the dependency-free grid.
        title: figure title (:meth:`Explanation.save_montage` writes model, video, stage and clip).
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
        import warnings  # noqa: PLC0415

        warnings.warn("matplotlib is not installed: the montage has no title, frame labels or colour-bar values "
                      "(pip install matplotlib, or the 'viz' extra)", UserWarning, stacklevel=2)
        image = montage(frames, cam, n=n, alpha=alpha, colormap=colormap, scale=scale, floor=floor)
        _write_png(p, np.ascontiguousarray(image, dtype=np.uint8))
        return p
    _montage_figure(p, np.asarray(frames), cam, n=n, alpha=alpha, colormap=colormap, floor=floor, title=title,
                    frame_indices=frame_indices, fps=fps)
    return p
