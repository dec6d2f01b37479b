"""HMC-QU on its public on-disk layout: apical four-chamber videos with per-segment myocardial-infarction labels.

Layout read (names configurable, see :class:`HMCQU`)::

    HMC-QU/A4C/ES0001 _4CH_1.avi      A4C recordings (AVI, 25 fps in the public release)
    A4C.xlsx                          one row per recording (A4C.csv with the same columns also works):
        ECHO                           the recording's name (the video file is "<ECHO>.avi")
        SEG1 SEG2 SEG3 SEG5 SEG6 SEG7  one column per myocardial segment visible in A4C: 1 = infarcted, 0 = normal
        One cardiac-cycle frames       first frame of one annotated cardiac cycle (1-based) ...
        (next column, no header)       ... and its last frame (1-based, inclusive)
        LV Wall Ground-truth ...        marks the recordings with segmentation masks (ignored here)

A recording is MI-positive when any of its segments is infarcted (label 1), else 0. Segment columns are found by
name (``SEG<n>``, ``Segment <n>``, case-insensitive) unless given; the end-of-cycle column is the column right
after the start column when its header is empty or says "end". The patient of a recording is the first match
of ``patient_pattern`` in its name (default: the leading letters and digits, ``"ES0001"``), so that folds keep a
patient's recordings together; recordings whose names do not match are their own patient.

Each item is the annotated cycle (``span="cycle"``; ``"all"`` takes the whole video), cropped to the fan,
resized to ``size`` and resampled in time to ``frames`` frames (see :mod:`coreecho.data.sequence`); items follow
:mod:`coreecho.data.contract` (``clips=1`` for evaluation mode). :func:`coreecho.data.layouts.write_hmcqu_layout`
writes phantom recordings in this layout.

Example:
    >>> ds = HMCQU("HMC-QU Dataset")  # doctest: +SKIP
    >>> item = ds[0]  # doctest: +SKIP
    >>> item["label"], item["segments"]  # doctest: +SKIP
    (tensor(1), tensor([0, 1, 1, 0, 0, 0]))
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from coreecho._deprecation import deprecated_aliases
from coreecho.data.folds import Folds, hmcqu_folds
from coreecho.data.sequence import SequenceDataset
from coreecho.errors import DatasetError, InputError, MissingDependencyError

__all__ = ["HMCQU", "HmcquRecord", "hmcqu_folds", "read_table", "SEGMENTS", "START_COLUMN", "MASK_COLUMN"]

#: The six A4C segments of HMC-QU's spreadsheet, in column order.
SEGMENTS: tuple[str, ...] = ("SEG1", "SEG2", "SEG3", "SEG5", "SEG6", "SEG7")
#: Header of the first-frame column of the annotated cycle.
START_COLUMN = "One cardiac-cycle frames"
#: Header of the column marking recordings with ground-truth masks.
MASK_COLUMN = "LV Wall Ground-truth Segmentation Masks"
_SEG_RE = re.compile(r"^\s*seg(?:ment)?\s*[-_ ]?\s*(\d+)\s*$", re.IGNORECASE)
_VIDEO_DIRS = ("HMC-QU/A4C", "A4C", "HMC-QU", ".")
_SHEETS = ("A4C.xlsx", "A4C.csv")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def read_table(path: str | os.PathLike) -> list[list[str]]:
    """Rows of a spreadsheet (first sheet of an ``.xlsx`` via openpyxl, or a ``.csv``) as lists of strings.

    Raises:
        MissingDependencyError: an ``.xlsx`` file without openpyxl (extra ``hmcqu``).
        DatasetError: the file is missing or cannot be read.

    Example:
        >>> read_table("A4C.xlsx")[0][:2]  # doctest: +SKIP
        ['ECHO', 'SEG1']
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: spreadsheet not found; expected HMC-QU's A4C.xlsx (or a CSV with its columns)")
    if p.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            import openpyxl  # noqa: PLC0415
        except ImportError:
            raise MissingDependencyError("openpyxl", "hmcqu", "Reading HMC-QU's A4C.xlsx") from None
        try:
            wb = openpyxl.load_workbook(p, read_only=True, data_only=True)
            try:
                ws = wb.worksheets[0]
                rows = [[_cell(v) for v in row] for row in ws.iter_rows(values_only=True)]
            finally:
                wb.close()
        except Exception as err:  # openpyxl raises many types for broken files
            raise DatasetError(f"{p}: cannot read it as an Excel workbook ({err})") from err
        return rows
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            return [[c.strip() for c in row] for row in csv.reader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{p}: cannot read it as CSV ({err})") from err


@dataclass
class HmcquRecord:
    """One HMC-QU recording.

    Example:
        >>> HmcquRecord("ES0001 _4CH_1", "ES0001", Path("ES0001 _4CH_1.avi"), 1, (0, 1, 1, 0, 0, 0), 5, 30, 2).label
        1

    Attributes:
        name: the ``ECHO`` value.
        patient: the patient id derived from the name.
        path: the video file.
        label: 1 when any segment is infarcted, else 0.
        segments: per-segment labels (1 = infarcted), in the order of :attr:`HMCQU.segment_names`.
        start, end: 1-based first and last frame of the annotated cycle (``None``: not given).
        row: the spreadsheet row number (1-based).
    """

    name: str
    patient: str
    path: Path
    label: int
    segments: tuple[int, ...]
    start: int | None
    end: int | None
    row: int


def _int(value: str, where: str, what: str) -> int:
    try:
        f = float(value)
    except ValueError:
        raise DatasetError(f"{where}: {what} = {value!r} is not a number") from None
    if not np.isfinite(f) or not float(f).is_integer():
        raise DatasetError(f"{where}: {what} = {value!r} is not a whole number")
    return int(f)


class HMCQU(SequenceDataset):
    """HMC-QU A4C recordings with MI labels (binary classification, per-segment labels kept).

    Args:
        root: the dataset folder.
        spreadsheet: the label table (default: ``root/A4C.xlsx``, else ``root/A4C.csv``).
        video_dir: folder of the videos (default: the first of ``HMC-QU/A4C``, ``A4C``, ``HMC-QU``, ``.`` under
            ``root`` that exists).
        name_column: column of the recording names.
        segment_columns: segment columns (default: every ``SEG<n>``-like header).
        start_column, end_column: first/last frame of the annotated cycle (``end_column=None``: the column after
            the start column when its header is empty or mentions "end").
        label_column: take the MI label from this column instead of the segments.
        patient_pattern: regular expression whose first group (or whole match) is the patient id.
        video_name: file name of a recording's video, formatted with ``name``.
        span: ``"cycle"`` (the annotated cycle; the whole video when a row has no start frame) or ``"all"``.
        **kwargs: ``preprocess`` (a model's ``config.preprocessing``), ``augment``, ``seed``, ``cache`` and
            preprocessing overrides (``frames``, ``size``, ``mean``, ``std``, ``temporal``, ``pad``, ``crop_sector``)
            of :class:`~coreecho.data.sequence.SequenceDataset`; ``clips=1`` for evaluation-mode items.

    Raises:
        DatasetError: a missing spreadsheet, column or video, a non-numeric cell, or no recording.
        MissingDependencyError: an ``.xlsx`` spreadsheet without openpyxl.

    Example:
        >>> ds = HMCQU("HMC-QU Dataset", video_name="{name}.avi")  # doctest: +SKIP
        >>> folds = ds.default_folds(5, seed=0)  # doctest: +SKIP
    """

    task = "classification"

    def __init__(self, root: str | os.PathLike, *, spreadsheet: str | os.PathLike | None = None,
                 video_dir: str | os.PathLike | None = None, name_column: str = "ECHO",
                 segment_columns: Sequence[str] | None = None, start_column: str | None = START_COLUMN,
                 end_column: str | None = None, label_column: str | None = None,
                 patient_pattern: str = r"^\s*([A-Za-z]*\d+)", video_name: str = "{name}.avi", span: str = "cycle",
                 **kwargs: Any):
        super().__init__(**kwargs)
        if span not in ("cycle", "all"):
            raise InputError("span", f"expected 'cycle' or 'all', got {span!r}")
        self.root, self.span = Path(root).expanduser(), span
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: HMC-QU folder not found")
        if spreadsheet is None:
            found = [self.root / s for s in _SHEETS if (self.root / s).is_file()]
            if not found:
                raise DatasetError(f"{self.root}: no {' or '.join(_SHEETS)} found; pass spreadsheet=PATH")
            sheet = found[0]
        else:
            sheet = Path(spreadsheet) if Path(spreadsheet).is_absolute() else self.root / spreadsheet
        self.spreadsheet = sheet
        if video_dir is None:
            dirs = [self.root / d for d in _VIDEO_DIRS if (self.root / d).is_dir()]
            vdir = dirs[0]
        else:
            vdir = Path(video_dir) if Path(video_dir).is_absolute() else self.root / video_dir
            if not vdir.is_dir():
                raise DatasetError(f"{vdir}: video folder not found")
        self.video_dir = vdir
        try:
            pattern = re.compile(patient_pattern)
        except re.error as err:
            raise InputError("patient_pattern", f"not a valid regular expression ({err})") from err
        self._parse(read_table(sheet), name_column, segment_columns, start_column, end_column, label_column,
                    pattern, video_name)

    # -------------------------------------------------------------- spreadsheet
    def _parse(self, rows: list[list[str]], name_col: str, seg_cols: Sequence[str] | None, start_col: str | None,
               end_col: str | None, label_col: str | None, pattern: re.Pattern, video_name: str) -> None:
        sheet = self.spreadsheet
        norm = name_col.strip().lower()
        hrow = next((i for i, r in enumerate(rows) if any(c.strip().lower() == norm for c in r)), None)
        if hrow is None:
            first = [c for c in (rows[0] if rows else []) if c]
            found = ", ".join(first) or "no header"
            raise DatasetError(f"{sheet}: no header row with the column {name_col!r}; first row: {found} "
                               "(pass name_column=...)")
        header = [c.strip() for c in rows[hrow]]
        lower = [c.lower() for c in header]

        def col(name: str) -> int:
            if name.strip().lower() not in lower:
                raise DatasetError(f"{sheet}: missing column {name!r}; found {', '.join(c for c in header if c)}")
            return lower.index(name.strip().lower())

        i_name = col(name_col)
        if seg_cols is None:
            seg_idx = [j for j, c in enumerate(header) if _SEG_RE.match(c)]
            if not seg_idx and label_col is None:
                raise DatasetError(f"{sheet}: no segment columns (SEG1, SEG2, ...) found among "
                                   f"{', '.join(c for c in header if c)}; pass segment_columns=[...] or label_column=...")
        else:
            seg_idx = [col(c) for c in seg_cols]
        self.segment_names = [header[j] for j in seg_idx]
        i_label = col(label_col) if label_col is not None else None
        i_start = i_end = None
        if start_col is not None and start_col.strip().lower() in lower:
            i_start = col(start_col)
            if end_col is not None:
                i_end = col(end_col)
            elif i_start + 1 < len(header) and (header[i_start + 1] == "" or "end" in lower[i_start + 1]):
                i_end = i_start + 1
        elif start_col is not None and end_col is not None:
            raise DatasetError(f"{sheet}: missing column {start_col!r}")
        self.records, missing = [], []
        for r, row in enumerate(rows[hrow + 1:], start=hrow + 2):
            row = row + [""] * (len(header) - len(row))
            name = row[i_name].strip()
            if not name:
                continue
            where = f"{sheet}: row {r}"
            segs = tuple(_int(row[j], where, header[j] or f"column {j + 1}") for j in seg_idx)
            if any(s not in (0, 1) for s in segs):
                raise DatasetError(f"{where}: segment labels must be 0 or 1, found {list(segs)}")
            label = _int(row[i_label], where, header[i_label]) if i_label is not None else int(any(segs))
            start = _int(row[i_start], where, header[i_start]) if i_start is not None and row[i_start] else None
            end = _int(row[i_end], where, "end frame") if i_end is not None and row[i_end] else None
            if start is not None and (start < 1 or (end is not None and end < start)):
                raise DatasetError(f"{where}: invalid cycle frames start={start}, end={end} (1-based, end >= start)")
            m = pattern.search(name)
            patient = (m.group(1) if m.groups() else m.group(0)) if m else name
            path = self.video_dir / video_name.format(name=name)
            if not path.is_file():
                missing.append(path.name)
                continue
            self.records.append(HmcquRecord(name, patient, path, label, segs, start, end, r))
        if missing:
            raise DatasetError(f"{self.video_dir}: {len(missing)} video(s) listed in {sheet.name} are missing (e.g. "
                               f"{', '.join(repr(m) for m in missing[:3])}); check video_dir= and video_name=")
        if not self.records:
            raise DatasetError(f"{sheet}: lists no recording")

    # -------------------------------------------------------------- dataset API
    @property
    def segments(self) -> np.ndarray:
        """Per-item segment labels ``[N, n_segments]`` (int64)."""
        return np.array([r.segments for r in self.records], dtype=np.int64).reshape(len(self.records), -1)

    def default_folds(self, k: int = 5, seed: int = 0) -> Folds:
        """Patient-level folds stratified by MI (:func:`~coreecho.data.folds.hmcqu_folds`)."""
        return hmcqu_folds(self.groups, self.labels, k, seed)

    def _source(self, index: int) -> tuple[Any, tuple[int, int] | None]:
        rec: HmcquRecord = self.records[index]
        reader = self._eval.open(rec.path)  # probed once; the pipeline reads only the frames it needs
        n = reader.info.n_frames
        if self.span == "cycle" and rec.start is not None:
            if rec.start > n:
                raise DatasetError(f"{rec.path}: the cycle starts at frame {rec.start} but the video has {n} frames")
            end = n if rec.end is None else min(rec.end, n)
            return reader, (rec.start - 1, end)
        return reader, None

    def _extra(self, index: int) -> dict[str, Any]:
        return {"segments": torch.tensor(self.records[index].segments, dtype=torch.int64)}


#: Names that moved to :mod:`coreecho.data.layouts` (old names kept, deprecated, for one release).
__getattr__ = deprecated_aliases(__name__, {"write_hmcqu_layout": "coreecho.data.layouts",
                                           "make_akinetic": "coreecho.data.layouts"})
