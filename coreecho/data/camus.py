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
  :func:`coreecho.video.prepare_frames` does for any video.

This module also holds :class:`SequenceDataset`, the base of the CAMUS and HMC-QU datasets (one resampled clip
per item, optional pad-and-crop augmentation, in-memory cache), and :func:`write_camus_layout`, which writes
phantom patients in the CAMUS layout.

Example:
    >>> ds = CAMUS("CAMUS_public", quality=("good", "medium"))  # doctest: +SKIP
    >>> item = ds[0]  # doctest: +SKIP
    >>> item["video"].shape, item["patient"], item["quality"]  # doctest: +SKIP
    (torch.Size([3, 36, 112, 112]), 'patient0001', 'good')
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

from coreecho.data.folds import Folds, camus_folds
from coreecho.data.pipelined import PipelineDataset, resolve_preprocess
from coreecho.errors import DatasetError, InputError, MissingDependencyError
from coreecho.models.config import PreprocessConfig

__all__ = [
    "CAMUS",
    "CamusRecord",
    "SequenceDataset",
    "camus_folds",
    "load_sequence",
    "read_cfg",
    "write_camus_layout",
    "QUALITIES",
]

#: Image-quality grades of CAMUS, lower case.
QUALITIES = ("good", "medium", "poor")
_PATIENT_RE = re.compile(r"^patient\d+$")
_CONTAINERS = ("database_nifti", "database", "training", "testing")


# ----------------------------------------------------------------------------------------------------------
# shared helpers


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
        from coreecho.data.mhd import read_mhd  # noqa: PLC0415

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
# the base dataset


