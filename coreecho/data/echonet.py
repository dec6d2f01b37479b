"""EchoNet-Dynamic on its real on-disk layout, and a generic CSV-listed video regression dataset.

The EchoNet-Dynamic folder holds ``FileList.csv`` (``FileName, EF, ..., Split``), ``VolumeTracings.csv``
(``FileName, X1, Y1, X2, Y2, Frame``) and ``Videos/*.avi``. As in the official CoReEcho code, videos with fewer
than two distinct traced frames in ``VolumeTracings.csv`` are dropped (this leaves 1,276 test videos).

Items go through the one input pipeline (:class:`coreecho.video.pipeline.ClipPipeline`, built from a
:class:`~coreecho.models.config.PreprocessConfig`), so a dataset item and ``predict_ef`` see the same tensor for the
same video and starts. Clip sampling follows the official recipe: a clip is ``frames`` frames taken every
``stride`` frames; a video shorter than ``frames * stride`` is zero-padded at the end (in pixel space, before
normalisation) to that length; a random start is drawn uniformly from ``0 .. padded_length - (frames - 1) * stride
- 1``. Frames that are not ``size`` x ``size`` are cropped to the ultrasound fan, padded to a square and resized.
With ``augment=True`` every clip is zero-padded by ``pad`` pixels on each side and cropped back to ``size`` at a
random offset, the same offset for all frames of the clip. Pixels are then normalised per channel with
``mean``/``std`` (0–255 units). Only the frames a clip needs are decoded.

Items follow the dataset item contract (:mod:`coreecho.data.contract`); they are dicts:

* ``"video"``: float32 clips. Training mode (``clips=None``) gives ``(3, T, S, S)`` for ``views=1`` and
  ``(V, 3, T, S, S)`` for ``views=V > 1``; evaluation mode (``clips=k``, ``"all"``, ``"every"`` or ``starts=...``)
  always gives ``(K, 3, T, S, S)``.
* ``"label"``: the label (float32 scalar tensor, EF in %); ``"name"``: the file name (``NAME.avi``);
  ``"starts"``: int64 start frame of each clip; ``"index"``: the item index.
* ``"ef"``: the same label under its old key (deprecated; read ``"label"``).

With ``dataset.handover = "pixels"`` items carry the uint8 clips (``"pixels"``), the crop offsets drawn for them
(``"offsets"``) and ``"norm"`` instead of ``"video"``; :func:`coreecho.data.pipelined.batch_clips` makes the same
``"video"`` from a collated batch of them on the device (the training loop does this).

The default DataLoader collate stacks training items; :func:`coreecho.data.contract.collate_items` collates
evaluation items with any clip counts (:meth:`ClipDataset.loader` uses it for ``clips="all"``/``"every"``).

Randomness is a pure function of ``(seed, epoch, index)`` (:meth:`ClipDataset.set_epoch`), so items are identical
whatever the number of DataLoader workers or the order in which they are requested, and a resumed training run
sees the same clips. With ``seed=None`` every call draws fresh OS entropy (also worker-safe).

Example:
    >>> from coreecho.data.echonet import EchoNetDynamic
    >>> ds = EchoNetDynamic("EchoNet-Dynamic", "train", views=2, augment=True)  # doctest: +SKIP
    >>> ds[0]["video"].shape  # doctest: +SKIP
    torch.Size([2, 3, 36, 112, 112])
    >>> loader = ds.loader(batch_size=16, shuffle=True, num_workers=4)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from coreecho._warnings import warn_user
from coreecho.data.contract import collate_items
from coreecho.data.pipelined import HANDOVERS, PipelineDataset, check_clips, resolve_preprocess
from coreecho.errors import DatasetError, InputError
from coreecho.models.config import PreprocessConfig
from coreecho.seeding import rng as seeded_rng
from coreecho.video.pipeline import ClipPipeline

__all__ = ["ClipDataset", "EchoNetDynamic", "VideoRegressionDataset", "VideoRecord", "collate_clips",
           "read_csv_table", "SPLITS"]

#: Split names of ``FileList.csv`` (compared case-insensitively); ``"all"`` selects every row.
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset.

    Attributes:
        name: the name used in outputs and starts files (``NAME.avi`` for EchoNet).
        path: the video file.
        label: the regression target (EF in %).
    """

    name: str
    path: Path
    label: float


