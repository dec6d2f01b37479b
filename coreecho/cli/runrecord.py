"""The run record of a ``predict``/``embed`` output: what made its rows, so that ``--resume`` adds only comparable rows.

Every output and journal coreecho writes carries a *run record*: the coreecho version, the sha256 of the model's
weights (:func:`coreecho.analysis.conformal.state_fingerprint`, over the state dict), of its calibration, and every
setting that changes the rows (clips, resampling, precision, the model's preprocessing: frames, stride, size,
mean/std, fps, crop, sampling, padding). Where it lives:

- **journals** (``OUT.partial``): their first line (CSV: ``# coreecho run {...}``; JSON Lines:
  ``{"coreecho_run": ...}``).
- **outputs**: a sidecar ``OUT.meta.json`` next to the output, so that the CSV stays a plain table that spreadsheets
  and ``pandas.read_csv`` open as they are, and a JSON output stays an array. The sidecar also holds the sha256 of
  each file it describes: an output edited or replaced afterwards (or a user's own table at the same name) does not
  match, and is never taken as finished work.

``--resume`` refuses an output or journal without a matching record (a foreign ``mydata.csv``, an output of coreecho
before 0.3, an edited output) and one whose settings differ from this run's, with one line per difference.

Example:
    >>> old = {"coreecho": "0.3.0", "clips": "3", "resample_fps": False}
    >>> print("\\n".join(settings_diff(old, {**old, "clips": "1"}, "ef.csv")))
    clips: 3 in ef.csv, 1 in this run
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from coreecho._atomic import check_output_target, replace_atomically
from coreecho.cli._common import UsageError
from coreecho.errors import OutputError

__all__ = ["RECORD_VERSION", "record_path", "run_settings", "file_sha256", "settings_diff", "check_settings",
           "read_record", "write_record"]

#: Version of the record's layout.
RECORD_VERSION = 1


def record_path(output: str | os.PathLike) -> Path:
    """The sidecar of ``output``: ``OUT.meta.json``."""
    return Path(f"{output}.meta.json")


def _digest_arrays(arrays: dict[str, Any]) -> str:
    import numpy as np

    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(np.asarray(arrays[name]))
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def run_settings(model: Any, *, command: str, clips: Any, resample_fps: bool, precision: str) -> dict[str, Any]:
    """Everything that decides the rows of a run, as strings, numbers and booleans (compared on ``--resume``)."""
    import dataclasses

    from coreecho._version import __version__
    from coreecho.analysis.conformal import state_fingerprint

    config = model.config
    pre = dataclasses.asdict(config.preprocessing) if dataclasses.is_dataclass(config.preprocessing) else {}
    calibration = getattr(model, "calibration", None)
    cal = "none"
    if calibration is not None:
        arrays = getattr(calibration, "arrays", None)
        cal = _digest_arrays(arrays()) if callable(arrays) else hashlib.sha256(repr(calibration).encode()).hexdigest()
    settings: dict[str, Any] = {
        "coreecho": __version__,
        "command": command,
        "weights_sha256": state_fingerprint(model),
        "calibration_sha256": cal,
        "task": str(getattr(config, "task", "ef")),
        "clips": str(clips if clips is not None else config.test_clips),
        "resample_fps": bool(resample_fps),
        # "auto" picks the arithmetic by device (coreecho.precision): the device type is part of what it means
        "precision": str(precision) if precision != "auto" else f"auto ({_device_type(model)})",
    }
    for key, value in pre.items():
        settings[f"preprocessing.{key}"] = list(value) if isinstance(value, tuple) else value
    return settings


def _device_type(model: Any) -> str:
    try:
        return next(model.parameters()).device.type
    except (StopIteration, AttributeError):
        return "cpu"


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 24 else text[:12] + "…"


def settings_diff(old: dict[str, Any], new: dict[str, Any], where: str) -> list[str]:
    """One line per setting that differs (missing on one side included)."""
    lines = []
    for key in list(dict.fromkeys([*old, *new])):
        a, b = old.get(key, "(not set)"), new.get(key, "(not set)")
        if a != b:
            lines.append(f"{key}: {_show(a)} in {where}, {_show(b)} in this run")
    return lines


def check_settings(sources: Iterable[tuple[str, dict[str, Any]]], current: dict[str, Any]) -> None:
    """Refuse when any earlier record's settings differ from this run's.

    Raises:
        UsageError: naming the file, with one line per difference in its ``details`` (printed one per line by the
            CLI, and part of the message).
    """
    for where, settings in sources:
        diff = settings_diff(settings, current, Path(where).name)
        if diff:
            err = UsageError(f"--resume: {where} was written with other settings, so its rows and this run's would "
                             "not be comparable; rerun with the settings of the earlier run, or remove --resume (and "
                             "delete the journal, if any) to start over. Differences:" + "".join(
                                 "\n  " + line for line in diff))
            err.details = diff
            raise err


def read_record(output: str | os.PathLike, files: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """The run record of an earlier output, checked against the files it must describe.

    Raises:
        UsageError: no record (not written by coreecho 0.3+), an unreadable one, or a file that does not match it
            (edited or replaced since coreecho wrote it).
    """
    meta = record_path(output)
    advice = ("it is not an output of coreecho (or one written before 0.3), and --resume only adds rows to an output "
              "coreecho wrote. Choose another --output (without --resume, this file would be replaced)")
    if not meta.is_file():
        raise UsageError(f"--resume: {output} has no run record ({meta.name} next to it): {advice}")
    try:
        record = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"--resume: the run record {meta} cannot be read ({err}): {advice}") from None
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict) \
            or not isinstance(record.get("files"), dict):
        raise UsageError(f"--resume: {meta} is not a coreecho run record: {advice}")
    for f in files:
        name = Path(f).name
        accepted = {record["files"].get(name), (record.get("previous") or {}).get(name)} - {None}
        if not accepted:
            raise UsageError(f"--resume: {meta} does not describe {f}: {advice}")
        if file_sha256(f) not in accepted:
            raise UsageError(f"--resume: {f} was changed after coreecho wrote it (its sha256 does not match {meta.name}"
                             "); its rows cannot be trusted as finished work. Choose another --output, or remove "
                             "--resume to replace it")
    return record


def write_record(output: str | os.PathLike, settings: dict[str, Any], files: dict[str, str],
                 previous: dict[str, str] | None = None, rows: int | None = None) -> Path:
    """Write ``OUT.meta.json`` (atomically): the settings and the sha256 of each file (by name) it describes.

    ``previous`` holds the digests of the files this run is replacing (a resumed run), so that a kill between this
    record and the output's replacement leaves a pair that ``--resume`` still accepts.
    """
    meta = record_path(output)
    try:
        check_output_target(meta)
    except OutputError as err:
        raise UsageError(f"--output {err}") from None
    body = {"coreecho_run": RECORD_VERSION, "settings": settings, "files": files, "previous": previous or {},
            "rows": rows}
    return replace_atomically(meta, lambda fh: fh.write(json.dumps(body, indent=1, allow_nan=False) + "\n"))
