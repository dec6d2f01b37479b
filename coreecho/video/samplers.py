"""Clip samplers: which frames of a video make the model's clips.

A sampler turns a video length into a :class:`ClipPlan`: for each clip ``k`` and clip frame ``t``, the video
frame(s) it shows. Two time-sampling policies exist (``PreprocessConfig.sampling``):

* ``"clips"``: a clip is ``frames`` frames taken every ``stride`` frames from a start; videos shorter than
  ``frames * stride`` are zero-padded at the end (pixel space, the official CoReEcho recipe). Samplers:
  :class:`EvenClips` (k evenly spaced starts, the test default), :class:`RandomClips` (uniform random starts:
  training views, the official validation), :class:`FixedStarts` (e.g. the official test starts),
  :class:`AllClips` (non-overlapping clips covering the video) and :class:`EveryStart` (every valid start).
* ``"sequence"``: :class:`WholeSequence` stretches the whole sequence (e.g. a CAMUS half cycle) to ``frames``
  frames, linearly blending neighbouring frames or taking the nearest one; one clip per video.

:func:`as_sampler` turns the user-facing clip arguments (``3``, ``"all"``, ``[0, 20, 40]``, ...) into a sampler
for a given policy.

Example:
    >>> plan = EvenClips(3).plan(200, frames=36, stride=4)
    >>> plan.starts, plan.lo.shape
    ([0, 30, 59], (3, 36))
    >>> WholeSequence().plan(3, frames=5, stride=4).lo[0].tolist()
    [0, 0, 1, 1, 2]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from coreecho.errors import InputError
from coreecho.video.sampling import (_check_clip_args, _check_length, _validate_starts, clip_indices, max_start,
                                     test_starts)

__all__ = ["ClipPlan", "Sampler", "EvenClips", "RandomClips", "FixedStarts", "AllClips", "EveryStart",
           "WholeSequence", "as_sampler", "MAX_CLIPS"]

#: Most clips one video may be cut into (``clips="every"`` on a long video, ``--clips 100000000``).
MAX_CLIPS = 4096


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
    """``k`` evenly spaced starts from 0 to the last valid start (:func:`~coreecho.video.sampling.test_starts`)."""

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
        return _validate_starts(self.values, n, frames, stride, "starts")

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