def read_csv_table(path: Path, required: Sequence[str], what: str) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts, checking that it exists and has the ``required`` columns.

    Raises:
        DatasetError: the file is missing or unreadable, or a required column is absent (the message names the
            file, the missing columns and the columns found).

    Example:
        >>> read_csv_table(Path("nope.csv"), ["a"], "a table")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        DatasetError: nope.csv: ...
    """
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; expected {what} with columns {', '.join(required)}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{path}: cannot read it as CSV ({err})") from err
    missing = [c for c in required if c not in columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; expected {what} with columns "
                           f"{', '.join(required)}, found {', '.join(columns) or 'no header'}")
    return rows


def _float(value: str, path: Path, row: int, column: str) -> float:
    try:
        out = float(value)
    except ValueError:
        raise DatasetError(f"{path}: row {row + 2}, column {column}: expected a number, found {value!r}") from None
    if not np.isfinite(out):
        raise DatasetError(f"{path}: row {row + 2}, column {column}: expected a finite number, found {value!r}")
    return out


def collate_clips(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Deprecated: use :func:`coreecho.data.contract.collate_items` (this adds the old ``"ef"`` key to its batch).

    Example:
        >>> import torch, warnings
        >>> a = {"video": torch.zeros(2, 3, 4, 8, 8), "label": torch.tensor(50.), "name": "a.avi",
        ...      "starts": torch.tensor([0, 4]), "index": 0}
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     collate_clips([a])["ef"].tolist()
        [50.0]
    """
    warn_user("coreecho.data.echonet.collate_clips is deprecated; use coreecho.data.contract.collate_items "
              "(its batch has 'label' instead of 'ef')", DeprecationWarning)
    out = collate_items(items)
    out["ef"] = out["label"]
    return out


