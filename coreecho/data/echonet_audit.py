"""Checks of an EchoNet-Dynamic listing before training: bad labels, duplicates, leaks between splits, tracings.

:func:`audit_echonet` reads ``FileList.csv`` and ``VolumeTracings.csv`` once and reports, with counts and example
rows (``FileList.csv`` row numbers count the header as row 1):

Errors (training refuses to start, :meth:`EchoNetAudit.raise_errors`):

* a label (``EF``) that is not a number, or not finite;
* an EF outside 0-100 (an EF is a percentage);
* one name listed twice in a split (the video would weigh double), or with two different labels;
* one video in two splits (``TRAIN`` and ``VAL``: validation would measure memorised videos).

Warnings (the run goes on; they say how many videos are left out and why):

* rows with an empty or unknown ``Split`` (they belong to no split);
* videos of a split without ``min_traced_frames`` traced frames in ``VolumeTracings.csv`` (left out, as the official
  code does);

:meth:`EchoNetAudit.summary` is one line: the videos each split uses and why the others were left out, e.g.
``data: train 8 videos, val 2 (left out: 2 train without 2 traced frames; 1 row with an empty Split)``.
:meth:`EchoNetAudit.listing_digest` is a sha256 of the videos a run uses (split, name, label; not their folder, which
may move), stored in training checkpoints so that ``--resume`` refuses a listing edited since.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "FileList.csv").write_text("FileName,EF,Split\\na,50,TRAIN\\nb,150,TRAIN\\na,50,VAL\\n")
    >>> audit = audit_echonet(root, min_traced_frames=0)
    >>> [line.split(":")[0] for line in audit.errors]
    ['EF out of 0-100', 'in two splits']
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from coreecho.errors import DatasetError

__all__ = ["EchoNetAudit", "audit_echonet", "listing_digest", "EF_RANGE"]

#: The range of an ejection fraction, in %.
EF_RANGE = (0.0, 100.0)
_SHOWN = 3  # example rows per problem


def _stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".avi") else name


def _examples(rows: Sequence[str]) -> str:
    more = f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
    return "; ".join(rows[:_SHOWN]) + more


@dataclass
class EchoNetAudit:
    """What :func:`audit_echonet` found.

    Attributes:
        root: the dataset folder.
        errors: one line per kind of problem that makes the listing unusable for training.
        warnings: one line per kind of problem that leaves videos out.
        used: ``{split: [(name, label), ...]}``, the videos each split uses (before ``limit_*``).
        left_out: ``[(count, why)]``.
    """

    root: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    used: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    left_out: list[tuple[int, str]] = field(default_factory=list)

    def summary(self, splits: Iterable[str] = ("train", "val")) -> str:
        """``data: train N videos, val M (left out: ...)``."""
        parts = [f"{s} {len(self.used.get(s, []))}" + (" videos" if i == 0 else "") for i, s in enumerate(splits)]
        why = "; ".join(f"{n} {text}" for n, text in self.left_out if n)
        return f"data: {', '.join(parts)}" + (f" (left out: {why})" if why else "")

    def raise_errors(self) -> None:
        """Raise one :class:`~coreecho.errors.DatasetError` listing every error (no-op without errors)."""
        if self.errors:
            flist = self.root / "FileList.csv"
            raise DatasetError(f"{flist}: the listing cannot be trained on ({len(self.errors)} problem(s)): "
                               + " | ".join(self.errors) + ". Fix the file list (see docs/training.md, Safety)")


def listing_digest(used: dict[str, Sequence[tuple[str, float]]]) -> str:
    """sha256 (hex) of ``{split: [(name, label), ...]}`` in order: which videos, with which labels, a run uses."""
    h = hashlib.sha256()
    for split in sorted(used):
        h.update(f"[{split}]\n".encode())
        for name, label in used[split]:
            h.update(f"{name}\t{float(label)!r}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def audit_echonet(root: str | os.PathLike, *, label: str = "EF", min_traced_frames: int = 2,
                  splits: Sequence[str] = ("train", "val", "test")) -> EchoNetAudit:
    """Check an EchoNet-Dynamic listing (see the module docstring); nothing is decoded, no video is opened.

    Raises:
        DatasetError: ``FileList.csv`` (or ``VolumeTracings.csv`` when tracings are needed) is missing or lacks a
            column (the problems of the *rows* are collected in the result, not raised).
    """
    from coreecho.data.echonet import read_csv_table

    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetError(f"{base}: dataset folder not found; expected the EchoNet-Dynamic folder with "
                           "FileList.csv, VolumeTracings.csv and Videos/")
    flist = base / "FileList.csv"
    rows = read_csv_table(flist, ["FileName", label, "Split"], "the EchoNet-Dynamic file list")
    audit = EchoNetAudit(base)
    bad_number, out_of_range, no_split = [], [], []
    seen: dict[str, list[tuple[int, str, float | None]]] = {}
    for i, row in enumerate(rows):
        where = f"row {i + 2} {row['FileName']!r}"
        text = row[label]
        try:
            value: float | None = float(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            bad_number.append(f"{where} {label}={text!r}")
            value = None
        elif label == "EF" and not EF_RANGE[0] <= value <= EF_RANGE[1]:
            out_of_range.append(f"{where} EF={text}")
        split = row["Split"].strip().lower()
        if split not in splits:
            no_split.append(f"{where} Split={row['Split']!r}")
            continue
        seen.setdefault(_stem(row["FileName"]), []).append((i, split, value))
    if bad_number:
        audit.errors.append(f"{label} not a finite number: {len(bad_number)} row(s), e.g. {_examples(bad_number)}")
    if out_of_range:
        audit.errors.append(f"EF out of 0-100: {len(out_of_range)} row(s), e.g. {_examples(out_of_range)}")
    duplicated, conflicting, leaked = [], [], []
    for name, entries in seen.items():
        split_names = sorted({s for _, s, _ in entries})
        labels = {v for _, _, v in entries if v is not None}
        rows_of = ", ".join(str(i + 2) for i, _, _ in entries)
        if len(split_names) > 1:
            leaked.append(f"{name!r} in {' and '.join(s.upper() for s in split_names)} (rows {rows_of})")
        elif len(entries) > 1:
            duplicated.append(f"{name!r} (rows {rows_of})")
        if len(labels) > 1:
            conflicting.append(f"{name!r} {label}s {', '.join(f'{v:g}' for v in sorted(labels))} (rows {rows_of})")
    if duplicated:
        audit.errors.append(f"listed twice: {len(duplicated)} name(s), e.g. {_examples(duplicated)}")
    if conflicting:
        audit.errors.append(f"conflicting labels: {len(conflicting)} name(s), e.g. {_examples(conflicting)}")
    if leaked:
        audit.errors.append(f"in two splits: {len(leaked)} video(s), e.g. {_examples(leaked)}")
    if no_split:
        audit.warnings.append(f"{flist}: {len(no_split)} row(s) with an empty or unknown Split belong to no split "
                              f"and are left out, e.g. {_examples(no_split)}")
        audit.left_out.append((len(no_split), "row(s) with an empty or unknown Split"))
    traced = _traced(base) if min_traced_frames > 0 else None
    for split in splits:
        names = [(name, entries[0][2]) for name, entries in seen.items()
                 if entries[0][1] == split and entries[0][2] is not None]
        if traced is not None:
            missing = [n for n, _ in names if traced.get(n, 0) < min_traced_frames]
            if missing:
                audit.warnings.append(
                    f"{base / 'VolumeTracings.csv'}: {len(missing)} of {len(names)} {split} video(s) have fewer than "
                    f"{min_traced_frames} traced frames and are left out (as the official code does), e.g. "
                    f"{_examples(missing)}")
                audit.left_out.append((len(missing), f"{split} without {min_traced_frames} traced frames"))
            names = [(n, v) for n, v in names if traced.get(n, 0) >= min_traced_frames]
        audit.used[split] = [(n, float(v)) for n, v in names]  # type: ignore[arg-type]
    return audit


def _traced(root: Path) -> dict[str, int]:
    from coreecho.data.echonet import read_csv_table

    rows = read_csv_table(root / "VolumeTracings.csv", ["FileName", "Frame"], "the EchoNet-Dynamic volume tracings")
    frames: dict[str, set[str]] = {}
    for row in rows:
        frames.setdefault(_stem(row["FileName"]), set()).add(row["Frame"])
    return {k: len(v) for k, v in frames.items()}
