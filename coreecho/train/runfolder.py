"""A training output folder belongs to one run: claimed, locked, never one of the run's inputs.

:func:`claim_run_folder` is entered by both stages before anything is built or written:

* **Not an input.** ``out`` may not be the dataset folder, and for stage 2 it may not be the ``--init`` model's
  folder, lie inside it, or hold it (``--init runs/s1 --out runs/s1`` would overwrite stage 1's checkpoint, models
  and metrics with stage 2's).
* **One run per folder.** A folder that holds a run's files (:data:`RUN_FILES`) is refused unless ``resume`` (the
  same run continues; the checkpoint's stage and recipe are checked by :func:`~coreecho.train.engine.find_resume`)
  or ``overwrite`` (those files are removed by :func:`remove_previous_run` once the new run has checked its data
  and built its model, right before it writes its first file).
* **Locked.** Rank 0 holds :func:`coreecho._lock.output_lock` on the folder for the whole run: a second run on the
  same ``out`` is refused at once with a :class:`~coreecho.errors.BusyError` naming the first.
* **Clean.** Temporary files of an interrupted write of the run's files are removed
  (:func:`coreecho._atomic.clean_stale_temporaries`).

Example:
    >>> import tempfile, os
    >>> from coreecho.train.config import TrainConfig
    >>> out = os.path.join(tempfile.mkdtemp(), "run")
    >>> with claim_run_folder(TrainConfig(data="data", out=out), "stage1"):
    ...     pass
    >>> run_files(out)
    []
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from coreecho._atomic import clean_stale_temporaries
from coreecho._lock import output_lock
from coreecho.errors import OutputError

__all__ = ["RunFolderError", "RUN_FILES", "run_files", "claim_run_folder", "check_not_input", "remove_previous_run"]

#: What a training run writes in its ``out`` folder.
RUN_FILES = ("checkpoint_last.pt", "checkpoint_prev.pt", "metrics.csv", "curves.png", "train_config.json",
             "result.json", "best_model", "last_model", "model", "tensorboard")
_WRITTEN = ("metrics.csv", "curves.png", "train_config.json", "result.json", "checkpoint_last.pt",
            "checkpoint_prev.pt")
_MODEL_FOLDERS = ("best_model", "last_model", "model")
_MODEL_FILES = ("model.safetensors", "config.json", "README.md", "calibration.safetensors")


class RunFolderError(OutputError):
    """An output folder that a run may not use: another run's files are there (without ``--resume`` or
    ``--overwrite``), or it is one of the run's inputs. The message names it and what to do."""


def run_files(out: str | os.PathLike) -> list[str]:
    """The names of :data:`RUN_FILES` present in ``out``."""
    folder = Path(out)
    return [name for name in RUN_FILES if os.path.lexists(folder / name)]


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_not_input(out: str | os.PathLike, inputs: dict[str, str | os.PathLike | None], *,
                    option: str = "--out") -> None:
    """Refuse an output folder that is, holds or lies inside one of ``inputs`` (``{what: path}``; folders or files
    that do not exist are skipped).

    Raises:
        RunFolderError: naming the output, the input and what to do.
    """
    target = _resolved(out)
    for what, path in inputs.items():
        if not path or not os.path.exists(Path(path).expanduser()):
            continue
        source = _resolved(path)
        if what == "the dataset":  # the run's files never replace a dataset file; only the folder itself is refused
            clash = target in (source, source / "Videos")
        else:  # a model, run folder or weights file: not written into, not replaced by one of the run's files
            clash = (_within(target, source) if source.is_dir() else target == source) or (
                source != target and _within(source, target) and source.relative_to(target).parts[0] in RUN_FILES)
        if clash:
            raise RunFolderError(f"{option} {out}: is {what} ({path}), or overlaps it; a run never writes into its "
                                 f"inputs. Choose another {option} folder")


@contextlib.contextmanager
def claim_run_folder(cfg: Any, stage: str, env: Any = None) -> Iterator[Path]:
    """Check, lock and (with ``cfg.overwrite``) clear ``cfg.out`` for a run of ``stage`` (see the module doc).

    Args:
        cfg: the run's :class:`~coreecho.train.config.TrainConfig`.
        stage: ``"stage1"`` or ``"stage2"``.
        env: the :class:`~coreecho.train.distributed.DistEnv`; only rank 0 locks and removes files.

    Raises:
        RunFolderError: the folder is an input, or holds another run's files without resume/overwrite.
        BusyError: another coreecho run holds the folder.
    """
    main = env is None or getattr(env, "main", True)
    with contextlib.ExitStack() as stack:
        error: BaseException | None = None
        try:
            out = _check_folder(cfg, stage)
            if main:
                out.absolute().parent.mkdir(parents=True, exist_ok=True)
                stack.enter_context(output_lock(out, command=getattr(cfg, "command", None)))
                if out.is_dir():
                    for name in _WRITTEN:
                        clean_stale_temporaries(out, name)
                    for folder in _MODEL_FOLDERS:  # the exported models' files
                        for name in _MODEL_FILES:
                            clean_stale_temporaries(out / folder, name)
        except Exception as err:  # noqa: BLE001 - agreed with the other ranks below, then raised
            error = err
        if env is not None and getattr(env, "distributed", False):  # every rank stops, or none: no rank waits
            from coreecho.train.distributed import all_gather_objects

            others = [e for e in all_gather_objects(None if error is None else str(error)) if e]
            if error is None and others:
                error = RunFolderError(f"another process of this run refused the output folder: {others[0]}")
        if error is not None:
            raise error
        yield out


def _check_folder(cfg: Any, stage: str) -> Path:
    out = Path(cfg.out)
    if cfg.resume and getattr(cfg, "overwrite", False):
        raise RunFolderError(f"--out {out}: --resume continues the run there and --overwrite removes it; give one")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out}: is a file, not a folder; choose a folder for the run's outputs")
    inputs: dict[str, Any] = {"the dataset": cfg.data}
    init = str(getattr(cfg, "init", "") or "")
    if stage == "stage2" or (init and init.lower() not in ("none", "auto") and os.path.exists(init)):
        inputs["the --init model"] = init
    check_not_input(out, inputs)
    found = run_files(out)
    if found and not cfg.resume and not getattr(cfg, "overwrite", False):
        raise RunFolderError(f"--out {out}: holds another run's files ({', '.join(found)}); continue that run with "
                             "--resume, start over with --overwrite (removes them first), or choose another --out")
    return out


def remove_previous_run(cfg: Any) -> list[str]:
    """With ``cfg.overwrite`` (and not ``cfg.resume``): remove the previous run's files from ``cfg.out``; returns
    their names. Called by the training loop once everything is checked and built, right before the new run
    writes its first file, so that a run refused earlier (bad data, bad model) leaves the previous run intact."""
    if not getattr(cfg, "overwrite", False) or cfg.resume:
        return []
    out = Path(cfg.out)
    found = run_files(out)
    _remove(out, found)
    return found


def _remove(out: Path, names: list[str]) -> None:
    for name in names:
        path = out / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as err:
            from coreecho._oserrors import as_output_error

            typed = as_output_error(err, path)
            raise (typed or RunFolderError(f"{path}: cannot be removed for --overwrite ({err})")) from err
