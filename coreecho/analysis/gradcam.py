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

Grad-CAM runs its own forward and backward pass on one batch of clips (a forward hook on the stage, gradients
enabled), by design: every other forward pass over videos goes through :func:`coreecho.engine.stream`, whose
``no_grad`` inference loop has no place for hooks and gradients. The clips themselves come from the model's
:class:`~coreecho.video.pipeline.ClipPipeline`, like everywhere else. Drawing the maps (overlays, GIF/MP4,
PNG montages) is :mod:`coreecho.analysis.rendering`.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from coreecho._deprecation import deprecated_aliases
from coreecho.analysis import rendering
from coreecho.errors import InputError
from coreecho.video.io import probe_video
from coreecho.video.model_input import to_pixels

__all__ = ["STAGES", "DEFAULT_STAGE", "GradCAM", "Explanation", "explain", "explain_clip"]

#: Stages a map can be computed at.
STAGES = ("blocks1", "blocks2", "blocks3", "blocks4", "norm")
#: Default stage: the end of the last stage (the feature map that is pooled into the embedding).
DEFAULT_STAGE = "norm"


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

    Runs its own forward pass (with gradients and a hook on the stage), by design: the engine's inference loop
    does neither (see the module docstring).

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
        """Frames with the heatmap blended in: ``uint8`` ``[T, H, W, 3]`` (see
        :func:`~coreecho.analysis.rendering.overlay`)."""
        return rendering.overlay(self.frames, self.heatmap, alpha=alpha, colormap=colormap)

    def save(self, path: str | os.PathLike, *, fps: float = 10.0, alpha: float = 0.45, colormap: str = "jet",
             scale: int = 2, floor: float = rendering.OVERLAY_FLOOR) -> Path:
        """Write the overlay as a GIF or MP4 (see :func:`~coreecho.analysis.rendering.save_overlay`)."""
        return rendering.save_overlay(path, self.frames, self.heatmap, fps=fps, alpha=alpha, colormap=colormap,
                                      scale=scale, floor=floor)

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
                     scale: int = 2, floor: float = rendering.OVERLAY_FLOOR, model: str | None = None,
                     fps: float | None = None) -> Path:
        """Write a PNG montage of ``n`` frames (see :func:`~coreecho.analysis.rendering.save_montage`), titled with
        ``model``, the video, the stage and the clip, its frames labelled with their video frame numbers and times.

        Args:
            fps: frame rate for the times under each frame; default: read from the video file when there is one.
        """
        if fps is None and self.source not in ("array", "tensor"):
            try:
                fps = probe_video(self.source).fps
            except Exception:  # noqa: BLE001 - times are a label; a file that moved only loses them
                fps = None
        return rendering.save_montage(path, self.frames, self.heatmap, n=n, alpha=alpha, colormap=colormap,
                                      scale=scale, floor=floor, title=self.title(model),
                                      frame_indices=self.frame_indices, fps=fps)

def _denormalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 frames ``[T, H, W, 3]`` back from a normalised clip ``(3, T, H, W)`` with the model config's mean/std,
    through the pipeline's own inverse (:func:`coreecho.video.model_input.to_pixels`: exact for pipeline output)."""
    return to_pixels(clip, mean, std)


def explain_clip(model: torch.nn.Module, clip: torch.Tensor, *, stage: str | None = None,
                 target: int | None = None) -> Explanation | list[Explanation]:
    """Grad-CAM of preprocessed clips.

    Args:
        model: a :class:`~coreecho.CoReEcho`.
        clip: one clip ``(3, T, H, W)`` or a batch ``(B, 3, T, H, W)``, normalised as the model expects
            (``model.pipeline()(video).x``).
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


# Rendering moved to coreecho.analysis.rendering; the old names resolve from there with a DeprecationWarning.
__getattr__ = deprecated_aliases(__name__, dict.fromkeys(rendering.__all__, "coreecho.analysis.rendering"))
