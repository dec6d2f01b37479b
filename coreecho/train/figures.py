"""The figures written next to results: ``evaluate``'s agreement plot and a training run's ``curves.png``.

The drawing is :mod:`coreecho.analysis.figures`'s; this module decides where the files go and writes them
atomically (a temporary ``.NAME.coreecho-PID-RANDOM.tmp.png`` next to the target, renamed over it by
:func:`coreecho._atomic.install`), so an interrupted write never leaves half a PNG. A figure is a by-product: when
matplotlib is missing or the figure cannot be drawn, :func:`write_training_curves` warns once (one line) and the
run goes on.

* :func:`agreement_path` — ``per_video.csv`` → ``per_video_agreement.png`` (same folder);
* :func:`write_figure` — any ``plot_*(…, path, …)`` function of :mod:`coreecho.analysis.figures`, atomically;
* :func:`write_training_curves` — ``RUN/curves.png`` from ``RUN/metrics.csv``; training calls it at the end of a
  run and after each pass that took at least :data:`CURVES_AFTER_PASS_S` seconds.

Example:
    >>> agreement_path("runs/eval/per_video.csv").as_posix()
    'runs/eval/per_video_agreement.png'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from coreecho._atomic import check_output_target, install, temporary_name
from coreecho._warnings import warn_user
from coreecho.errors import CoReEchoError, MissingDependencyError

__all__ = ["CURVES_NAME", "CURVES_AFTER_PASS_S", "agreement_path", "write_figure", "write_training_curves"]

#: The figure of a training run's curves, in its ``--out`` folder (next to ``metrics.csv``).
CURVES_NAME = "curves.png"
#: A pass at least this long is followed by a fresh ``curves.png`` (so an interrupted run has one). Drawing it takes
#: about 0.4 s on a laptop CPU (1 s with matplotlib's first import): under 1 % of such a pass. Shorter passes (tiny
#: or phantom runs) get the figure once, at the end.
CURVES_AFTER_PASS_S = 60.0

_warned: set[str] = set()


def agreement_path(output: str | os.PathLike) -> Path:
    """The agreement figure written with an ``evaluate --output`` file: ``<stem>_agreement.png`` beside it."""
    p = Path(output)
    return p.with_name(f"{p.stem}_agreement.png")


def write_figure(plot: Callable[..., Any], path: str | os.PathLike, *args: Any, **kwargs: Any) -> Path:
    """Call ``plot(*args, <temporary path>, **kwargs)`` and rename the file it wrote over ``path``.

    The temporary file keeps ``path``'s suffix (matplotlib picks the format from it).

    Raises:
        OutputError: ``path`` is a link, folder, device... (nothing written), or the file system refused it.
        MissingDependencyError: matplotlib is not installed.
        InputError: the data cannot be plotted (what ``plot`` raises).
    """
    target = check_output_target(path)
    target.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(target)
    tmp = tmp.with_name(tmp.name + target.suffix)
    try:
        plot(*args, tmp, **kwargs)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return install(tmp, target)


def write_training_curves(out: str | os.PathLike, *, title: str | None = None) -> Path | None:
    """Write ``OUT/curves.png`` from ``OUT/metrics.csv``; ``None`` (and one warning per reason and process) when
    it cannot be drawn: matplotlib is missing, or the file has nothing to plot. Training never fails for it."""
    from coreecho.analysis.figures import plot_training_curves

    folder = Path(out)
    try:
        return write_figure(plot_training_curves, folder / CURVES_NAME, folder / "metrics.csv", title=title)
    except MissingDependencyError as err:
        _warn_once("matplotlib", f"{folder / CURVES_NAME} not written: {err}")
    except (CoReEchoError, OSError, ValueError) as err:
        _warn_once(type(err).__name__, f"{folder / CURVES_NAME} not written: {err}")
    return None


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warn_user(message)
