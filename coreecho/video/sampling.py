"""Clip sampling: which frames make the clips, and cutting clips out of a video.

A clip is ``frames`` frames taken every ``stride`` frames: ``start + stride * arange(frames)`` (36 frames at
stride 4 for CoReEcho). As in the official pipeline, a video shorter than ``frames * stride`` frames is
zero-padded at the end (in pixel space, before normalisation) up to ``frames * stride`` frames, so clip
frames past the end of the video are black.

Policies:

Sampler objects built on these live in :mod:`coreecho.video.samplers`; models read clips through
:class:`coreecho.video.pipeline.ClipPipeline`.

* training: :func:`train_start` draws ``start`` uniformly from ``range(f - (frames - 1) * stride)`` where
  ``f`` is the padded length;
* test: :func:`test_starts` with ``clips=k`` (k evenly spaced starts over the valid range),
  ``"all"`` (starts one clip length, ``frames * stride``, apart) or ``"every"`` (every valid start);
  or explicit starts, e.g. the official file of three starts per video.

:func:`read_clips` probes a file, computes the frames the clips need and decodes only those.

Example:
    >>> test_starts(200, clips=3)
    [0, 30, 59]
    >>> clip_indices([0], frames=3, stride=4).tolist()
    [[0, 4, 8]]
"""

from __future__ import annotations

import os
import random
from typing import Any, Callable, Sequence

import numpy as np

from coreecho.errors import InputError
from coreecho.video.io import Video, as_frames

__all__ = [
    "padded_length",
    "max_start",
    "train_start",
    "test_starts",
    "clip_indices",
    "extract_clips",
    "read_clips",
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
            middle start, the same as the middle clip of ``k = 3``); ``"all"`` -> starts ``0, frames*stride, 2*frames*stride, ...`` (non-overlapping
            clips covering the video); ``"every"`` -> every valid start ``0 .. max_start``.

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


def _validate_starts(starts: Any, n_frames: int, frames: int, stride: int, source: str) -> list[int]:
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
            raise InputError(
                source,
                f"clip start {s} is beyond the last valid start {last} for a video of {n_frames} frames "
                f"(clips of {frames} frames at stride {stride}, padded length {padded_length(n_frames, frames, stride)})",
            )
    return [int(s) for s in arr]


def extract_clips(
    video_frames: np.ndarray | Video,
    starts: Sequence[int] | np.ndarray,
    frames: int = 36,
    stride: int = 4,
    n_frames: int | None = None,
) -> np.ndarray:
    """Cut clips out of decoded frames, zero-padding in pixel space past the end of the video.

    Args:
        video_frames: ``uint8`` ``[T, H, W, 3]`` frames ``0..T-1`` of the video, or a :class:`Video`
            (possibly partial: its ``frame_indices`` must hold every non-padding frame the clips need).
        starts: clip starts, each in ``0 .. max_start(n_frames)``.
        frames: clip length.
        stride: step between clip frames.
        n_frames: the video's length; defaults to ``len(video_frames)`` (or ``Video.n_frames``). Clip
            frames at or past it are zeros.

    Returns:
        ``uint8`` ``[K, frames, H, W, 3]``.

    Raises:
        InputError: fewer than 2 frames, a start out of range, a needed frame not decoded, bad shapes.

    Example:
        >>> import numpy as np
        >>> v = np.ones((10, 2, 2, 3), np.uint8)
        >>> c = extract_clips(v, [0], frames=4, stride=4)
        >>> c.shape, c[0, :, 0, 0, 0].tolist()
        ((1, 4, 2, 2, 3), [1, 1, 1, 0])
    """
    _check_clip_args(frames, stride)
    if isinstance(video_frames, Video):
        arr, source = video_frames.frames, video_frames.source
        held = video_frames.frame_indices
        n = video_frames.n_frames if n_frames is None else n_frames
    else:
        arr, source = video_frames, "frames"
        if not isinstance(arr, np.ndarray) or arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            shape = getattr(arr, "shape", None)
            raise InputError(source, f"expected uint8 frames (T, H, W, 3), got {type(arr).__name__} "
                                     f"{getattr(arr, 'dtype', '')} {shape}; convert with coreecho.video.as_frames")
        held = None
        n = len(arr) if n_frames is None else n_frames
    n = _check_length(n, source)
    st = _validate_starts(starts, n, frames, stride, source)
    idx = clip_indices(st, frames, stride)
    real = idx < n
    out = np.zeros((len(st), frames) + arr.shape[1:], dtype=np.uint8)
    if held is None:
        if arr.shape[0] < min(n, int(idx[real].max()) + 1 if real.any() else 0):
            raise InputError(source, f"holds {arr.shape[0]} frames but the clips need frame {int(idx[real].max())}; "
                                     "pass a Video with frame_indices for partially decoded frames")
        out[real] = arr[idx[real]]
        return out
    pos = np.full(int(max(n, held.max() + 1 if held.size else 0)), -1, dtype=np.int64)
    pos[held] = np.arange(len(held))
    rows = pos[idx[real]]
    if (rows < 0).any():
        missing = sorted(set(idx[real][rows < 0].tolist()))
        raise InputError(source, f"frames {missing[:8]} needed by the clips were not decoded")
    out[real] = arr[rows]
    return out


