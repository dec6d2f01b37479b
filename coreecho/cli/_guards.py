"""Outputs of ``evaluate``, ``finetune`` and ``calibrate``: never an input, never another run's result unasked.

* :func:`model_folder` resolves the folder a ``--model`` is read from (a folder given, or the folder of a
  registered or cached model), so that an output inside it is refused.
* :func:`dataset_inputs` lists the files a dataset argument stands for (an EchoNet-Dynamic folder's
  ``FileList.csv``, ``VolumeTracings.csv`` and ``Videos/``; a CSV file itself).
* :func:`check_result_file` refuses an output file that is an input, lies inside the model folder or the videos
  folder, or already exists without ``--overwrite``.
* :func:`check_result_folder` does the same for an output folder (``--save-model``, ``calibrate --out``).

Every refusal is a :class:`~coreecho.cli._common.UsageError` (exit 2) naming the option; nothing was written.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "old.csv").write_text("x")
    >>> check_result_file(str(d / "old.csv"), [], overwrite=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    coreecho.cli._common.UsageError: --output ...old.csv: exists (an earlier result?); ...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from coreecho.cli._common import UsageError
from coreecho.cli.output import clashing_input

__all__ = ["model_folder", "dataset_inputs", "check_result_file", "check_result_folder"]


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def model_folder(model: str | None) -> Path | None:
    """The folder ``model`` is read from: the folder itself, a ``.pth``/weights file's folder, or ``None`` for a
    registered name or Hub id that is not a local path (a cached copy is never an output's place either, but
    resolving it would download)."""
    if not model:
        return None
    path = Path(str(model)).expanduser()
    if path.is_dir():
        return _real(path)
    if path.is_file():
        return _real(path.parent) if (path.parent / "config.json").is_file() else None
    return None


def dataset_inputs(data: str | os.PathLike | None) -> list[str]:
    """The files (and the videos folder) that a ``--data`` argument stands for."""
    if not data:
        return []
    root = Path(data).expanduser()
    if root.is_dir():
        return [str(root / name) for name in ("FileList.csv", "VolumeTracings.csv", "Videos")] + [str(root)]
    return [str(root)]


def _check_inside(target: Path, option: str, out: str, model_dir: Path | None, inputs: Iterable[str]) -> None:
    if model_dir is not None and _within(target, model_dir):
        raise UsageError(f"{option} {out}: lies inside the model folder {model_dir} that this command reads; "
                         "choose a path outside it")
    given = {os.path.expanduser(i): i for i in inputs}
    item = given.get(clashing_input(target, list(given)))
    inputs = list(given.values())
    videos = [i for i in inputs if _real(i).name == "Videos" and _real(i).is_dir() and _within(target, _real(i))]
    if item is not None or videos:
        raise UsageError(f"{option} {out}: is also an input ({item if item is not None else videos[0]}); refusing to "
                         "overwrite it. Choose another output name")


def check_result_file(output: str, inputs: Sequence[str], *, overwrite: bool, model: str | None = None,
                      option: str = "--output") -> None:
    """Refuse an output file that is an input, is inside the model folder or the videos, or exists already
    (without ``overwrite``); see the module docstring. Temporary files that an interrupted earlier write of it left
    are removed (:func:`coreecho._atomic.clean_stale_temporaries`).

    Raises:
        UsageError: naming the option and the reason.
    """
    target = _real(output)
    _check_inside(target, option, output, model_folder(model), inputs)
    if Path(output).is_file() and not overwrite:
        raise UsageError(f"{option} {output}: exists (an earlier result?); give --overwrite to replace it, or "
                         "choose another name")
    from coreecho._atomic import clean_stale_temporaries

    clean_stale_temporaries(Path(output).absolute().parent, Path(output).name)  # of an interrupted earlier write


def check_result_folder(out: str, inputs: Sequence[str], *, overwrite: bool, model: str | None = None,
                        option: str = "--out", same_as_model: bool = False) -> None:
    """Refuse an output folder that is, holds or lies inside an input or the model folder, or holds files already
    (without ``overwrite``); ``same_as_model`` allows the model folder itself (``calibrate`` updates a model in
    place).

    Raises:
        UsageError: naming the option and the reason.
    """
    target = _real(out)
    mdir = model_folder(model)
    if Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"{option} {out}: is a file; give a folder")
    if mdir is not None and target == mdir and same_as_model:
        return
    if mdir is not None and (_within(target, mdir) or _within(mdir, target)):
        raise UsageError(f"{option} {out}: is the model folder {mdir} this command reads, or overlaps it; the input "
                         "model would be replaced. Choose another folder")
    _check_inside(target, option, out, None, inputs)
    if Path(out).is_dir() and any(Path(out).iterdir()) and not overwrite:
        raise UsageError(f"{option} {out}: holds files already (an earlier result?); give --overwrite to replace "
                         "them, or choose another folder")
