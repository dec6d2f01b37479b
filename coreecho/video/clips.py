"""Raw ``uint8`` clips outside the model's pipeline: for tools, benchmarks and tests that want pixels.

Model input comes from :class:`coreecho.video.pipeline.ClipPipeline` (``model.pipeline()``), which adds what these
helpers leave out: the fan box found in frames spread over the whole video (not only the clips' frames), the
fps policy of the model (warning or ``resample_fps``), the clip batch size limit, augmentation in training and
normalisation. These two functions are thin compositions of the same parts:

* :func:`extract_clips` cuts clips out of frames already decoded (zero padding past the end);
* :func:`read_clips` is the pipeline's first steps (open and probe once, :mod:`~coreecho.video.sampling` picks
  the starts, :func:`~coreecho.video.pipeline.gather_clips` decodes only the frames the clips need) with a
  transform of your choice and no normalisation.

Example:
    >>> import numpy as np
    >>> from coreecho.video.sampling import test_starts
    >>> frames = np.zeros((150, 112, 112, 3), np.uint8)
    >>> extract_clips(frames, test_starts(150)).shape
    (3, 36, 112, 112, 3)
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from coreecho.errors import InputError
from coreecho.video.arrays import as_frames
from coreecho.video.base import Video
from coreecho.video.pipeline import gather_clips, timeline
from coreecho.video.readers import open_video
from coreecho.video.sampling import as_sampler, clip_indices, validate_starts

__all__ = ["extract_clips", "read_clips"]


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
    st = validate_starts(starts, n, frames, stride, source)
    n = int(n)
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
    """uint8 clips of a video, decoding only the frames they need (no fan context, no normalisation).

    Not model input: use ``model.pipeline()(source, clips).x`` for that (see the module docstring for what this
    leaves out).

    Args:
        source: a path (video, DICOM, ``.npy``), an array/tensor of frames, or a :class:`Video`.
        clips: ``k`` (k evenly spaced test starts), ``"all"``, ``"every"`` (see
            :func:`~coreecho.video.sampling.test_starts`), ``"train"`` (one random start drawn with ``rng``), or
            explicit starts.
        frames: clip length.
        stride: step between clip frames.
        rng: randomness for ``"train"`` (a numpy Generator or a seed).
        transform: applied once to the decoded frames ``[N, H, W, 3] -> [N, h, w, 3]`` before the clips are
            assembled (it must keep the number of frames).
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
