"""The checks of the run settings, shared by the Python API and the command line.

``predict_ef``/``embed``/``run``, ``load_model`` and :func:`coreecho.engine.stream` check ``threads``, ``workers``,
``batch_size``, ``clips``, ``coverage``, ``precision``, ``device`` and ``fps`` here when they are called, before any
model or video is touched; the command line's option parsers (:mod:`coreecho.cli._common`) call the same functions,
so a value means the same thing, with the same bounds, everywhere. A bad value is an
:class:`~coreecho.errors.InputError` naming the argument (``threads=10**6`` no longer reaches torch, which crashes
the interpreter on it).

Example:
    >>> check_threads(4), check_clips("all"), check_device("cuda:1")
    (4, 'all', 'cuda:1')
    >>> check_coverage("x")
    Traceback (most recent call last):
    ...
    coreecho.errors.InputError: coverage: expected a number between 0 and 1 (exclusive), got 'x'
"""

from __future__ import annotations

import math
import re
from typing import Any

from coreecho.errors import InputError
from coreecho.video.budget import FPS_RANGE
from coreecho.video.limits import MAX_CLIPS

__all__ = ["LIMITS", "PRECISIONS", "check_threads", "check_workers", "check_batch_size", "check_clips",
           "check_coverage", "check_precision", "check_device", "check_fps", "check_run_settings"]

#: Upper bounds of the numeric settings (the clip limit is :data:`coreecho.video.limits.MAX_CLIPS`).
LIMITS = {"clips": MAX_CLIPS, "batch_size": 4096, "threads": 1024, "workers": 64, "scale": 16, "frames": 64}
#: Accepted ``precision`` values (as :data:`coreecho.precision.PRECISIONS`).
PRECISIONS = ("fp32", "bf16", "fp16", "auto")

_DEVICE = re.compile(r"(cpu|cuda(:\d{1,3})?|mps|auto)")


def _int_in(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np  # noqa: PLC0415

            ok = isinstance(value, np.integer)
        except ImportError:  # pragma: no cover
            ok = False
        if not ok:
            raise InputError(name, f"expected an integer in {lo}..{hi}, got {value!r}")
    if not lo <= int(value) <= hi:
        raise InputError(name, f"expected an integer in {lo}..{hi}, got {int(value)}")
    return int(value)


def check_threads(threads: Any) -> int | None:
    """``threads``: ``None`` (leave torch's) or an integer in 1..1024."""
    return None if threads is None else _int_in("threads", threads, 1, LIMITS["threads"])


def check_workers(workers: Any) -> int | None:
    """``workers``: ``None`` (the engine's policy) or an integer in 0..64."""
    return None if workers is None else _int_in("workers", workers, 0, LIMITS["workers"])


def check_batch_size(batch_size: Any) -> int | None:
    """``batch_size``: ``None`` (the batch policy) or an integer in 1..4096."""
    return None if batch_size is None else _int_in("batch_size", batch_size, 1, LIMITS["batch_size"])


def check_clips(clips: Any) -> Any:
    """``clips``: ``None``, an integer in 1..:data:`~coreecho.video.limits.MAX_CLIPS`, ``"all"`` or ``"every"``;
    a sampler or a list of starts passes through (the sampler checks it)."""
    if clips is None or (isinstance(clips, str) and clips in ("all", "every")):
        return clips
    if isinstance(clips, str):
        raise InputError("clips", f"expected an integer in 1..{MAX_CLIPS}, 'all' or 'every', got {clips!r}")
    if isinstance(clips, float):
        raise InputError("clips", f"expected an integer in 1..{MAX_CLIPS}, 'all' or 'every', got {clips!r}")
    if isinstance(clips, (list, tuple)) or hasattr(clips, "plan"):
        return clips
    return _int_in("clips", clips, 1, MAX_CLIPS)


def check_coverage(coverage: Any) -> float | None:
    """``coverage``: ``None`` (the calibration's) or a number strictly between 0 and 1."""
    if coverage is None:
        return None
    try:
        value = float(coverage) if not isinstance(coverage, (bool, str, bytes)) else float("nan")
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise InputError("coverage", f"expected a number between 0 and 1 (exclusive), got {coverage!r}")
    return value


def check_precision(precision: Any) -> str:
    """``precision``: one of :data:`PRECISIONS` (whether this machine computes it is checked later)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise InputError("precision", f"expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def check_device(device: Any) -> Any:
    """``device``: ``None``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"auto"`` or a ``torch.device`` of those
    kinds (``"meta"`` and other devices that hold no data are refused; whether it exists is checked later)."""
    if device is None:
        return None
    text = str(device) if type(device).__name__ == "device" else device
    if not isinstance(text, str) or not _DEVICE.fullmatch(text):
        raise InputError("device", f"expected cpu, cuda, cuda:N, mps or auto, got {device!r}")
    return device


def check_fps(fps: Any) -> float | None:
    """``fps`` of in-memory frames: ``None`` (unknown) or a finite rate in
    :data:`~coreecho.video.budget.FPS_RANGE` (1–1000 fps)."""
    if fps is None:
        return None
    lo, hi = FPS_RANGE
    try:
        value = float(fps) if not isinstance(fps, (bool, str, bytes)) else float("nan")
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise InputError("fps", f"expected a frame rate between {lo:g} and {hi:g} frames per second, got {fps!r}")
    return value


def check_run_settings(**settings: Any) -> dict[str, Any]:
    """Check the settings given (by name: ``threads``, ``workers``, ``batch_size``, ``clips``, ``coverage``,
    ``precision``, ``device``, ``fps``); returns them normalised. Unknown names pass through unchecked.

    Example:
        >>> check_run_settings(threads=2, precision="fp32")
        {'threads': 2, 'precision': 'fp32'}
    """
    checks = {"threads": check_threads, "workers": check_workers, "batch_size": check_batch_size,
              "clips": check_clips, "coverage": check_coverage, "precision": check_precision,
              "device": check_device, "fps": check_fps}
    return {k: (checks[k](v) if k in checks else v) for k, v in settings.items()}
