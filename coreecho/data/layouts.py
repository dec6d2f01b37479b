"""Writers of synthetic datasets in the real on-disk layouts: EchoNet-Dynamic, CAMUS, HMC-QU, and DICOM files.

Every writer draws its videos with :func:`coreecho.data.phantom.make_phantom` (cines with a known ejection
fraction) and stores them exactly as the public release of the dataset is laid out, so that the readers of
:mod:`coreecho.data` (and the tests, demos and benchmarks of the library) run on them unchanged:

* :func:`write_echonet_layout`: ``FileList.csv``, ``VolumeTracings.csv`` and ``Videos/*.avi``;
* :func:`write_camus_layout`: ``database_nifti/patientNNNN/`` half sequences and ``Info_4CH.cfg`` (or the first
  release's MetaImage files);
* :func:`write_hmcqu_layout`: ``HMC-QU/A4C/*.avi`` and ``A4C.xlsx``, MI-positive recordings with akinetic wall
  segments (:func:`make_akinetic`);
* :func:`write_dicom`: one multi-frame ultrasound DICOM file.

The module is longer than most: it holds every synthetic writer of the library in one place, by design.

Example:
    >>> rows = write_echonet_layout("/tmp/echonet_phantom", 4, seed=0, n_frames=60)  # doctest: +SKIP
    >>> sorted(r["Split"] for r in rows)  # doctest: +SKIP
    ['TEST', 'TRAIN', 'TRAIN', 'VAL']
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coreecho.data.hmcqu import MASK_COLUMN, SEGMENTS, START_COLUMN
from coreecho.data.mhd import write_mhd
from coreecho.data.phantom import FILELIST_COLUMNS, TRACING_COLUMNS, make_phantom
from coreecho.errors import InputError, MissingDependencyError
from coreecho.video.io import write_video

__all__ = ["write_echonet_layout", "write_camus_layout", "write_hmcqu_layout", "write_dicom", "make_akinetic"]


# ----------------------------------------------------------------------------------------------------------
# EchoNet-Dynamic


def _split_counts(n: int, splits: Sequence[float | int]) -> tuple[int, int, int]:
    if len(splits) != 3:
        raise InputError(f"splits={splits!r}", "expected (train, val, test) fractions or counts")
    if all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in splits):
        counts = tuple(int(s) for s in splits)
        if sum(counts) != n or min(counts) < 0:
            raise InputError(f"splits={splits!r}", f"counts must be non-negative and sum to n={n}")
        return counts  # type: ignore[return-value]
    fr = np.asarray(splits, dtype=np.float64)
    if (fr < 0).any() or fr.sum() <= 0:
        raise InputError(f"splits={splits!r}", "fractions must be non-negative with a positive sum")
    fr = fr / fr.sum()
    n_train, n_val = int(round(fr[0] * n)), int(round(fr[1] * n))
    n_val = min(n_val, n - n_train)
    return n_train, n_val, n - n_train - n_val


def _fmt(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".") if np.isfinite(x) else "nan"


def write_echonet_layout(
    root: str | os.PathLike,
    n: int,
    seed: int = 0,
    *,
    splits: Sequence[float | int] = (0.75, 0.125, 0.125),
    ef_range: tuple[float, float] = (10.0, 85.0),
    n_frames: int | tuple[int, int] = (100, 200),
    progress: bool | None = None,
    **phantom_options: Any,
) -> list[dict[str, Any]]:
    """Write ``n`` phantoms in EchoNet-Dynamic's on-disk layout.

    Writes ``root/FileList.csv`` (columns ``FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,
    Split``; FileName without extension, Split ``TRAIN``/``VAL``/``TEST``), ``root/VolumeTracings.csv``
    (``FileName,X1,Y1,X2,Y2,Frame``; FileName with ``.avi``; 21 rows per traced frame, the long axis first;
    the ES frame's rows come before the ED frame's, as EchoNet-Dynamic's files list the smaller trace first)
    and ``root/Videos/<FileName>.avi`` (MJPEG at the phantom's fps). Existing files are overwritten.

    Args:
        root: output folder (created).
        n: number of videos.
        seed: seed of the whole set (names, EFs, splits and each phantom's seed).
        splits: ``(train, val, test)`` fractions, or counts summing to ``n``.
        ef_range: EFs are uniform in this range.
        n_frames: frames per video, or a range.
        progress: show a tqdm bar; default: when ``n > 20``.
        **phantom_options: passed to :func:`make_phantom` (``fps``, ``heart_rate``, ``size``...).

    Returns:
        One dict per video: the FileList row plus ``path``, ``seed``, ``ed_frame``, ``es_frame``.

    Example:
        >>> rows = write_echonet_layout("/tmp/echonet_phantom", 4, seed=0, n_frames=60)  # doctest: +SKIP
        >>> sorted(r["Split"] for r in rows)  # doctest: +SKIP
        ['TEST', 'TRAIN', 'TRAIN', 'VAL']
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n={n!r}", "the number of videos must be a positive integer")
    lo, hi = float(ef_range[0]), float(ef_range[1])
    if not (1.0 <= lo <= hi <= 95.0):
        raise InputError(f"ef_range={ef_range!r}", "expected (low, high) with 1 <= low <= high <= 95")
    counts = _split_counts(int(n), splits)
    rng = np.random.default_rng(seed)
    names: list[str] = []
    while len(names) < n:
        name = f"0X{int(rng.integers(0, 2**63)):016X}"
        if name not in names:
            names.append(name)
    efs = rng.uniform(lo, hi, size=n)
    seeds = rng.integers(0, 2**63, size=n)
    labels = np.array(["TRAIN"] * counts[0] + ["VAL"] * counts[1] + ["TEST"] * counts[2])[rng.permutation(n)]

    root = Path(root)
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    show = (n > 20) if progress is None else bool(progress)
    iterator: Any = range(n)
    if show:
        from tqdm.auto import tqdm  # noqa: PLC0415

        iterator = tqdm(iterator, total=n, desc="phantoms", unit="video")
    rows: list[dict[str, Any]] = []
    tracing_rows: list[list[str]] = []
    for i in iterator:
        frames, meta = make_phantom(float(efs[i]), int(seeds[i]), n_frames=n_frames, **phantom_options)
        path = write_video(root / "Videos" / f"{names[i]}.avi", frames, fps=meta.fps)
        row = {
            "FileName": names[i], "EF": meta.ef, "ESV": meta.esv, "EDV": meta.edv,
            "FrameHeight": int(frames.shape[1]), "FrameWidth": int(frames.shape[2]),
            "FPS": int(meta.fps) if float(meta.fps).is_integer() else meta.fps,
            "NumberOfFrames": meta.n_frames, "Split": str(labels[i]),
        }
        rows.append({**row, "path": str(path), "seed": int(seeds[i]), "ed_frame": meta.traced_frames[0],
                     "es_frame": meta.traced_frames[1]})
        ed, es = meta.traced_frames
        for frame in (es, ed):
            for x1, y1, x2, y2 in meta.tracings[frame]:
                tracing_rows.append([f"{names[i]}.avi", _fmt(x1), _fmt(y1), _fmt(x2), _fmt(y2), str(frame)])

    with open(root / "FileList.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(FILELIST_COLUMNS)
        for r in rows:
            w.writerow([r["FileName"], _fmt(r["EF"]), _fmt(r["ESV"]), _fmt(r["EDV"]), r["FrameHeight"],
                        r["FrameWidth"], r["FPS"], r["NumberOfFrames"], r["Split"]])
    with open(root / "VolumeTracings.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(TRACING_COLUMNS)
        w.writerows(tracing_rows)
    return rows


# ----------------------------------------------------------------------------------------------------------
# CAMUS


def _write_nifti(path: Path, frames: np.ndarray, spacing: tuple[float, float]) -> None:
    try:
        import nibabel  # noqa: PLC0415
    except ImportError:
        raise MissingDependencyError("nibabel", "camus", "Writing CAMUS phantoms as NIfTI") from None
    data = np.ascontiguousarray(np.transpose(frames, (2, 1, 0)))  # [t, y, x] -> (x, y, t)
    affine = np.diag([spacing[1], spacing[0], 1.0, 1.0])
    img = nibabel.Nifti1Image(data, affine)
    img.header.set_zooms((spacing[1], spacing[0], 1.0))
    nibabel.save(img, str(path))


def write_camus_layout(root: str | os.PathLike, n: int, seed: int = 0, *, fmt: str = "nifti", view: str = "4CH",
                       ef_range: tuple[float, float] = (20.0, 75.0), size: int = 112, width: int | None = None,
                       qualities: Sequence[float] = (0.45, 0.4, 0.15), reverse_fraction: float = 0.2,
                       **phantom_options: Any) -> list[dict[str, Any]]:
    """Write ``n`` phantom patients in CAMUS's layout (half sequences ED to ES, ``Info_<view>.cfg``).

    ``fmt="nifti"`` writes ``root/database_nifti/patientNNNN/`` with ``patientNNNN_<view>_half_sequence.nii.gz``,
    ``patientNNNN_<view>_ED.nii.gz``, ``patientNNNN_<view>_ES.nii.gz`` and ``Info_<view>.cfg`` (needs nibabel);
    ``fmt="mhd"`` writes the first release's ``root/training/patientNNNN/patientNNNN_<view>_sequence.mhd`` +
    ``.raw`` and ``Info_<view>.cfg``. Segmentation masks are not written.

    Each patient is a :func:`coreecho.data.phantom.make_phantom` cine (near 50 fps) cut from its first ED frame to
    the following ES frame; frames are grey, ``size`` rows by ``width`` columns (the fan centred, black
    margins). Image quality is drawn with probabilities ``qualities`` (good, medium, poor); poor patients get
    more noise and a lower gain, medium ones a little of both. A fraction ``reverse_fraction`` of the sequences is
    stored ES to ED (``ED`` equal to ``NbFrame`` and ``ES: 1`` in the info file), as some CAMUS files are.

    Args:
        root: output folder.
        n: number of patients (``patient0001`` ...).
        seed: seed of the whole set.
        fmt: ``"nifti"`` or ``"mhd"``.
        view: view name in the file names.
        ef_range: EFs are uniform in this range.
        size: frame height (the phantom's side).
        width: frame width (default ``size + size // 4``; must be >= ``size``).
        qualities: probabilities of good, medium and poor.
        reverse_fraction: fraction of sequences stored ES to ED.
        **phantom_options: passed to :func:`~coreecho.data.phantom.make_phantom`.

    Returns:
        One dict per patient: ``patient``, ``ef``, ``edv``, ``esv``, ``quality``, ``n_frames``, ``reversed``,
        ``path``.

    Example:
        >>> rows = write_camus_layout("/tmp/camus_phantom", 4, seed=0, fmt="mhd")  # doctest: +SKIP
        >>> sorted(rows[0])[:3]  # doctest: +SKIP
        ['edv', 'ef', 'esv']
    """
    if fmt not in ("nifti", "mhd"):
        raise InputError("fmt", f"expected 'nifti' or 'mhd', got {fmt!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n={n!r}", "the number of patients must be a positive integer")
    width = size + size // 4 if width is None else int(width)
    if width < size:
        raise InputError(f"width={width}", f"must be >= size ({size})")
    q = np.asarray(qualities, dtype=np.float64)
    if q.shape != (3,) or (q < 0).any() or q.sum() <= 0:
        raise InputError("qualities", "expected 3 non-negative probabilities (good, medium, poor)")
    rng = np.random.default_rng(seed)
    efs = rng.uniform(ef_range[0], ef_range[1], size=n)
    seeds = rng.integers(0, 2**63, size=n)
    grades = rng.choice(3, size=n, p=q / q.sum())
    reverse = rng.random(n) < reverse_fraction
    sexes = rng.choice(["F", "M"], size=n)
    ages = rng.integers(20, 90, size=n)
    base = Path(root) / ("database_nifti" if fmt == "nifti" else "training")
    rows = []
    for i in range(n):
        pid = f"patient{i + 1:04d}"
        grade = ("Good", "Medium", "Poor")[int(grades[i])]
        opts = {"n_frames": (70, 90), "heart_rate": (55.0, 95.0), "size": size,
                "noise": (2.0, 6.0, 14.0)[int(grades[i])], "gain": ((0.9, 1.2), (0.75, 1.0), (0.55, 0.8))[int(grades[i])]}
        opts.update(phantom_options)
        cine, meta = make_phantom(float(efs[i]), int(seeds[i]), **opts)
        ed, es = meta.traced_frames
        seq = cine[ed:es + 1, :, :, 0]
        if width > size:
            left = (width - size) // 2
            canvas = np.zeros((seq.shape[0], size, width), np.uint8)
            canvas[:, :, left:left + size] = seq
            seq = canvas
        nb = seq.shape[0]
        if reverse[i]:
            seq = seq[::-1]
            ed_no, es_no = nb, 1
        else:
            ed_no, es_no = 1, nb
        d = base / pid
        d.mkdir(parents=True, exist_ok=True)
        spacing = (meta.cm_per_pixel * 10.0, meta.cm_per_pixel * 10.0)  # mm
        if fmt == "nifti":
            path = d / f"{pid}_{view}_half_sequence.nii.gz"
            _write_nifti(path, np.ascontiguousarray(seq), spacing)
            _write_nifti(d / f"{pid}_{view}_ED.nii.gz", np.ascontiguousarray(seq[ed_no - 1:ed_no]), spacing)
            _write_nifti(d / f"{pid}_{view}_ES.nii.gz", np.ascontiguousarray(seq[es_no - 1:es_no]), spacing)
        else:
            path = write_mhd(d / f"{pid}_{view}_sequence.mhd", np.ascontiguousarray(seq),
                             spacing=(spacing[1], spacing[0], 1.0))
        lines = [f"ED: {ed_no}", f"ES: {es_no}", f"NbFrame: {nb}", f"Sex: {sexes[i]}", f"Age: {int(ages[i])}",
                 f"ImageQuality: {grade}", f"LVedv: {meta.edv:.2f}", f"LVesv: {meta.esv:.2f}", f"LVef: {meta.ef:.2f}"]
        (d / f"Info_{view}.cfg").write_text("\n".join(lines) + "\n")
        rows.append({"patient": pid, "ef": round(meta.ef, 2), "edv": meta.edv, "esv": meta.esv,
                     "quality": grade.lower(), "n_frames": nb, "reversed": bool(reverse[i]), "path": str(path)})
    return rows


# ----------------------------------------------------------------------------------------------------------
# HMC-QU


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


# ----------------------------------------------------------------------------------------------------------
# DICOM


def write_dicom(path: str | os.PathLike, frames: np.ndarray, *, fps: float | None = None,
                photometric: str | None = None, pixels: bytes | None = None, **attributes: Any) -> Path:
    """Write frames as an uncompressed multi-frame ultrasound DICOM (Explicit VR Little Endian; needs pydicom).

    For phantoms in DICOM form (a folder of "studies") and for tests of the DICOM reader, including lying headers.

    Args:
        path: the file to write (folders are created).
        frames: ``(T, H, W)`` grey or ``(T, H, W, 3)`` frames, uint8 or uint16.
        fps: written as ``FrameTime`` (ms per frame) when given.
        photometric: ``PhotometricInterpretation`` (default ``MONOCHROME2`` for grey, ``RGB`` for 3 samples).
        pixels: raw ``PixelData`` bytes instead of ``frames`` (e.g. fewer frames than the header declares).
        **attributes: DICOM attributes set last (they override, e.g. ``NumberOfFrames=10**9``).

    Returns:
        The path.

    Example:
        >>> frames, meta = make_phantom(ef=50, seed=0)
        >>> write_dicom("/tmp/study/a4c.dcm", frames[..., 0], fps=meta.fps)  # doctest: +SKIP
        PosixPath('/tmp/study/a4c.dcm')
    """
    from coreecho.video.dicom import import_pydicom  # noqa: PLC0415

    import_pydicom(str(path))
    from pydicom.dataset import Dataset, FileMetaDataset  # noqa: PLC0415
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid  # noqa: PLC0415

    arr = np.asarray(frames)
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] != 3) or arr.dtype not in (np.uint8, np.uint16):
        raise InputError(str(path), f"expected uint8/uint16 frames (T, H, W) or (T, H, W, 3), got {arr.dtype} "
                                    f"{arr.shape}")
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = UltrasoundMultiFrameImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    t, h, w = arr.shape[:3]
    samples = 3 if arr.ndim == 4 else 1
    ds.NumberOfFrames, ds.Rows, ds.Columns, ds.SamplesPerPixel = t, h, w, samples
    ds.PhotometricInterpretation = photometric or ("RGB" if samples == 3 else "MONOCHROME2")
    ds.BitsAllocated = ds.BitsStored = arr.dtype.itemsize * 8
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
    if samples == 3:
        ds.PlanarConfiguration = 0
    if fps is not None:
        ds.FrameTime = f"{1000.0 / fps:.4f}"
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(arr).tobytes() if pixels is None else pixels
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out
