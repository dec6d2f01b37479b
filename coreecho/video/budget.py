"""One memory budget for the whole path of one video, checked before anything is allocated.

:class:`~coreecho.video.pipeline.ClipPipeline` adds up what each stage will hold for one video, from the probed
:class:`~coreecho.video.base.VideoInfo` and the preprocessing config, and compares the sum with
``Limits.max_bytes`` (:class:`coreecho.video.limits.Limits`; default 2 GiB, or the ``COREECHO_MAX_BYTES``
environment variable). The stages (:func:`stage_bytes`):

* ``timeline``: the source frame of each timeline frame (8 bytes each, x3 while it is computed); checked first,
  before the timeline is built, so that a video whose stated frame rate is tiny never becomes 10^9 frames;
* ``decoded frames``: the frames the clips need plus those the fan is found in, uint8 RGB at the file's size
  (twice when the fan is searched: the clip frames are gathered apart);
* ``resize``: the frame transform's float32 temporaries and its output (:func:`coreecho.video.resize.square_resize_bytes`;
  the full-resolution square is never built);
* ``clip batch``: the clips, uint8 ``[K, T, S, S, 3]``, plus the float32 model input when the pipeline makes it;
* ``forward pass``: reserved by the engine for the activations of one forward pass on a CPU
  (:func:`coreecho.engine.policy.forward_bytes`; GPU activations live in GPU memory and are not counted).

The sum is an upper bound of the peak (stages are partly freed before the next one). A video over the budget is a
:class:`~coreecho.errors.MemoryBudgetError` naming the file, the largest stage and the numbers: that video fails,
a batch goes on.

Frame rates outside :data:`FPS_RANGE` (1–1000 fps) are not believed: such a stated rate is ignored with a note (the
video is used frame by frame, as if its rate were unknown; resampling it in time is then an error).

Example:
    >>> plausible_fps(50.0), plausible_fps(1 / 50000), plausible_fps(float("nan"))
    (True, False, False)
"""

from __future__ import annotations

import math
import os
from typing import Any

from coreecho.errors import InputError, MemoryBudgetError

__all__ = ["FPS_RANGE", "ENV_MAX_BYTES", "DEFAULT_MAX_BYTES", "plausible_fps", "env_max_bytes", "timeline_length",
           "stage_bytes", "check_budget", "format_bytes"]

#: Frame rates a video may state and be believed (frames per second, inclusive). Echo systems record 15–500 fps;
#: outside this range the stated rate is a broken header, and it is ignored with a note.
FPS_RANGE: tuple[float, float] = (1.0, 1000.0)
#: The environment variable that sets the default budget (bytes; a ``K``, ``M``, ``G`` or ``T`` suffix is binary).
ENV_MAX_BYTES = "COREECHO_MAX_BYTES"
#: The built-in budget of one video's whole path, in bytes.
DEFAULT_MAX_BYTES = 2 * 1024**3