def read_clips(
    source: str | os.PathLike | np.ndarray | Video | Any,
    clips: int | str | Sequence[int] = 3,
    *,
    frames: int = 36,
    stride: int = 4,
    rng: np.random.Generator | int | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    target_fps: float | None = None,
    backend: str = "auto",
    limits: Any = None,
) -> tuple[np.ndarray, list[int]]:
    """uint8 clips of a video, decoding only the frames they need (no normalisation).

    The same steps as :class:`coreecho.video.pipeline.ClipPipeline` (which feeds models), for callers that want
    raw clips: the file is opened (probed once), the starts are chosen, only the unique frames the clips need are
    decoded and transformed, and the clips are assembled with zero padding past the end.

    Args:
        source: a path (video, DICOM, ``.npy``), an array/tensor of frames, or a :class:`Video`.
        clips: ``k`` (k evenly spaced test starts), ``"all"``, ``"every"`` (see :func:`test_starts`),
            ``"train"`` (one random start drawn with ``rng``), or explicit starts.
        frames: clip length.
        stride: step between clip frames.
        rng: randomness for ``"train"`` (a numpy Generator or a seed).
        transform: applied once to the decoded frames ``[N, H, W, 3] -> [N, h, w, 3]`` before the clips are
            assembled, e.g. ``functools.partial(prepare_frames, size=112)``.
        target_fps: resample in time (nearest frame) to this rate first; needs a known fps.
        backend: decoder for video files (see :func:`coreecho.video.open_video`).
        limits: reader size limits (:class:`coreecho.video.Limits`).

    Returns:
        ``(clips, starts)``: ``uint8`` ``[K, frames, h, w, 3]`` and the K starts used (in the resampled time
        base when ``target_fps`` is set).

    Raises:
        InputError: fewer than 2 frames, bad starts or policy, unknown fps with ``target_fps``.
        VideoReadError: the file cannot be read.

    Example:
        >>> clips, starts = read_clips("a4c.avi", 3)  # doctest: +SKIP
        >>> clips.shape, starts  # doctest: +SKIP
        ((3, 36, 112, 112, 3), [0, 16, 32])
    """
    from coreecho.video import open_video  # noqa: PLC0415
    from coreecho.video.pipeline import gather_clips, timeline  # noqa: PLC0415
    from coreecho.video.samplers import as_sampler  # noqa: PLC0415

    _check_clip_args(frames, stride)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    sampler = as_sampler(clips)

    def checked(decoded: np.ndarray) -> np.ndarray:
        out = as_frames(transform(decoded), "transform output")  # type: ignore[misc]
        if len(out) != len(decoded):
            raise InputError("transform", f"returned {len(out)} frames for {len(decoded)} inputs; it must keep "
                                          "the number of frames")
        return out

    with open_video(source, backend=backend, limits=limits) as reader:
        time_map = timeline(reader.info, target_fps=target_fps)
        plan = sampler.plan(len(time_map), frames=frames, stride=stride, rng=gen)
        out = gather_clips(reader, plan, time_map, checked if transform is not None else None)
    return out, plan.starts
