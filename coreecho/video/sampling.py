"""Clip sampling, in one module: which frames of a video make the model's clips.

A clip is ``frames`` frames taken every ``stride`` frames: ``start + stride * arange(frames)`` (36 frames at
stride 4 for CoReEcho). As in the official pipeline, a video shorter than ``frames * stride`` frames is
zero-padded at the end (in pixel space, before normalisation) up to ``frames * stride`` frames, so clip frames
past the end of the video are black.

Start policies (functions of the video length):

* training: :func:`train_start` draws ``start`` uniformly from ``range(f - (frames - 1) * stride)`` where ``f``
  is the padded length;
* test: :func:`test_starts` with ``clips=k`` (k evenly spaced starts over the valid range), ``"all"`` (starts one
  clip length, ``frames * stride``, apart) or ``"every"`` (every valid start); or explicit starts, e.g. the
  official file of three starts per video.

Samplers turn a video length into a :class:`ClipPlan` (for each clip ``k`` and clip frame ``t``, the video
frame(s) it shows), under one of two time-sampling policies (``PreprocessConfig.sampling``):

* ``"clips"``: :class:`EvenClips` (k evenly spaced starts, the test default), :class:`RandomClips` (uniform random
  starts: training views, the official validation), :class:`FixedStarts` (e.g. the official test starts),
  :class:`AllClips` (non-overlapping clips covering the video) and :class:`EveryStart` (every valid start);
* ``"sequence"``: :class:`WholeSequence` stretches the whole sequence (e.g. a CAMUS half cycle) to ``frames``
  frames, linearly blending neighbouring frames or taking the nearest one; one clip per video.

:func:`as_sampler` turns the user-facing clip arguments (``3``, ``"all"``, ``[0, 20, 40]``, ...) into a sampler.
Models read clips through :class:`coreecho.video.pipeline.ClipPipeline`, which uses these samplers.

Example:
    >>> test_starts(200, clips=3)
    [0, 30, 59]
    >>> clip_indices([0], frames=3, stride=4).tolist()
    [[0, 4, 8]]
    >>> plan = EvenClips(3).plan(200, frames=36, stride=4)
    >>> plan.starts, plan.lo.shape
    ([0, 30, 59], (3, 36))
    >>> WholeSequence().plan(3, frames=5, stride=4).lo[0].tolist()
    [0, 0, 1, 1, 2]
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from coreecho._deprecation import deprecated_aliases
from coreecho.errors import InputError
from coreecho.video.limits import MAX_CLIPS

__all__ = [
    "padded_length",
    "max_start",
    "train_start",
    "test_starts",
    "clip_indices",
    "validate_starts",
    "ClipPlan",
    "Sampler",
    "EvenClips",
    "RandomClips",
    "FixedStarts",
    "AllClips",
    "EveryStart",
    "WholeSequence",
    "as_sampler",
    "MAX_CLIPS",
]

def _check_clip_args(frames: int, stride: int) -> None:
    if not isinstance(frames, (int, np.integer)) or frames < 1:
        raise InputError(f"frames={frames!r}", "the clip length must be a positive integer")
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise InputError(f"stride={stride!r}", "the stride must be a positive integer")


def _check_length(n_frames: Any, source: str = "video") -> int:
    if not isinstance(n_frames, (int, np.integer)) or isinstance(n_frames, bool):
        raise InputError(f"n_frames={n_frames!r}", "must be an integer frame count")
    if n_frames < 2:
        raise InputError(
            source,
            f"has {n_frames} frame{'s' if n_frames != 1 else ''}; a clip needs a video of at least 2 frames "
            "(a single image shows no cardiac motion)",
        )
    return int(n_frames)


def padded_length(n_frames: int, frames: int = 36, stride: int = 4) -> int:
    """Length after the official zero padding: ``max(n_frames, frames * stride)``.

    Example:
        >>> padded_length(100), padded_length(200)
        (144, 200)
    """
    _check_clip_args(frames, stride)
    return max(int(n_frames), frames * stride)


def max_start(n_frames: int, frames: int = 36, stride: int = 4) -> int:
    """Largest valid clip start: the last frame of the clip is the last frame of the padded video.

    Example:
        >>> max_start(200), max_start(50)
        (59, 3)
    """
    return padded_length(n_frames, frames, stride) - (frames - 1) * stride - 1


def train_start(
    n_frames: int,
    frames: int = 36,
    stride: int = 4,
    rng: np.random.Generator | random.Random | int | None = None,
) -> int:
    """The official training draw: ``start`` uniform in ``range(f - (frames - 1) * stride)``, ``f`` padded.

    Args:
        n_frames: length of the video (>= 2).
        frames: clip length.
        stride: step between clip frames.
        rng: ``numpy.random.Generator``, ``random.Random``, an int seed, or ``None`` (fresh entropy).

    Returns:
        The start frame.

    Example:
        >>> 0 <= train_start(100, rng=0) <= 3
        True
    """
    _check_clip_args(frames, stride)
    n = _check_length(n_frames)
    hi = max_start(n, frames, stride) + 1
    if isinstance(rng, random.Random):
        return rng.randrange(hi)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return int(gen.integers(hi))


def test_starts(
    n_frames: int,
    frames: int = 36,
    stride: int = 4,
    clips: int | str = 3,
) -> list[int]:
    """Deterministic test-time clip starts.

    Args:
        n_frames: length of the video (>= 2).
        frames: clip length.
        stride: step between clip frames.
        clips: ``k`` -> k evenly spaced starts from 0 to :func:`max_start` (rounded half up; ``k = 1`` gives the
            middle start, the same as the middle clip of ``k = 3``); ``"all"`` -> starts ``0, frames*stride,
            2*frames*stride, ...`` (non-overlapping clips covering the video); ``"every"`` -> every valid start
            ``0 .. max_start``.

    Returns:
        The starts, ascending (repeats possible when ``k`` exceeds the number of valid starts).

    Example:
        >>> test_starts(300, clips="all")
        [0, 144]
    """
    _check_clip_args(frames, stride)
    n = _check_length(n_frames)
    last = max_start(n, frames, stride)
    if isinstance(clips, str):
        if clips == "all":
            return list(range(0, last + 1, frames * stride))
        if clips == "every":
            return list(range(last + 1))
        raise InputError(f"clips={clips!r}", "expected a positive integer, 'all' or 'every'")
    if not isinstance(clips, (int, np.integer)) or isinstance(clips, bool) or clips < 1:
        raise InputError(f"clips={clips!r}", "expected a positive integer, 'all' or 'every'")
    if clips == 1:
        return [int(np.floor(last / 2 + 0.5))]  # the middle start of any odd k (k = 3 included)
    return [int(v) for v in np.floor(np.linspace(0, last, int(clips)) + 0.5).astype(np.int64)]


test_starts.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into tests


def clip_indices(starts: Sequence[int] | np.ndarray, frames: int = 36, stride: int = 4) -> np.ndarray:
    """Frame numbers of each clip: ``starts[k] + stride * arange(frames)``.

    Indices at or past the video's end stand for zero padding.

    Returns:
        int64 array ``[K, frames]``.

    Example:
        >>> clip_indices([0, 1], frames=2, stride=3).tolist()
        [[0, 3], [1, 4]]
    """
    _check_clip_args(frames, stride)
    s = np.asarray(starts, dtype=np.int64).reshape(-1)
    return s[:, None] + stride * np.arange(frames, dtype=np.int64)[None, :]


def validate_starts(starts: Any, n_frames: int, frames: int = 36, stride: int = 4,
                    source: str = "starts") -> list[int]:
    """Explicit starts (an int or a non-empty 1-D sequence of integers) checked against a video of ``n_frames``
    frames (>= 2): each must lie in ``0 .. max_start``; ``source`` names the video in errors.

    Raises:
        InputError: bad clip arguments, fewer than 2 frames, starts that are not integers or out of range.

    Example:
        >>> validate_starts([0, 3], 100)
        [0, 3]
    """
    _check_clip_args(frames, stride)
    n_frames = _check_length(n_frames, source)
    arr = np.asarray(starts)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"starts={starts!r}", "expected a non-empty 1-D sequence of start frames")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"starts={starts!r}", "start frames must be integers")
    last = max_start(n_frames, frames, stride)
    for s in arr.tolist():
        if s < 0:
            raise InputError(source, f"clip start {s} is negative; starts must lie in 0..{last}")
        if s > last:
            padded = padded_length(n_frames, frames, stride)
            raise InputError(source, f"clip start {s} is beyond the last valid start {last} for a video of {n_frames} "
                                     f"frames (clips of {frames} frames at stride {stride}, padded length {padded})")
    return [int(s) for s in arr]


@dataclass
class ClipPlan:
    """Where each clip frame comes from, on a timeline of ``n`` frames.

    Attributes:
        n: timeline length (frames of the video, after any fps resampling).
        starts: first timeline frame of each clip (``[0]`` for a whole sequence).
        lo: int64 ``[K, T]`` timeline frame of each clip frame; ``>= n`` means zero padding.
        hi: int64 ``[K, T]`` second frame of a linear blend (equal to ``lo`` when not blending).
        weight: float32 ``[K, T]`` blend weight of ``hi`` (``None``: no blending).
    """

    n: int
    starts: list[int]
    lo: np.ndarray
    hi: np.ndarray
    weight: np.ndarray | None = None

    @property
    def real(self) -> np.ndarray:
        """Boolean ``[K, T]``: clip frames inside the video (the rest are zero padding)."""
        return self.lo < self.n

    def needed(self) -> np.ndarray:
        """Sorted unique timeline frames the plan reads."""
        real = self.real
        parts = [self.lo[real]] + ([self.hi[real]] if self.weight is not None else [])
        return np.unique(np.concatenate(parts)) if parts[0].size else np.zeros(0, np.int64)


def _check_count(k: int, what: str) -> None:
    if k > MAX_CLIPS:
        raise InputError(what, f"asks for {k} clips of one video, more than the limit of {MAX_CLIPS}; "
                               "use fewer clips (e.g. clips=3 or 'all')")


class Sampler:
    """Base class: :meth:`plan` maps a video length to a :class:`ClipPlan`."""

    #: ``"clips"`` or ``"sequence"``: the time-sampling policy the sampler belongs to.
    policy = "clips"

    def starts(self, n: int, frames: int, stride: int, rng: np.random.Generator | None) -> list[int]:
        raise NotImplementedError  # pragma: no cover

    def plan(self, n: int, *, frames: int, stride: int, rng: np.random.Generator | None = None) -> ClipPlan:
        """The clips of a video of ``n`` frames (at least 2)."""
        _check_clip_args(frames, stride)
        n = _check_length(n)
        st = self.starts(n, frames, stride, rng)
        _check_count(len(st), f"{type(self).__name__}")
        idx = clip_indices(st, frames, stride)
        return ClipPlan(n, [int(s) for s in st], idx, idx)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{what}={value!r}", "expected a positive integer")
    _check_count(int(value), f"{what}={value}")
    return int(value)


class EvenClips(Sampler):
    """``k`` evenly spaced starts from 0 to the last valid start (:func:`test_starts`)."""

    def __init__(self, k: int = 3):
        self.k = _positive_int(k, "clips")

    def starts(self, n, frames, stride, rng):
        return test_starts(n, frames, stride, self.k)


class RandomClips(Sampler):
    """``k`` starts drawn uniformly (with replacement) from the valid starts: training views, official validation."""

    def __init__(self, k: int = 1):
        self.k = _positive_int(k, "clips")

    def starts(self, n, frames, stride, rng):
        if rng is None:
            raise InputError("rng", "random clips need a numpy Generator (rng=np.random.default_rng(seed))")
        return [int(v) for v in rng.integers(0, max_start(n, frames, stride) + 1, size=self.k)]


class FixedStarts(Sampler):
    """Given starts (e.g. the official test starts), each checked against the video's valid range."""

    def __init__(self, starts: Sequence[int] | np.ndarray):
        arr = np.asarray(starts)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1 or arr.size == 0:
            raise InputError(f"starts={starts!r}", "expected a non-empty 1-D sequence of start frames")
        _check_count(arr.size, "starts")
        self.values = arr

    def starts(self, n, frames, stride, rng):
        return validate_starts(self.values, n, frames, stride, "starts")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FixedStarts) and np.array_equal(self.values, other.values)


