"""The one way from a raw video to a model tensor: :class:`ClipPipeline`, built from a ``PreprocessConfig``.

Every consumer (``predict_ef``/``embed``, the EchoNet-Dynamic, CSV, CAMUS and HMC-QU datasets, evaluation,
fine-tuning, Grad-CAM, shift detection) goes through it, so the same video and the same starts give the same
tensor everywhere::

    file or array → reader (probed once, sizes checked against Limits)
                  → sampler picks the clips (ClipPlan)          coreecho.video.sampling
                  → reader.read(only the frames the clips need)
                  → frame transform: sector crop (fan found in frames spread over the whole video)
                                     → square pad → antialiased resize (uint8)
                  → clips assembled (zero padding past the end, or a linear blend for whole sequences)
                  → augmentation (training only: zero-pad and random crop, one offset per clip)
                  → normalise ((x - mean) / std, float32)  →  tensor [K, 3, T, S, S]

With ``output="pixels"`` the last two steps are left to where the model runs: the uint8 clips and the crop offsets
drawn for them are handed over (a quarter of the bytes), and :func:`coreecho.video.model_input.to_model_input`
makes the same tensor from them, bit for bit (the inference engine and the training loop do this).

Get the pipeline that matches a model's weights with ``model.pipeline()`` (test time) or
``model.pipeline(train=True)``, the way timm's ``create_transform(**resolve_data_config(model))`` hands users the
transform of a checkpoint.

Example:
    >>> import numpy as np
    >>> from coreecho.models.config import PreprocessConfig
    >>> pipe = ClipPipeline(PreprocessConfig(frames=8, stride=2, size=32))
    >>> batch = pipe(np.zeros((40, 64, 48), np.uint8), clips=2)
    >>> batch.x.shape, batch.starts
    (torch.Size([2, 3, 8, 32, 32]), [0, 25])
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from coreecho._warnings import warn_user
from coreecho.errors import InputError
from coreecho.video import transforms  # its functions are looked up at call time (tests spy on them)
from coreecho.video.augment import draw_offsets, pad_and_crop
from coreecho.video.base import NO_SIGNAL_NOTE, VideoInfo, signal_problem
from coreecho.video.budget import FPS_RANGE, check_budget, plausible_fps, stage_bytes, timeline_length
from coreecho.video.limits import Limits
from coreecho.video.readers import open_video
from coreecho.video.sampling import ClipPlan, Sampler, as_sampler

if TYPE_CHECKING:  # torch is imported when a tensor is made
    import torch

__all__ = ["ClipPipeline", "ClipBatch", "PreprocessSpec", "FPS_TOLERANCE", "gather_clips", "random_pad_crop",
           "sector_frames", "timeline"]

#: Relative fps difference from the training fps above which a video gets a warning (or is resampled).
FPS_TOLERANCE = 0.3


class PreprocessSpec(Protocol):
    """The preprocessing fields a :class:`ClipPipeline` reads. A model's
    :class:`~coreecho.models.config.PreprocessConfig` is one; the video layer does not import the model layer."""

    frames: int
    stride: int
    size: int
    fps: float
    mean: Sequence[float]
    std: Sequence[float]
    crop_sector: bool
    sampling: str
    temporal: str
    pad: int
    pad_style: str


@dataclass
class ClipBatch:
    """The clips of one video, ready for the model.

    Attributes:
        x: float32 ``[K, 3, T, S, S]`` normalised clips; ``None`` from ``pipeline(..., output="pixels")``.
        pixels: uint8 ``[K, T, S, S, 3]``: the same clips before normalisation (after augmentation; with
            ``output="pixels"`` before it: ``offsets`` then says how each clip is to be cropped).
        starts: first frame of each clip (timeline frames: resampled in time when the fps was resampled).
        source: the path, or the name of in-memory input.
        n_frames: frames in the video.
        fps: the video's frame rate, or ``None`` when unknown.
        frame_indices: int64 ``[K, T]`` source frame shown by each clip frame (-1 for zero padding; the earlier
            frame of a blend).
        warnings: notes for the user (fps far from training, video shorter than one clip; at test time
            ``"no usable signal: <reason>"`` for a blank video, see :func:`coreecho.video.base.signal_problem`).
    """

    x: "torch.Tensor | None"
    pixels: np.ndarray
    starts: list[int]
    source: str
    n_frames: int
    fps: float | None
    frame_indices: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    warnings: list[str] = field(default_factory=list)
    #: ``output="pixels"`` in training: int64 ``[K, 2]`` crop offsets (:func:`coreecho.video.augment.draw_offsets`).
    offsets: np.ndarray | None = None


def timeline(info: VideoInfo, *, target_fps: float | None = None,
             window: tuple[int, int] | None = None) -> np.ndarray:
    """Source frame of each timeline frame: the window ``first .. end - 1`` (all frames by default), resampled
    in time (nearest frame) to ``target_fps`` when given.

    Example:
        >>> from coreecho.video.base import VideoInfo
        >>> timeline(VideoInfo("a", 10, 50.0, 8, 8, "video"), target_fps=25.0).tolist()
        [0, 2, 4, 6, 8]
    """
    n = info.n_frames
    first, end = (0, n) if window is None else (int(window[0]), int(window[1]))
    if not 0 <= first < end <= n:
        raise InputError(info.source, f"frame window {first}..{end - 1} is outside the video's {n} frames")
    base = np.arange(first, end, dtype=np.int64)
    if target_fps is None:
        return base
    if info.fps is None:
        raise InputError(info.source, f"its frame rate is unknown, so it cannot be resampled to {target_fps:g} fps; "
                                      "use the frames as they are")
    return base[transforms.resample_indices(len(base), info.fps, target_fps)]


def sector_frames(n_frames: int, count: int = 32) -> np.ndarray:
    """The frames the ultrasound fan is found in: ``count`` frames spread evenly over the whole video.

    A function of the video's length only, so every consumer crops a video the same way whatever clips it reads.

    Example:
        >>> sector_frames(100, 5).tolist()
        [0, 25, 50, 74, 99]
    """
    return np.unique(np.floor(np.linspace(0, n_frames - 1, min(n_frames, count)) + 0.5).astype(np.int64))


def gather_clips(reader: Any, plan: ClipPlan, time_map: np.ndarray, transform: Any = None,
                 context: np.ndarray | None = None) -> np.ndarray:
    """Decode only the frames a plan needs, transform them once, and assemble uint8 clips ``[K, T, h, w, 3]``.

    Args:
        reader: an open video reader (``.read(indices)`` → uint8 ``[N, H, W, 3]``).
        plan: the clips, on a timeline of ``plan.n`` frames.
        time_map: source frame of each timeline frame (``arange(n)`` unless resampled or windowed).
        transform: uint8 ``[N, H, W, 3]`` → uint8 ``[N, h, w, 3]`` applied to the decoded frames; called as
            ``transform(frames, context_frames)`` when ``context`` is given.
        context: source frames the transform needs to see as well (decoded in the same pass), e.g.
            :func:`sector_frames` for the fan crop.

    Returns:
        uint8 clips; clip frames past the end of the video are zeros.
    """
    needed = plan.needed()
    src, src_row = np.unique(time_map[needed], return_inverse=True)
    if context is None:
        decoded = reader.read(src)
        if transform is not None:
            decoded = transform(decoded)
    else:
        both = np.union1d(src, context)
        frames = reader.read(both)
        decoded = frames[np.searchsorted(both, src)]
        decoded = transform(decoded, frames[np.searchsorted(both, context)])
    rows = np.full(plan.n, -1, dtype=np.int64)
    rows[needed] = src_row.reshape(-1)
    k, t = plan.lo.shape
    out = np.zeros((k, t) + decoded.shape[1:], dtype=np.uint8)
    real = plan.real
    if plan.weight is None:
        out[real] = decoded[rows[plan.lo[real]]]
        return out
    w = plan.weight[real].reshape((-1, 1, 1, 1))
    lo = decoded[rows[plan.lo[real]]].astype(np.float32)
    hi = decoded[rows[plan.hi[real]]].astype(np.float32)
    out[real] = np.clip(np.rint(lo * (1.0 - w) + hi * w), 0, 255).astype(np.uint8)
    return out


def _looked_at(pixels: np.ndarray, real: np.ndarray) -> np.ndarray:
    """The frames :func:`~coreecho.video.base.signal_problem` looks at among ``pixels[real]`` (up to 16 spread
    over them), without copying all of ``pixels[real]`` first: the same frames, so the same verdict."""
    rows = np.flatnonzero(real.reshape(-1))
    if len(rows) == 0:
        return pixels[real]
    pick = np.unique(np.linspace(0, len(rows) - 1, min(len(rows), 16)).astype(np.int64))
    return pixels.reshape((-1,) + pixels.shape[2:])[rows[pick]]


def random_pad_crop(clips: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Deprecated: :func:`coreecho.video.augment.pad_and_crop` with ``style="echonet-dynamic"`` (``pad`` zeros on
    each side, crop offsets ``0 .. 2*pad-1``), which this function always did. Training uses the model config's
    ``pad`` and ``pad_style``.
    """
    import warnings  # noqa: PLC0415

    warnings.warn("coreecho.video.pipeline.random_pad_crop is deprecated; use coreecho.video.augment.pad_and_crop "
                  "(style='echonet-dynamic' for this function's behaviour)", DeprecationWarning, stacklevel=2)
    return pad_and_crop(clips, pad, rng, style="echonet-dynamic")


