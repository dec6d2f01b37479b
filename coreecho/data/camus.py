"""CAMUS on its public on-disk layout: apical four-chamber half sequences (ED to ES) with EF and image quality.

Layout read (both releases; the patient folders may sit in ``root``, ``root/database_nifti``, ``root/database``,
``root/training`` or ``root/testing``)::

    database_nifti/patient0001/
        patient0001_4CH_half_sequence.nii.gz     the half cycle, end-diastole to end-systole (NIfTI, nibabel)
        Info_4CH.cfg                              "ED: 1", "ES: 20", "NbFrame: 20", "Sex: F", "Age: 53",
                                                  "ImageQuality: Good", "LVedv: ...", "LVesv: ...", "LVef: ..."
    training/patient0001/                         the first release (MetaImage, read without extra packages)
        patient0001_4CH_sequence.mhd + .raw
        Info_4CH.cfg

The EF is ``LVef`` of ``Info_<view>.cfg`` (``EF`` is accepted too; without either it is computed from
``LVedv``/``LVesv``). Patients whose file has no EF (the held-out test patients of the first release) are
skipped and counted in :attr:`CAMUS.skipped`.

Assumptions, all documented in ``docs/transfer.md``:

* NIfTI axes are ``(x = column, y = row, frame)`` (nibabel's order), MetaImage arrays ``[frame, row, column]``.
  With ``transpose=None`` the reader checks that the ultrasound fan opens downwards (its apex at the top) and
  swaps rows and columns when the fan opens to the side instead.
* ``ED``/``ES`` are 1-based frame numbers of the sequence. Sequences stored from ES to ED (``ED > ES``) are
  reversed so that every item runs from ED to ES (``order="ed_to_es"``; ``"file"`` keeps the stored order).
* Temporal resampling: the half sequence (typically 10–30 frames) is stretched to the model's clip length
  (``frames``, 36 for CoReEcho) by linear interpolation between neighbouring frames (``temporal="linear"``) or
  by repeating the nearest frame (``temporal="nearest"``), so one item is one clip covering ED to ES. This
  differs from EchoNet-Dynamic clips (36 frames every 4th frame at about 50 fps, 2–3 cardiac cycles): the
  pretrained model sees systole slowed down; fine-tuning adapts to it.
* Spatially, frames are cropped to the ultrasound fan, padded to a square and resized to ``size`` (112), as
  the pipeline's frame transform (:meth:`coreecho.video.pipeline.ClipPipeline.transform`) does for any video.

:class:`CAMUS` builds on :class:`~coreecho.data.sequence.SequenceDataset` (one resampled clip per item; items
follow :mod:`coreecho.data.contract`); :func:`coreecho.data.layouts.write_camus_layout` writes phantom patients
in this layout.

Example:
    >>> ds = CAMUS("CAMUS_public", quality=("good", "medium"))  # doctest: +SKIP
    >>> item = ds[0]  # doctest: +SKIP
    >>> item["video"].shape, item["patient"], item["quality"]  # doctest: +SKIP
    (torch.Size([3, 36, 112, 112]), 'patient0001', 'good')
    >>> CAMUS("CAMUS_public", clips=1)[0]["video"].shape  # evaluation mode  # doctest: +SKIP
    torch.Size([1, 3, 36, 112, 112])
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from coreecho._deprecation import deprecated_aliases
from coreecho.data import sequence
from coreecho.data.folds import Folds, camus_folds
from coreecho.data.mhd import read_mhd
from coreecho.errors import DatasetError, InputError, MissingDependencyError

__all__ = [
    "CAMUS",
    "CamusRecord",
    "camus_folds",
    "load_sequence",
    "read_cfg",
    "QUALITIES",
]

#: Image-quality grades of CAMUS, lower case.
QUALITIES = ("good", "medium", "poor")
_PATIENT_RE = re.compile(r"^patient\d+$")
_CONTAINERS = ("database_nifti", "database", "training", "testing")


# ----------------------------------------------------------------------------------------------------------
# readers


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    a = np.asarray(a, dtype=np.float64)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if lo >= 0.0 and hi <= 255.0:
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.rint((a - lo) * scale), 0, 255).astype(np.uint8)


def _fan_opens_sideways(frames: np.ndarray) -> bool:
    """Whether the ultrasound fan of ``[T, H, W]`` frames widens along the columns rather than down the rows."""
    mask = frames.max(axis=0) > 4
    scores = []
    for m in (mask, mask.T):
        widths = m.sum(axis=1).astype(np.float64)
        rows = np.flatnonzero(widths)
        if rows.size < 3:
            return False
        w = widths[rows]  # a fan widens steadily from its apex; across it the extent is symmetric
        scores.append(float(np.corrcoef(rows, w)[0, 1]) if w.std() > 0 else 0.0)
    return scores[1] > scores[0] + 0.3


def load_sequence(path: str | os.PathLike, *, transpose: bool | None = None) -> np.ndarray:
    """Frames of a CAMUS sequence file as ``uint8`` ``[T, H, W]`` (NIfTI via nibabel, MetaImage built in).

    Args:
        path: a ``.nii``/``.nii.gz`` or ``.mhd``/``.mha`` file.
        transpose: swap rows and columns (``None``: when the fan opens sideways, see the module notes).

    Raises:
        MissingDependencyError: a NIfTI file without nibabel installed (extra ``camus``).
        DatasetError: the file cannot be read or is not a 2D+time image.

    Example:
        >>> load_sequence("patient0001/patient0001_4CH_half_sequence.nii.gz").shape  # doctest: +SKIP
        (20, 843, 583)
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        try:
            import nibabel  # noqa: PLC0415
        except ImportError:
            raise MissingDependencyError("nibabel", "camus", "Reading CAMUS NIfTI files") from None
        try:
            data = np.asanyarray(nibabel.load(str(p)).dataobj)
        except Exception as err:  # nibabel raises many types for broken files
            raise DatasetError(f"{p}: cannot read it as NIfTI ({err})") from err
        data = np.asarray(data)
        if data.ndim > 3 and sum(s != 1 for s in data.shape[2:]) <= 1:  # (x, y, 1, t) or (x, y, t, 1)
            data = data.reshape(data.shape[0], data.shape[1], -1)
        if data.ndim == 2:
            data = data[:, :, None]
        if data.ndim != 3:
            raise DatasetError(f"{p}: expected a 2D+time image (x, y, frames), found shape {data.shape}")
        arr = np.transpose(data, (2, 1, 0))  # (x, y, t) -> [t, y, x]
    elif name.endswith((".mhd", ".mha")):
        arr = read_mhd(p).array
        if arr.ndim == 4 and arr.shape[-1] in (3, 4):
            arr = arr[..., 0]
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise DatasetError(f"{p}: expected a 2D+time image, found shape {arr.shape}")
    else:
        raise DatasetError(f"{p}: unknown sequence format; expected .nii, .nii.gz, .mhd or .mha")
    arr = _to_uint8(arr)
    if transpose is None:
        transpose = _fan_opens_sideways(arr)
    return np.ascontiguousarray(arr.transpose(0, 2, 1) if transpose else arr)