class AllClips(Sampler):
    """Non-overlapping clips one clip span (``frames * stride``) apart, covering the video."""

    def starts(self, n, frames, stride, rng):
        return test_starts(n, frames, stride, "all")


class EveryStart(Sampler):
    """Every valid start (at most :data:`MAX_CLIPS`)."""

    def starts(self, n, frames, stride, rng):
        _check_count(max_start(n, frames, stride) + 1, "clips='every'")
        return test_starts(n, frames, stride, "every")


class WholeSequence(Sampler):
    """The whole sequence stretched to ``frames`` frames (first and last frames kept); one clip.

    Args:
        temporal: ``"linear"`` (blend the two neighbouring frames) or ``"nearest"``.
    """

    policy = "sequence"

    def __init__(self, temporal: str = "linear"):
        if temporal not in ("linear", "nearest"):
            raise InputError("temporal", f"expected 'linear' or 'nearest', got {temporal!r}")
        self.temporal = temporal

    def plan(self, n: int, *, frames: int, stride: int = 1, rng: np.random.Generator | None = None) -> ClipPlan:
        _check_clip_args(frames, max(1, stride))
        n = _check_length(n)
        pos = np.linspace(0.0, n - 1.0, frames) if frames > 1 else np.zeros(1)
        if self.temporal == "nearest":
            lo = np.clip(np.floor(pos + 0.5).astype(np.int64), 0, n - 1)[None]
            return ClipPlan(n, [0], lo, lo)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        weight = (pos - lo).astype(np.float32)
        return ClipPlan(n, [0], lo[None], hi[None], weight[None])