class ClipDataset(PipelineDataset):
    """Clips of labelled videos through the model's :class:`~coreecho.video.pipeline.ClipPipeline` (base class).

    Subclasses fill :attr:`records`. See the module docstring for the item format. The preprocessing is one
    :class:`~coreecho.models.config.PreprocessConfig` (pass a model's ``config.preprocessing`` to feed the data
    exactly as the model was trained); the keyword overrides below replace fields of it.

    Args:
        records: the videos.
        preprocess: clip length, stride, size, mean/std, sampling policy, augmentation padding (default: the
            CoReEcho recipe, :class:`~coreecho.models.config.PreprocessConfig`).
        views: clips per item in training mode (2 for stage 1, 1 for stage 2).
        augment: zero-pad by ``preprocess.pad`` pixels and random-crop back (same offset for a clip's frames).
        clips: ``None`` (training mode: ``views`` random clips), an int ``k`` (``k`` clips chosen by
            ``clip_policy``), ``"all"`` (non-overlapping clips covering the video) or ``"every"`` (every valid
            start); ``"all"``/``"every"`` and ``clip_policy="even"`` use the same starts as inference.
        clip_policy: for ``clips=k``: ``"random"`` (uniform random starts, the official validation) or ``"even"``
            (k evenly spaced starts).
        starts: fixed starts per video (``{name: [s1, s2, s3]}``, e.g. the official test starts); names match with
            or without the ``.avi`` extension. Overrides ``clips``.
        seed: base seed of the per-item randomness; ``None`` for fresh randomness each call.
        backend: video decoder (see :func:`coreecho.video.open_video`).
        limits: reader and clip-batch size limits (:class:`coreecho.video.Limits`).
        **overrides: fields of ``preprocess`` to replace (``frames``, ``stride``, ``size``, ``mean``, ``std``,
            ``pad``, ``crop_sector``, ``sampling``, ``temporal``, ``fps``).
    """

    def __init__(self, records: Sequence[VideoRecord], *, preprocess: PreprocessConfig | None = None,
                 views: int = 1, augment: bool = False, clips: int | str | None = None,
                 starts: Mapping[str, Sequence[int]] | None = None, clip_policy: str = "random",
                 seed: int | None = 0, backend: str = "auto", limits: Any = None, **overrides: Any):
        if isinstance(views, bool) or not isinstance(views, int) or views < 1:
            raise InputError("views", f"expected a positive integer, got {views!r}")
        check_clips(clips)
        if clip_policy not in ("random", "even"):
            raise InputError("clip_policy", f"expected 'random' or 'even', got {clip_policy!r}")
        pre = resolve_preprocess(preprocess, overrides)
        self.records = list(records)
        self.preprocess = pre
        self.views = int(views)
        self.pipeline = ClipPipeline(pre, train=bool(augment), backend=backend, limits=limits)
        self.clips = clips
        self.clip_policy = clip_policy
        self.starts: dict[str, list[int]] | None = None
        self.set_starts(starts)
        self.seed = seed
        self.epoch = 0

    # ------------------------------------------------------------------ public helpers
    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        """The labels of all records (float64), e.g. for the mean-predictor baseline."""
        return np.array([r.label for r in self.records], dtype=np.float64)

    @property
    def names(self) -> list[str]:
        """The record names, in order."""
        return [r.name for r in self.records]

    @property
    def span(self) -> int:
        """Frames covered by one clip: ``(frames - 1) * stride + 1``."""
        return (self.frames - 1) * self.stride + 1

    def num_starts(self, n_frames: int) -> int:
        """Number of valid starts of a video of ``n_frames`` frames after the official end padding."""
        from coreecho.video.sampling import max_start

        return max_start(n_frames, self.frames, self.stride) + 1

    def loader(self, batch_size: int, *, shuffle: bool = False, num_workers: int = 0, pin_memory: bool | None = None,
               drop_last: bool = False, sampler: Any = None, **kwargs: Any) -> DataLoader:
        """A :class:`~torch.utils.data.DataLoader` over this dataset.

        ``pin_memory=None`` pins when CUDA is available. ``clips="all"``/``"every"`` use
        :func:`~coreecho.data.contract.collate_items` (items have different clip counts).
        """
        if pin_memory is None:
            pin_memory = torch.cuda.is_available()
        if self.clips in ("all", "every") and "collate_fn" not in kwargs:
            kwargs["collate_fn"] = collate_items
        return DataLoader(self, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
                          sampler=sampler, num_workers=num_workers, pin_memory=pin_memory, drop_last=drop_last,
                          persistent_workers=False, **kwargs)

    # ------------------------------------------------------------------ items
    def clip_policy_of(self, index: int) -> Any:
        """The clip argument of the pipeline for an item (fixed starts, random, even, all, every)."""
        if self.starts is not None:
            return self.starts[_stem(self.records[index].name)]
        if self.clips is None:
            return f"random:{self.views}"
        if isinstance(self.clips, int) and self.clip_policy == "random":
            return f"random:{self.clips}"
        return self.clips

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} videos")
        rec = self.records[index]
        rng = np.random.default_rng() if self.seed is None else seeded_rng(self.seed, self.epoch, index, 0x0EC0)
        if self.handover not in HANDOVERS:
            raise InputError("handover", f"must be one of {list(HANDOVERS)}, got {self.handover!r}")
        pixels = self.handover == "pixels"
        batch = self.pipeline(rec.path, self.clip_policy_of(index), rng=rng, output="pixels" if pixels else "tensor")
        one = self.clips is None and self.starts is None and self.views == 1  # training mode, one view: no K axis
        label = torch.tensor(rec.label, dtype=torch.float32)
        item: dict[str, Any] = {"label": label, "name": rec.name,
                                "starts": torch.as_tensor(batch.starts, dtype=torch.int64), "index": index, "ef": label}
        if not pixels:
            item["video"] = batch.x[0] if one else batch.x  # float32 [K, 3, T, S, S]
            return item
        k = len(batch.pixels)
        offsets = torch.zeros((k, 2), dtype=torch.int64) if batch.offsets is None else torch.from_numpy(batch.offsets)
        item["pixels"] = torch.from_numpy(batch.pixels[0] if one else batch.pixels)  # uint8 [K, T, S, S, 3]
        item["offsets"] = offsets[0] if one else offsets
        item["norm"] = torch.tensor([self.preprocess.mean, self.preprocess.std], dtype=torch.float64)
        return item

    def set_starts(self, starts: Mapping[str, Sequence[int]] | None) -> None:
        """Fix the clip starts of every video (``{name: [s1, s2, ...]}``, names with or without ``.avi``), e.g.
        the official test starts; ``None`` goes back to ``clips``. Fixed starts put the dataset in evaluation mode.

        Raises:
            InputError: a start that is not a non-negative integer.
            DatasetError: a video of the dataset without an entry.

        Example:
            >>> ds = EchoNetDynamic("EchoNet-Dynamic", "test")  # doctest: +SKIP
            >>> ds.set_starts({"0X1A.avi": [0, 40, 80], "0X2B": [3, 50, 97]})  # doctest: +SKIP
        """
        self.starts = None if starts is None else self._starts_table(starts)

    def _index_starts(self, starts: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
        """Deprecated: call :meth:`set_starts`."""
        warn_user("ClipDataset._index_starts is deprecated; call dataset.set_starts(starts)", DeprecationWarning)
        return self._starts_table(starts)

    def _starts_table(self, starts: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
        table = {}
        for key, value in starts.items():
            arr = np.asarray(value).reshape(-1)
            if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0:
                raise InputError(f"starts[{key!r}]", f"expected non-negative integer starts, got {value!r}")
            table[_stem(str(key))] = [int(v) for v in arr]
        missing = [r.name for r in self.records if _stem(r.name) not in table]
        if missing:
            raise DatasetError(f"the starts file has no entry for {len(missing)} of {len(self.records)} videos "
                               f"(e.g. {', '.join(missing[:3])}); it must list every video of the split")
        return table


def _stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".avi") else name


class EchoNetDynamic(ClipDataset):
    """The EchoNet-Dynamic dataset (``FileList.csv``, ``VolumeTracings.csv``, ``Videos/``).

    Args:
        root: the dataset folder.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (case-insensitive; matched against ``Split``).
        min_traced_frames: drop videos with fewer distinct traced frames in ``VolumeTracings.csv`` (official: 2;
            ``0`` keeps every video and does not read the tracings).
        label: the ``FileList.csv`` column to regress (``"EF"``; ``"ESV"``/``"EDV"`` also work).
        **kwargs: clip options of :class:`ClipDataset` (``frames``, ``stride``, ``views``, ``augment``, ``pad``,
            ``mean``, ``std``, ``clips``, ``starts``, ``seed``, ...).

    Raises:
        DatasetError: a missing folder, file or column, an unknown split, a split with no usable video, or video
            files listed but absent.

    Example:
        >>> ds = EchoNetDynamic("EchoNet-Dynamic", "test", clips=3)  # doctest: +SKIP
        >>> len(ds), ds[0]["video"].shape  # doctest: +SKIP
        (1276, torch.Size([3, 3, 36, 112, 112]))
    """

    FILELIST = "FileList.csv"
    TRACINGS = "VolumeTracings.csv"
    VIDEOS = "Videos"

    def __init__(self, root: str | os.PathLike, split: str = "train", *, min_traced_frames: int = 2,
                 label: str = "EF", **kwargs: Any):
        self.root = Path(root).expanduser()
        self.split = str(split).lower()
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder not found; expected the EchoNet-Dynamic folder with "
                               f"{self.FILELIST}, {self.TRACINGS} and {self.VIDEOS}/")
        records = self._records(min_traced_frames, label)
        super().__init__(records, **kwargs)

    def _records(self, min_traced_frames: int, label: str) -> list[VideoRecord]:
        flist = self.root / self.FILELIST
        rows = read_csv_table(flist, ["FileName", label, "Split"], "the EchoNet-Dynamic file list")
        found = sorted({r["Split"].lower() for r in rows})
        if self.split != "all" and self.split not in found:
            raise DatasetError(f"{flist}: no video in split {self.split!r}; the Split column holds "
                               f"{', '.join(found) or 'nothing'} (choose one of those or 'all')")
        rows = [(i, r) for i, r in enumerate(rows) if self.split == "all" or r["Split"].lower() == self.split]
        traced = self._traced_frames() if min_traced_frames > 0 else None
        videos = self.root / self.VIDEOS
        if not videos.is_dir():
            raise DatasetError(f"{videos}: folder not found; expected the videos of {flist} there")
        records, absent = [], []
        for i, row in rows:
            stem = _stem(row["FileName"])
            if traced is not None and traced.get(stem, 0) < min_traced_frames:
                continue
            name = row["FileName"] if Path(row["FileName"]).suffix else row["FileName"] + ".avi"
            path = videos / name
            if not path.is_file():
                absent.append(name)
                continue
            records.append(VideoRecord(name, path, _float(row[label], flist, i, label)))
        if absent:
            raise DatasetError(f"{videos}: {len(absent)} video(s) listed in {flist.name} are missing (e.g. "
                               f"{', '.join(absent[:3])}); copy them or fix the file list")
        if not records:
            raise DatasetError(f"{flist}: split {self.split!r} has no video with at least {min_traced_frames} "
                               f"traced frames in {self.TRACINGS}")
        return records

    def _traced_frames(self) -> dict[str, int]:
        path = self.root / self.TRACINGS
        rows = read_csv_table(path, ["FileName", "Frame"], "the EchoNet-Dynamic volume tracings")
        frames: dict[str, set[str]] = {}
        for row in rows:
            frames.setdefault(_stem(row["FileName"]), set()).add(row["Frame"])
        return {k: len(v) for k, v in frames.items()}