class ClipPipeline:
    """Raw video → normalised clips, exactly as the model was trained (see the module docstring).

    Args:
        config: the model's :class:`~coreecho.models.config.PreprocessConfig` (any :class:`PreprocessSpec`).
        train: training mode: random clips by default and the pad-and-crop augmentation.
        clips: default clip policy (test time): a model's ``test_clips``.
        backend: video decoder for files (see :func:`coreecho.video.open_video`).
        limits: size limits of the readers and of one clip batch (:class:`coreecho.video.Limits`).

    Example:
        >>> import numpy as np
        >>> from coreecho.models.config import PreprocessConfig
        >>> pipe = ClipPipeline(PreprocessConfig(frames=4, stride=2, size=16), train=True)
        >>> pipe(np.zeros((20, 16, 16), np.uint8), rng=np.random.default_rng(0)).x.shape
        torch.Size([1, 3, 4, 16, 16])
    """

    def __init__(self, config: PreprocessSpec, *, train: bool = False, clips: Any = 3, backend: str = "auto",
                 limits: Any = None):
        self.config = config
        self.train = bool(train)
        self.default_clips = clips
        self.backend = backend
        self.limits = limits if limits is not None else Limits()  # the budget: COREECHO_MAX_BYTES, else 2 GiB
        #: Bytes of the memory budget held elsewhere while a video goes through (the engine reserves its
        #: forward pass here: :func:`coreecho.engine.policy.forward_bytes`); see :mod:`coreecho.video.budget`.
        self.reserved_bytes = 0
        self._boxes: dict[tuple, tuple[int, int, int, int]] = {}  # fan box per file (see _clip_transform)

    def __repr__(self) -> str:
        return f"ClipPipeline({self.config!r}, train={self.train}, clips={self.default_clips!r})"

    # ------------------------------------------------------------------ pieces
    def sampler(self, clips: Any = None) -> Sampler:
        """The sampler for a clip argument (see :func:`coreecho.video.sampling.as_sampler`)."""
        pre = self.config
        return as_sampler(clips, sampling=pre.sampling, temporal=pre.temporal, train=self.train,
                          default=self.default_clips)

    def transform(self, frames: np.ndarray, sector_from: np.ndarray | None = None,
                  bbox: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """The frame transform: sector crop → square pad → antialiased resize to ``size`` (uint8 in and out).

        The fan is ``bbox`` when given, else found in ``sector_from`` (frames spread over the whole video,
        :func:`sector_frames`) when given, else in ``frames``. ``size`` x ``size`` frames pass through untouched.
        """
        return transforms.prepare_frames(frames, size=self.config.size, crop_sector=self.config.crop_sector,
                              sector_from=sector_from, bbox=bbox)

    def _sector_key(self, info: VideoInfo) -> tuple | None:
        """Cache key of a file's fan box (path, size, modification time); ``None`` for in-memory input."""
        if info.kind not in ("video", "dicom", "npy"):
            return None
        try:
            st = os.stat(info.source)
        except OSError:
            return None
        return (os.path.realpath(info.source), st.st_size, st.st_mtime_ns, info.n_frames, info.height, info.width)

    def _clip_transform(self, info: VideoInfo) -> tuple[Any, np.ndarray | None]:
        """``(transform, context frames)`` for :func:`gather_clips`.

        The fan box of a file is found once (in :func:`sector_frames`, decoded with the clips' frames) and
        remembered by path, size and modification time: training reads the same videos every epoch.
        """
        if not self.needs_sector(info):
            return self.transform, None
        key = self._sector_key(info)
        box = self._boxes.get(key) if key is not None else None
        if box is not None:
            return (lambda frames: self.transform(frames, bbox=box)), None

        def find_then_apply(frames: np.ndarray, context: np.ndarray) -> np.ndarray:
            found = transforms.find_sector_bbox(context)
            if key is not None:
                if len(self._boxes) >= 65536:
                    self._boxes.clear()
                self._boxes[key] = found
            return self.transform(frames, bbox=found)

        return find_then_apply, sector_frames(info.n_frames)

    def needs_sector(self, info: VideoInfo) -> bool:
        """Whether frames of this video get the fan crop (not already ``size`` x ``size``, and ``crop_sector``)."""
        size = self.config.size
        return self.config.crop_sector and (info.height, info.width) != (size, size)

    def normalize(self, pixels: np.ndarray) -> "torch.Tensor":
        """uint8 ``[K, T, S, S, 3]`` → float32 ``[K, 3, T, S, S]``, ``(x - mean) / std`` (one numeric path)."""
        return transforms.normalize(pixels, self.config.mean, self.config.std)

    def open(self, video: Any, *, fps: float | None = None, name: str | None = None) -> Any:
        """An open reader for a path, an array/tensor of frames, or a ``Video`` (readers pass through)."""
        if hasattr(video, "read") and hasattr(video, "info"):
            return video
        return open_video(video, backend=self.backend, limits=self.limits, fps=fps, name=name)

    # ------------------------------------------------------------------ the whole path
    def __call__(self, video: Any, clips: Any = None, *, rng: np.random.Generator | None = None,
                 fps: float | None = None, name: str | None = None, resample_fps: bool = False,
                 window: tuple[int, int] | None = None, warn: bool = False, output: str = "tensor") -> ClipBatch:
        """The clips of one video.

        Args:
            video: a path (video, DICOM, ``.npy``), an array or tensor of frames, a ``Video`` or an open reader.
            clips: clip policy (see :func:`~coreecho.video.sampling.as_sampler`); default: random in training,
                the pipeline's ``clips`` otherwise.
            rng: randomness of random clips and augmentation (needed in training).
            fps: frame rate of in-memory input (files carry their own).
            name: how in-memory input is named in messages.
            resample_fps: resample in time (nearest frame) to the training fps when the video's fps is more than
                :data:`FPS_TOLERANCE` away from it; otherwise such a video gets a warning.
            window: read only source frames ``window[0] .. window[1] - 1`` (e.g. one annotated cardiac cycle).
            warn: also issue the notes through :mod:`warnings` (attributed to the first caller outside coreecho).
            output: ``"tensor"``: ``x`` is the normalised float32 model input. ``"pixels"``: ``x`` is ``None`` and
                ``pixels`` (uint8) and, in training, ``offsets`` are handed over instead (a quarter of the bytes);
                :func:`coreecho.video.model_input.to_model_input` makes the same ``x`` from them, bit for bit, where
                the model runs.

        Returns:
            A :class:`ClipBatch`.

        Raises:
            InputError / VideoReadError: unreadable video, too few frames, bad starts, sizes over the limits.
        """
        pre = self.config
        if output not in ("tensor", "pixels"):
            raise InputError("output", f"must be 'tensor' or 'pixels', got {output!r}")
        sampler = self.sampler(clips)
        if self.train and rng is None:
            raise InputError("rng", "a training pipeline needs rng (random clips and augmentation)")
        reader = self.open(video, fps=fps, name=name)
        try:
            notes: list[str] = []
            info: VideoInfo = self._believed(reader.info, resample_fps, notes)
            time_map = self._time_map(info, resample_fps, window, notes)
            try:
                plan = sampler.plan(len(time_map), frames=pre.frames, stride=pre.stride, rng=rng)
            except InputError as err:  # "video: has 1 frame" -> the file or item that has it
                if err.source != "video" or err.problem is None:
                    raise
                raise type(err)(reader.source, err.problem) from None
            if pre.sampling == "clips":
                span = (pre.frames - 1) * pre.stride + 1
                if plan.n < span:
                    notes.append(f"{plan.n} frames is shorter than one clip ({span}); zero-padded as in training")
            transform, context = self._clip_transform(info)
            self._check_budget(info, plan, time_map, context, output)
            pixels = gather_clips(reader, plan, time_map, transform, context)
            problem = None if self.train else signal_problem(_looked_at(pixels, plan.real))
            if problem is not None:  # a blank/black/white video: flagged (predict_ef makes it an error row)
                notes.append(f"{NO_SIGNAL_NOTE}: {problem}")
        finally:
            if reader is not video:
                reader.close()
        if warn:
            for note in notes:
                warn_user(f"{info.source}: {note}")
        shown = np.where(plan.real, time_map[np.minimum(plan.lo, plan.n - 1)], -1)
        if output == "pixels":
            offsets = draw_offsets(len(pixels), pre.pad, rng, pre.pad_style) if self.train else None
            return ClipBatch(None, pixels, plan.starts, info.source, info.n_frames, info.fps, shown, notes, offsets)
        x, pixels = self.finish(pixels, rng)
        return ClipBatch(x, pixels, plan.starts, info.source, info.n_frames, info.fps, shown, notes)

    def finish(self, pixels: np.ndarray, rng: np.random.Generator | None = None) -> tuple["torch.Tensor", np.ndarray]:
        """The last two steps on assembled uint8 clips: augmentation (training only), then normalisation.

        Returns ``(x, pixels)``: the float32 tensor and the (augmented) uint8 clips.
        """
        if self.train:
            if rng is None:
                raise InputError("rng", "a training pipeline needs rng (random clips and augmentation)")
            pixels = pad_and_crop(pixels, self.config.pad, rng, self.config.pad_style)
        return self.normalize(pixels), pixels

    # ------------------------------------------------------------------ helpers
    def _believed(self, info: VideoInfo, resample_fps: bool, notes: list[str]) -> VideoInfo:
        """``info``, without a stated frame rate outside :data:`~coreecho.video.budget.FPS_RANGE` (noted; an error
        when the video is to be resampled in time: its time base is unknown)."""
        if info.fps is None or plausible_fps(info.fps):
            return info
        lo, hi = FPS_RANGE
        if resample_fps:
            raise InputError(info.source, f"its stated frame rate ({info.fps!r} fps) is outside the plausible "
                                          f"{lo:g}-{hi:g} fps, so it cannot be resampled in time; fix the header or "
                                          "use the frames as they are (no resample_fps)")
        notes.append(f"its stated frame rate ({info.fps!r} fps) is outside the plausible {lo:g}-{hi:g} fps and was "
                     "ignored (the frames are used as they are)")
        return dataclasses.replace(info, fps=None)

    def _time_map(self, info: VideoInfo, resample_fps: bool, window: tuple[int, int] | None,
                  notes: list[str]) -> np.ndarray:
        pre = self.config
        far = info.fps is not None and abs(info.fps / pre.fps - 1) > FPS_TOLERANCE and pre.sampling == "clips"
        if far and not resample_fps:
            notes.append(f"{info.fps:g} fps is far from the {pre.fps:g} fps the model was trained at; clips then "
                         "cover a different time span (pass resample_fps=True to resample in time)")
        target = pre.fps if far and resample_fps else None
        span = info.n_frames if window is None else max(0, int(window[1]) - int(window[0]))
        length = timeline_length(span, info.fps if target is not None else None, target)
        check_budget(info.source, stage_bytes(timeline=length, reserved=self.reserved_bytes), self.limits.max_bytes,
                     {"timeline": f"{length} frames"})  # before the timeline is built
        return timeline(info, target_fps=target, window=window)

    def _check_budget(self, info: VideoInfo, plan: ClipPlan, time_map: np.ndarray, context: np.ndarray | None,
                      output: str) -> None:
        """The whole path of this video against the budget, before anything is decoded (:mod:`coreecho.video.budget`)."""
        from coreecho.video.resize import square_resize_bytes  # noqa: PLC0415

        pre = self.config
        k, t = plan.lo.shape
        n_src = int(np.unique(time_map[plan.needed()]).size)
        n_dec = min(info.n_frames, n_src + (0 if context is None else len(context)))
        resize = 0 if (info.height, info.width) == (pre.size, pre.size) else \
            square_resize_bytes(n_src, info.height, info.width, pre.size)
        stages = stage_bytes(timeline=len(time_map), decoded=(n_dec, info.height, info.width),
                             sector_search=context is not None, resize=resize, clips=(k, t, pre.size),
                             float_input=output == "tensor", reserved=self.reserved_bytes)
        if plan.weight is not None:  # blended clips: two float32 copies while they are mixed
            stages["clip batch"] += k * t * pre.size * pre.size * 3 * 12
        if self.train:  # the augmentation's padded copy
            stages["clip batch"] += k * t * (pre.size + pre.pad) ** 2 * 3
        check_budget(info.source, stages, self.limits.max_bytes, {
            "decoded frames": f"{n_dec} frames of {info.height}x{info.width}",
            "clip batch": f"{k} clips of {t} frames at {pre.size}x{pre.size}",
            "timeline": f"{len(time_map)} frames"})
