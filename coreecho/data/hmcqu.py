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
resized to ``size`` and resampled in time to ``frames`` frames (see :mod:`coreecho.data.camus`).

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

from coreecho.data.camus import SequenceDataset
from coreecho.data.folds import Folds, hmcqu_folds
from coreecho.errors import DatasetError, InputError, MissingDependencyError

__all__ = ["HMCQU", "HmcquRecord", "hmcqu_folds", "read_table", "write_hmcqu_layout", "SEGMENTS",
           "START_COLUMN", "MASK_COLUMN"]

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
            of :class:`~coreecho.data.camus.SequenceDataset`.

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


# ----------------------------------------------------------------------------------------------------------
# phantom writer


def _soft(mask: np.ndarray, passes: int = 2) -> np.ndarray:
    m = mask.astype(np.float32)
    for _ in range(passes):
        for axis in (0, 1):
            lo = np.concatenate([np.take(m, [0], axis=axis), np.take(m, np.arange(m.shape[axis] - 1), axis=axis)],
                                axis=axis)
            hi = np.concatenate([np.take(m, np.arange(1, m.shape[axis]), axis=axis), np.take(m, [-1], axis=axis)],
                                axis=axis)
            m = 0.5 * m + 0.25 * (lo + hi)
    return m


def make_akinetic(frames: np.ndarray, meta: Any, segments: Sequence[int]) -> np.ndarray:
    """Freeze myocardial segments of a phantom at their end-diastolic position (an MI-like wall-motion defect).

    Segments use HMC-QU's A4C numbering: 1, 2, 3 = septal wall, basal, mid, apical; 5, 6, 7 = lateral wall,
    apical, mid, basal (a third of the long axis each). Inside a segment's region, from the cavity to beyond the
    wall, every frame shows the preceding end-diastolic frame (soft-edged), so the wall does not move inward in
    systole while the rest of the ventricle contracts.

    Args:
        frames: a :func:`~coreecho.data.phantom.make_phantom` cine ``[T, H, W, 3]``.
        meta: its :class:`~coreecho.data.phantom.PhantomMeta`.
        segments: the segments to freeze.

    Returns:
        A new ``uint8`` cine.

    Example:
        >>> from coreecho.data.phantom import make_phantom
        >>> cine, meta = make_phantom(50.0, seed=0, n_frames=60, fps=25, heart_rate=75)
        >>> out = make_akinetic(cine, meta, [6, 7])
        >>> out.shape == cine.shape, bool((out != cine).any())
        (True, True)
    """
    bad = sorted({int(s) for s in segments} - {1, 2, 3, 5, 6, 7})
    if bad:
        raise InputError("segments", f"A4C segments are 1, 2, 3, 5, 6, 7; got {bad}")
    if not segments:
        return frames.copy()
    ed0, period = meta.ed_frames[0], meta.period_frames
    lines = np.asarray(meta.tracings[ed0], dtype=np.float64)
    apex, base = lines[0, :2], lines[0, 2:]
    length = float(np.hypot(*(base - apex)))
    axis = (base - apex) / length
    chords = lines[1:]
    mid = chords[len(chords) // 2]
    normal = (mid[2:] - mid[:2]) / max(float(np.hypot(*(mid[2:] - mid[:2]))), 1e-9)
    half = float(np.max(np.hypot(chords[:, 2] - chords[:, 0], chords[:, 3] - chords[:, 1]))) / 2.0
    wall = float(meta.params.get("wall_px", 0.12 * length))
    h, w = frames.shape[1:3]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    du, dv = xx - apex[0], yy - apex[1]
    u = (du * axis[0] + dv * axis[1]) / length
    v = du * normal[0] + dv * normal[1]
    bands = {"apical": (-wall / length - 0.02, 1 / 3), "mid": (1 / 3, 2 / 3), "basal": (2 / 3, 1.05)}
    where = {1: (-1, "basal"), 2: (-1, "mid"), 3: (-1, "apical"), 5: (1, "apical"), 6: (1, "mid"), 7: (1, "basal")}
    region = np.zeros((h, w), dtype=bool)
    for s in segments:
        side, band = where[int(s)]
        lo, hi = bands[band]
        region |= (u >= lo) & (u < hi) & (side * v >= 0.3 * half) & (side * v <= half + 1.8 * wall)
        if band == "apical":  # the apex curves: include the wall beyond the tip on that side
            region |= (u < 0.12) & (u >= lo) & (side * v >= 0.0) & (side * v <= half + 1.8 * wall)
    m = _soft(region)[None, :, :, None]
    t = np.arange(frames.shape[0])
    ref = t - ((t - ed0) % period)
    ref = np.where(ref < 0, ed0, ref)
    out = frames.astype(np.float32) * (1.0 - m) + frames[ref].astype(np.float32) * m
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write_hmcqu_layout(root: str | os.PathLike, n: int, seed: int = 0, *, labels_format: str = "xlsx",
                       mi_fraction: float = 0.6, repeat_fraction: float = 0.25, fps: float = 25.0, size: int = 112,
                       width: int | None = None, n_frames: int | tuple[int, int] = (50, 70),
                       **phantom_options: Any) -> list[dict[str, Any]]:
    """Write ``n`` phantom recordings in HMC-QU's layout, MI-positive ones with akinetic wall segments.

    Writes ``root/HMC-QU/A4C/<name>.avi`` (MJPEG at ``fps``) and ``root/A4C.xlsx`` (or ``A4C.csv`` with
    ``labels_format="csv"``; the xlsx needs openpyxl) with the columns ``ECHO``, ``SEG1 SEG2 SEG3 SEG5 SEG6 SEG7``,
    ``One cardiac-cycle frames`` (first frame, 1-based), an unnamed column (last frame, 1-based) and
    ``LV Wall Ground-truth Segmentation Masks`` (``"ü"`` for every other recording, no masks are written).

    Names are ``ES<patient> _4CH_<k>``; a fraction ``repeat_fraction`` of patients have a second recording (same
    labels, another phantom). MI-positive recordings (a fraction ``mi_fraction`` of patients) have 1–3 adjacent
    infarcted segments frozen at end-diastole (:func:`make_akinetic`) and EFs drawn from 35–60 %; the others
    have EFs from 45–70 %.

    Args:
        root: output folder.
        n: number of recordings.
        seed: seed of the whole set.
        labels_format: ``"xlsx"`` or ``"csv"``.
        mi_fraction: probability that a patient has MI.
        repeat_fraction: probability that a patient has a second recording.
        fps: frame rate of the videos.
        size: frame height (the phantom's side).
        width: frame width (default ``size * 4 // 3``).
        n_frames: frames per video, or a range.
        **phantom_options: passed to :func:`~coreecho.data.phantom.make_phantom`.

    Returns:
        One dict per recording: ``name``, ``patient``, ``label``, ``segments``, ``start``, ``end``, ``ef``, ``path``.

    Example:
        >>> rows = write_hmcqu_layout("/tmp/hmcqu_phantom", 6, seed=0, labels_format="csv")  # doctest: +SKIP
        >>> sorted({r["label"] for r in rows})  # doctest: +SKIP
        [0, 1]
    """
    from coreecho.data.phantom import make_phantom  # noqa: PLC0415
    from coreecho.video.io import write_video  # noqa: PLC0415

    if labels_format not in ("xlsx", "csv"):
        raise InputError("labels_format", f"expected 'xlsx' or 'csv', got {labels_format!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n={n!r}", "the number of recordings must be a positive integer")
    width = size * 4 // 3 if width is None else int(width)
    if width < size:
        raise InputError(f"width={width}", f"must be >= size ({size})")
    rng = np.random.default_rng(seed)
    order = [1, 2, 3, 5, 6, 7]  # anatomical order along the wall: septal base -> apex -> lateral base
    plan: list[tuple[str, str, int, tuple[int, ...]]] = []
    p = 0
    while len(plan) < n:
        p += 1
        mi = rng.random() < mi_fraction
        segs = [0] * 6
        if mi:
            count = int(rng.integers(1, 4))
            first = int(rng.integers(0, 6 - count + 1))
            for j in range(first, first + count):
                segs[j] = 1
        copies = 2 if rng.random() < repeat_fraction else 1
        for k in range(1, copies + 1):
            if len(plan) < n:
                plan.append((f"ES{p:04d} _4CH_{k}", f"ES{p:04d}", int(mi), tuple(segs)))
    videos = Path(root) / "HMC-QU" / "A4C"
    videos.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, patient, label, segs) in enumerate(plan):
        ef = float(rng.uniform(35.0, 60.0) if label else rng.uniform(45.0, 70.0))
        opts = {"n_frames": n_frames, "fps": fps, "heart_rate": (60.0, 90.0), "size": size}
        opts.update(phantom_options)
        cine, meta = make_phantom(ef, int(rng.integers(0, 2**63)), **opts)
        frozen = [order[j] for j in range(6) if segs[j]]
        cine = make_akinetic(cine, meta, frozen) if frozen else cine
        if width > size:
            canvas = np.zeros((cine.shape[0], size, width, 3), np.uint8)
            left = (width - size) // 2
            canvas[:, :, left:left + size] = cine
            cine = canvas
        path = write_video(videos / f"{name}.avi", cine, fps=fps)
        ed0 = meta.ed_frames[0]
        end = min(ed0 + meta.period_frames, meta.n_frames)  # 0-based exclusive -> 1-based inclusive below
        rows.append({"name": name, "patient": patient, "label": label, "segments": list(segs), "start": ed0 + 1,
                     "end": end, "ef": meta.ef, "path": str(path), "masks": i % 2 == 0})
    header = ["ECHO", *SEGMENTS, START_COLUMN, None, MASK_COLUMN]
    table = [[r["name"], *r["segments"], r["start"], r["end"], "ü" if r["masks"] else None] for r in rows]
    if labels_format == "xlsx":
        try:
            import openpyxl  # noqa: PLC0415
        except ImportError:
            raise MissingDependencyError("openpyxl", "hmcqu", "Writing HMC-QU phantoms' A4C.xlsx") from None
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = "A4C"
        ws.append(header)
        for line in table:
            ws.append(line)
        wb.save(Path(root) / "A4C.xlsx")
    else:
        with open(Path(root) / "A4C.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["" if h is None else h for h in header])
            for line in table:
                w.writerow(["" if v is None else v for v in line])
    for r in rows:
        r.pop("masks")
    return rows