class SequenceDataset(PipelineDataset):
    """One clip per item, through the one input pipeline: the whole sequence resampled to ``frames`` frames.

    Subclasses fill :attr:`records` (objects with ``name``, ``patient`` and ``label``) and implement
    :meth:`_source` (a path or an array of raw frames, and an optional frame window). Items are dicts with
    ``"video"`` (float32 ``(3, frames, size, size)``), ``"label"`` (float32 for regression, int64 for
    classification), ``"name"``, ``"patient"`` and ``"index"``, plus what :meth:`_extra` adds.

    The preprocessing is a :class:`~coreecho.models.config.PreprocessConfig` with ``sampling="sequence"`` unless
    the overrides say otherwise; a model fine-tuned on such a dataset saves it, so ``predict_ef`` on that model
    resamples whole sequences too.

    Example:
        >>> import numpy as np
        >>> class Toy(SequenceDataset):
        ...     def __init__(self):
        ...         super().__init__(frames=4, size=32)
        ...         self.records = [CamusRecord("a", "p1", None, 50.0, "good")]
        ...     def _source(self, index):
        ...         return np.full((3, 40, 40), 100, np.uint8), None
        >>> Toy()[0]["video"].shape
        torch.Size([3, 4, 32, 32])

    Attributes:
        task: ``"regression"`` or ``"classification"``.
        augment: pad each clip by ``pad`` pixels and crop back at a random offset (seeded by
            ``(seed, epoch, index)``; see :meth:`set_epoch`).
        strata: name → per-item values that metrics are broken down by (e.g. ``"quality"``).
    """

    task = "regression"

    def __init__(self, *, preprocess: PreprocessConfig | None = None, augment: bool = False, seed: int = 0,
                 cache: bool = True, backend: str = "auto", limits: Any = None, **overrides: Any):
        from coreecho.video.pipeline import ClipPipeline  # noqa: PLC0415

        pre = resolve_preprocess(preprocess, {"sampling": "sequence", **overrides})
        self.preprocess = pre
        self.seed, self.cache = seed, bool(cache)
        # pixels come from the test-time pipeline (cached when deterministic); augmentation is the train one's
        self._eval = ClipPipeline(pre, train=False, clips=1, backend=backend, limits=limits)
        self.pipeline = ClipPipeline(pre, train=bool(augment), clips=1, backend=backend, limits=limits)
        self.epoch = 0
        self.records: list[Any] = []
        self._cache: dict[int, np.ndarray] = {}

    # -------------------------------------------------------------- subclass API
    def _source(self, index: int) -> tuple[Any, tuple[int, int] | None]:  # pragma: no cover - abstract
        """``(video, window)``: a path or raw frames, and ``(first, end)`` source frames to read (or ``None``)."""
        raise NotImplementedError

    def _extra(self, index: int) -> dict[str, Any]:
        return {}

    # -------------------------------------------------------------- public
    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        """Per-item labels (float64 for regression, int64 for classification)."""
        dtype = np.int64 if self.task == "classification" else np.float64
        return np.array([r.label for r in self.records], dtype=dtype)

    @property
    def groups(self) -> list[str]:
        """Per-item patient ids (folds keep patients whole)."""
        return [r.patient for r in self.records]

    @property
    def names(self) -> list[str]:
        """Per-item names."""
        return [r.name for r in self.records]

    @property
    def strata(self) -> dict[str, list[str]]:
        """Name → per-item group values that metrics are broken down by."""
        return {}

    def default_folds(self, k: int, seed: int = 0) -> Folds:  # pragma: no cover - overridden
        """The dataset's cross-validation protocol."""
        from coreecho.data.folds import group_folds  # noqa: PLC0415

        labels = self.labels if self.task == "classification" else None
        return group_folds(self.groups, k, labels=labels, seed=seed)

    def clip(self, index: int) -> np.ndarray:
        """The preprocessed ``uint8`` clip ``[frames, size, size, 3]`` of an item (before augmentation)."""
        if index in self._cache:
            c = self._cache[index]
        else:
            video, window = self._source(index)
            try:
                c = self._eval(video, 1, name=self.records[index].name, window=window).pixels[0]
            finally:
                if hasattr(video, "close"):
                    video.close()
            if (c[..., 0] == c[..., 1]).all() and (c[..., 0] == c[..., 2]).all():
                c = np.ascontiguousarray(c[..., 0])  # grey: keep one channel (a third of the memory)
            if self.cache and self.preprocess.sampling == "sequence":
                self._cache[index] = c
        return np.repeat(c[..., None], 3, axis=-1) if c.ndim == 3 else c

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} items")
        rec = self.records[index]
        rng = np.random.default_rng([int(self.seed or 0) & 0xFFFFFFFF, self.epoch, index, 0xCA])
        x, _ = self.pipeline.finish(self.clip(index)[None], rng)
        dtype = torch.int64 if self.task == "classification" else torch.float32
        return {"video": x[0], "label": torch.tensor(rec.label, dtype=dtype), "name": rec.name,
                "patient": rec.patient, "index": index, **self._extra(index)}


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


class CAMUS(SequenceDataset):
    """CAMUS half sequences (ED to ES) with their EF, for EF regression.

    Args:
        root: the CAMUS folder (``database_nifti/``, ``training/``... or the patient folders themselves).
        patients: keep only these patients (ids like ``"patient0042"`` or numbers like ``42``).
        quality: image qualities to keep (``"good"``, ``"medium"``, ``"poor"``); ``None`` keeps all.
        view: ``"4CH"`` (apical four-chamber, CoReEcho's transfer task) or ``"2CH"``.
        order: ``"ed_to_es"`` (reverse sequences stored ES to ED) or ``"file"``.
        transpose: swap rows and columns of every sequence (``None``: decide per file from the fan).
        **kwargs: ``preprocess`` (a model's ``config.preprocessing``), ``augment``, ``seed``, ``cache``, and
            overrides of the preprocessing (``frames``, ``size``, ``mean``, ``std``, ``temporal``, ``pad``,
            ``crop_sector``) of :class:`SequenceDataset`.

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
        return {"ef": torch.tensor(rec.label, dtype=torch.float32), "quality": rec.quality}


# ----------------------------------------------------------------------------------------------------------
# phantom writer


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
    from coreecho.data.mhd import write_mhd  # noqa: PLC0415
    from coreecho.data.phantom import make_phantom  # noqa: PLC0415

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