def read_cfg(path: str | os.PathLike) -> dict[str, str]:
    """``Key: value`` lines of a CAMUS ``Info_<view>.cfg`` file.

    Raises:
        DatasetError: the file is missing or has no ``Key: value`` line.

    Example:
        >>> read_cfg("patient0001/Info_4CH.cfg")["ImageQuality"]  # doctest: +SKIP
        'Good'
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: file not found; expected the CAMUS info file with lines such as 'ED: 1', "
                           "'ES: 20', 'ImageQuality: Good', 'LVef: 55.3'")
    out: dict[str, str] = {}
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            if key.strip():
                out[key.strip()] = value.strip()
    if not out:
        raise DatasetError(f"{p}: no 'Key: value' line found; is it a CAMUS Info_<view>.cfg file?")
    return out


# ----------------------------------------------------------------------------------------------------------
# CAMUS


@dataclass
class CamusRecord:
    """One CAMUS patient and view.

    Example:
        >>> CamusRecord("patient0001_4CH", "patient0001", Path("seq.nii.gz"), 55.0, "good", 1, 20).quality
        'good'

    Attributes:
        name: ``patientNNNN_<view>``.
        patient: ``patientNNNN``.
        path: the sequence file.
        label: EF (%).
        quality: ``"good"``, ``"medium"`` or ``"poor"`` (lower case; ``"unknown"`` when absent).
        ed, es: 1-based ED and ES frame numbers from the info file (``None`` when absent).
        info: every field of the info file.
    """

    name: str
    patient: str
    path: Path
    label: float
    quality: str
    ed: int | None = None
    es: int | None = None
    info: dict[str, str] = field(default_factory=dict)


def _find_patient_dirs(root: Path) -> list[Path]:
    dirs: dict[str, Path] = {}
    for base in [root / c for c in _CONTAINERS] + [root]:
        if base.is_dir():
            for d in sorted(base.iterdir()):
                if d.is_dir() and _PATIENT_RE.match(d.name) and d.name not in dirs:
                    dirs[d.name] = d
    return [dirs[k] for k in sorted(dirs)]


def _sequence_file(d: Path, view: str) -> Path | None:
    pid = d.name
    for suffix in ("_half_sequence.nii.gz", "_half_sequence.nii", "_sequence.nii.gz", "_sequence.nii",
                   "_half_sequence.mhd", "_sequence.mhd", "_sequence.mha"):
        p = d / f"{pid}_{view}{suffix}"
        if p.is_file():
            return p
    return None


def _cfg_float(info: dict[str, str], key: str, path: Path) -> float | None:
    if key not in info or info[key] == "":
        return None
    try:
        return float(info[key])
    except ValueError:
        raise DatasetError(f"{path}: {key} = {info[key]!r} is not a number") from None


class CAMUS(sequence.SequenceDataset):
    """CAMUS half sequences (ED to ES) with their EF, for EF regression.

    Args:
        root: the CAMUS folder (``database_nifti/``, ``training/``... or the patient folders themselves).
        patients: keep only these patients (ids like ``"patient0042"`` or numbers like ``42``).
        quality: image qualities to keep (``"good"``, ``"medium"``, ``"poor"``); ``None`` keeps all.
        view: ``"4CH"`` (apical four-chamber, CoReEcho's transfer task) or ``"2CH"``.
        order: ``"ed_to_es"`` (reverse sequences stored ES to ED) or ``"file"``.
        transpose: swap rows and columns of every sequence (``None``: decide per file from the fan).
        **kwargs: ``preprocess`` (a model's ``config.preprocessing``), ``augment``, ``clips`` (``None``: training
            mode; ``1``: evaluation mode), ``seed``, ``cache``, and overrides of the preprocessing (``frames``,
            ``size``, ``mean``, ``std``, ``temporal``, ``pad``, ``crop_sector``) of
            :class:`~coreecho.data.sequence.SequenceDataset`.

    Attributes:
        all_patients: every patient folder found (defines the official fold blocks).
        skipped: patients without an EF in their info file.

    Raises:
        DatasetError: no patient folder, a patient without sequence or info file, a malformed info file, an
            unknown quality, or no patient left after filtering.

    Example:
        >>> ds = CAMUS("CAMUS_public")  # doctest: +SKIP
        >>> folds = ds.default_folds(10)  # doctest: +SKIP
    """

    task = "regression"

    def __init__(self, root: str | os.PathLike, *, patients: Sequence[str | int] | None = None,
                 quality: Sequence[str] | str | None = ("good", "medium"), view: str = "4CH",
                 order: str = "ed_to_es", transpose: bool | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if order not in ("ed_to_es", "file"):
            raise InputError("order", f"expected 'ed_to_es' or 'file', got {order!r}")
        self.root, self.view, self.order, self.transpose = Path(root).expanduser(), view.upper(), order, transpose
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: CAMUS folder not found; expected patient folders (patient0001/...) "
                               f"in it or in {', '.join(_CONTAINERS)}/")
        wanted_q = self._qualities(quality)
        dirs = _find_patient_dirs(self.root)
        if not dirs:
            raise DatasetError(f"{self.root}: no patient folder (patientNNNN/) found here or in "
                               f"{', '.join(c + '/' for c in _CONTAINERS)}")
        self.all_patients = [d.name for d in dirs]
        if patients is not None:
            ids = [p if isinstance(p, str) else f"patient{int(p):04d}" for p in patients]
            unknown = sorted(set(ids) - set(self.all_patients))
            if unknown:
                raise DatasetError(f"{self.root}: patient(s) {', '.join(unknown[:5])} not found")
            keep = set(ids)
            dirs = [d for d in dirs if d.name in keep]
        self.skipped: list[str] = []
        for d in dirs:
            rec = self._record(d)
            if rec is None:
                self.skipped.append(d.name)
            elif wanted_q is None or rec.quality in wanted_q:
                self.records.append(rec)
        if self.skipped:
            warnings.warn(f"{self.root}: {len(self.skipped)} patient(s) have no EF in Info_{self.view}.cfg and "
                          f"were skipped (e.g. {', '.join(self.skipped[:3])})", stacklevel=2)
        if not self.records:
            raise DatasetError(f"{self.root}: no {self.view} sequence with an EF and image quality in "
                               f"{sorted(wanted_q) if wanted_q else 'any'}")

    @staticmethod
    def _qualities(quality: Sequence[str] | str | None) -> set[str] | None:
        if quality is None or quality == "all":
            return None
        items = [quality] if isinstance(quality, str) else list(quality)
        q = {str(v).strip().lower() for v in items}
        bad = sorted(q - set(QUALITIES))
        if bad:
            raise InputError("quality", f"unknown image quality {bad}; choose from {', '.join(QUALITIES)} or None")
        return q

    def _record(self, d: Path) -> CamusRecord | None:
        cfg = d / f"Info_{self.view}.cfg"
        seq = _sequence_file(d, self.view)
        if seq is None:
            raise DatasetError(f"{d}: no {self.view} sequence; expected {d.name}_{self.view}_half_sequence.nii.gz "
                               f"(or {d.name}_{self.view}_sequence.mhd + .raw)")
        info = read_cfg(cfg)
        ef = _cfg_float(info, "LVef", cfg)
        if ef is None:
            ef = _cfg_float(info, "EF", cfg)
        if ef is None:
            edv, esv = _cfg_float(info, "LVedv", cfg), _cfg_float(info, "LVesv", cfg)
            if edv is None or esv is None or edv <= 0:
                return None
            ef = 100.0 * (edv - esv) / edv
        if not np.isfinite(ef):
            raise DatasetError(f"{cfg}: the EF is not finite ({ef})")
        ed = _cfg_float(info, "ED", cfg)
        es = _cfg_float(info, "ES", cfg)
        quality = info.get("ImageQuality", "unknown").strip().lower() or "unknown"
        return CamusRecord(f"{d.name}_{self.view}", d.name, seq, float(ef), quality,
                           None if ed is None else int(ed), None if es is None else int(es), info)

    @property
    def strata(self) -> dict[str, list[str]]:
        """``{"quality": [...]}``: metrics are reported per image quality."""
        return {"quality": [r.quality for r in self.records]}

    def default_folds(self, k: int = 10, seed: int = 0) -> Folds:
        """The official CAMUS folds: consecutive blocks of the sorted patients found in the folder (``seed`` unused)."""
        return camus_folds(self.groups, k, universe=self.all_patients)

    def _source(self, index: int) -> tuple[np.ndarray, None]:
        return self.raw_frames(index), None

    def raw_frames(self, index: int) -> np.ndarray:
        """The item's raw frames, end-diastole to end-systole (``order="ed_to_es"``), as stored (uint8)."""
        rec: CamusRecord = self.records[index]
        frames = load_sequence(rec.path, transpose=self.transpose)
        if rec.ed is not None and rec.es is not None:
            n = frames.shape[0]
            lo, hi = min(rec.ed, rec.es), max(rec.ed, rec.es)
            if not (1 <= lo and hi <= n):
                raise DatasetError(f"{rec.path}: ED={rec.ed} / ES={rec.es} fall outside its {n} frames")
            frames = frames[lo - 1:hi]
            if self.order == "ed_to_es" and rec.ed > rec.es:
                frames = frames[::-1]
        return np.ascontiguousarray(frames)

    def _extra(self, index: int) -> dict[str, Any]:
        rec: CamusRecord = self.records[index]
        return {"ef": torch.tensor(rec.label, dtype=torch.float32), "quality": rec.quality}  # "ef": deprecated


#: Names that moved: the sequence base to :mod:`coreecho.data.sequence`, the writer to :mod:`coreecho.data.layouts`
#: (old names kept, deprecated, for one release).
__getattr__ = deprecated_aliases(__name__, {"SequenceDataset": "coreecho.data.sequence",
                                           "write_camus_layout": "coreecho.data.layouts"})