def as_sampler(clips: Any, *, sampling: str = "clips", temporal: str = "linear", train: bool = False,
               default: Any = 3) -> Sampler:
    """The sampler for a clip argument under a time-sampling policy.

    Args:
        clips: a :class:`Sampler`; ``None`` (``default`` at test time, one random clip in training); an int ``k``
            (k evenly spaced clips); ``"all"``; ``"every"``; ``"train"`` / ``"random"`` (one random clip);
            ``"random:k"`` (k random clips); or explicit starts (a sequence of ints).
        sampling: ``"clips"`` or ``"sequence"`` (the model's ``PreprocessConfig.sampling``). Sequence models
            read one clip per video, the whole sequence: counts and policies map to it, explicit starts are
            refused.
        temporal: interpolation of ``"sequence"``.
        train: training mode (``None`` means one random clip).
        default: the test-time policy used for ``None`` (a model's ``test_clips``).

    Example:
        >>> as_sampler(3), as_sampler("all"), as_sampler([0, 5])
        (EvenClips(k=3), AllClips(), FixedStarts(values=array([0, 5])))
        >>> as_sampler(3, sampling="sequence")
        WholeSequence(temporal='linear')
    """
    if isinstance(clips, Sampler):
        if clips.policy != sampling:
            raise InputError(repr(clips), f"samples {clips.policy!r} but the model reads {sampling!r}")
        return clips
    if sampling == "sequence":
        if clips is not None and not isinstance(clips, (str, int, np.integer)):
            raise InputError(f"starts={clips!r}", "this model reads each video as one whole sequence resampled "
                                                 "in time (sampling='sequence'); clip starts do not apply")
        if isinstance(clips, str) and clips not in ("all", "every", "train", "random") \
                and not clips.startswith("random:"):
            raise InputError(f"clips={clips!r}", "expected a positive integer, 'all', 'every' or 'random[:k]'")
        if isinstance(clips, (int, np.integer)):
            _positive_int(clips, "clips")
        return WholeSequence(temporal)
    if sampling != "clips":
        raise InputError(f"sampling={sampling!r}", "expected 'clips' or 'sequence'")
    if clips is None:
        return RandomClips(1) if train else as_sampler(default, sampling=sampling)
    if isinstance(clips, str):
        if clips == "all":
            return AllClips()
        if clips == "every":
            return EveryStart()
        if clips in ("train", "random"):
            return RandomClips(1)
        if clips.startswith("random:"):
            try:
                k = int(clips.split(":", 1)[1])
            except ValueError:
                raise InputError(f"clips={clips!r}", "expected 'random:K' with an integer K") from None
            return RandomClips(k)
        raise InputError(f"clips={clips!r}", "expected a positive integer, 'all', 'every', 'random[:k]' or starts")
    if isinstance(clips, (bool, float)):
        raise InputError(f"clips={clips!r}", "expected a positive integer, 'all', 'every' or explicit starts")
    if isinstance(clips, (int, np.integer)):
        return EvenClips(int(clips))
    return FixedStarts(clips)


# Moved to coreecho.video.clips (uint8 clips outside the model's pipeline).
__getattr__ = deprecated_aliases(__name__, {"extract_clips": "coreecho.video.clips",
                                            "read_clips": "coreecho.video.clips"})