class VideoRegressionDataset(ClipDataset):
    """Any videos listed in a CSV file with one numeric label each.

    Args:
        csv_path: the CSV file.
        root: folder that relative paths are resolved against (default: the CSV's folder).
        path_column: column holding the video path.
        label_column: column holding the label.
        **kwargs: clip options of :class:`ClipDataset`.

    Raises:
        DatasetError: the CSV or a column is missing, a label is not a number, or a video file is absent.

    Example:
        >>> ds = VideoRegressionDataset("videos.csv", path_column="file", label_column="ef", clips=3)  # doctest: +SKIP
    """

    def __init__(self, csv_path: str | os.PathLike, root: str | os.PathLike | None = None, *,
                 path_column: str = "path", label_column: str = "label", **kwargs: Any):
        csv_path = Path(csv_path).expanduser()
        base = Path(root).expanduser() if root is not None else csv_path.parent
        rows = read_csv_table(csv_path, [path_column, label_column], "a video list")
        records, absent = [], []
        for i, row in enumerate(rows):
            path = Path(row[path_column])
            path = path if path.is_absolute() else base / path
            if not path.is_file():
                absent.append(str(path))
                continue
            records.append(VideoRecord(Path(row[path_column]).name, path,
                                       _float(row[label_column], csv_path, i, label_column)))
        if absent:
            raise DatasetError(f"{csv_path}: {len(absent)} listed video(s) are missing (e.g. "
                               f"{', '.join(absent[:3])})")
        if not records:
            raise DatasetError(f"{csv_path}: lists no video")
        super().__init__(records, **kwargs)