_SUFFIX = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def plausible_fps(fps: Any) -> bool:
    """Whether ``fps`` is a finite frame rate inside :data:`FPS_RANGE`."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and FPS_RANGE[0] <= value <= FPS_RANGE[1]


def env_max_bytes() -> int:
    """The budget ``COREECHO_MAX_BYTES`` sets, else :data:`DEFAULT_MAX_BYTES`.

    Raises:
        InputError: the variable is set to something other than a positive number of bytes.

    Example:
        >>> import os; os.environ[ENV_MAX_BYTES] = "512M"; env_max_bytes() == 512 * 2**20
        True
        >>> del os.environ[ENV_MAX_BYTES]
    """
    text = os.environ.get(ENV_MAX_BYTES, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    unit = text[-1].upper() if text[-1].upper() in _SUFFIX and not text[-1].isdigit() else ""
    number = text[:-1].strip() if unit else text
    if number.upper().endswith("I"):  # "4Gi" is read like "4G"
        number = number[:-1]
    try:
        value = float(number) * _SUFFIX[unit]
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 1 or value > 2**62:
        raise InputError(ENV_MAX_BYTES, f"must be a positive number of bytes (e.g. 4G, 512M or 2147483648), got "
                                        f"{text!r}")
    return int(value)


def format_bytes(n: float) -> str:
    """``n`` bytes for people (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def timeline_length(n_frames: int, fps_in: float | None, fps_out: float | None) -> int:
    """Frames of the timeline of a video of ``n_frames`` resampled from ``fps_in`` to ``fps_out`` (``None``: not
    resampled), without building it (as :func:`coreecho.video.transforms.resample_indices` counts them)."""
    if fps_in is None or fps_out is None:
        return int(n_frames)
    return max(1, int(round(n_frames * float(fps_out) / float(fps_in))))


def stage_bytes(*, timeline: int = 0, decoded: tuple[int, int, int] = (0, 0, 0), sector_search: bool = False,
                resize: int = 0, clips: tuple[int, int, int] = (0, 0, 0), float_input: bool = True,
                reserved: int = 0) -> dict[str, int]:
    """Bytes each stage holds for one video (see the module docstring).

    Args:
        timeline: timeline frames.
        decoded: ``(frames decoded, height, width)``.
        sector_search: the fan is searched in the decoded frames (the clip frames are then gathered apart).
        resize: the frame transform's bytes (:func:`coreecho.video.resize.square_resize_bytes`; 0 when frames
            pass through).
        clips: ``(K, T, S)``: clips, frames per clip and side.
        float_input: the pipeline also makes the float32 model input (``output="tensor"``).
        reserved: bytes reserved elsewhere (the engine's forward pass).

    Example:
        >>> stage_bytes(clips=(3, 36, 112))["clip batch"] // 2**20  # uint8 clips and their float32 input
        19
    """
    n, h, w = (int(v) for v in decoded)
    k, t, s = (int(v) for v in clips)
    out = {
        "timeline": 3 * 8 * int(timeline),
        "decoded frames": n * h * w * 3 * (2 if sector_search else 1),
        "resize": int(resize),
        "clip batch": k * t * s * s * 3 * (5 if float_input else 1) + 3 * 8 * k * t,
    }
    if reserved:
        out["forward pass"] = int(reserved)
    return out


def check_budget(source: str, stages: dict[str, int], max_bytes: int, details: dict[str, str] | None = None) -> int:
    """Raise :class:`~coreecho.errors.MemoryBudgetError` when the stages add up to more than ``max_bytes``;
    returns the sum.

    ``details``: how each stage's number came about (``"2000 clips of 36 frames at 112x112"``), for the message.

    Example:
        >>> check_budget("a.avi", {"clip batch": 10}, 100)
        10
        >>> check_budget("a.avi", {"clip batch": 200, "timeline": 8}, 100)
        Traceback (most recent call last):
        ...
        coreecho.errors.MemoryBudgetError: a.avi: needs about 208 B of memory for this video, more than the budget \
of 100 B (Limits(max_bytes=...), or COREECHO_MAX_BYTES): clip batch 200 B, timeline 8 B; the largest is the clip \
batch. Raise the budget (Limits(max_bytes=209) or COREECHO_MAX_BYTES=209), or need less: fewer clips, a smaller \
batch_size or fewer frames
    """
    total = int(sum(stages.values()))
    if total <= max_bytes:
        return total
    details = details or {}
    largest = max(stages, key=lambda k: stages[k])
    parts = ", ".join(f"{name} {format_bytes(v)}" + (f" ({details[name]})" if name in details else "")
                      for name, v in sorted(stages.items(), key=lambda kv: -kv[1]) if v)
    raise MemoryBudgetError(
        source, f"needs about {format_bytes(total)} of memory for this video, more than the budget of "
                f"{format_bytes(max_bytes)} (Limits(max_bytes=...), or {ENV_MAX_BYTES}): {parts}; the largest is "
                f"the {largest}. Raise the budget (Limits(max_bytes={total + 1}) or {ENV_MAX_BYTES}={total + 1}), "
                "or need less: fewer clips, a smaller batch_size or fewer frames",
        stage=largest, needed=total, budget=max_bytes)
