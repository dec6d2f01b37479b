"""The base of the sequence datasets (CAMUS, HMC-QU): one item is one clip, the whole sequence resampled.

A sequence dataset reads a short sequence (a half or one cardiac cycle) per item and stretches it in time to the
model's clip length through the one input pipeline (:class:`~coreecho.video.pipeline.ClipPipeline` with
``sampling="sequence"``), with optional pad-and-crop augmentation and an in-memory cache of the deterministic
pixels. Items follow the dataset item contract (:mod:`coreecho.data.contract`).

Example:
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> class Toy(SequenceDataset):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(frames=4, size=32, **kwargs)
    ...         self.records = [SimpleNamespace(name="a", patient="p1", label=50.0)]
    ...     def _source(self, index):
    ...         return np.full((3, 40, 40), 100, np.uint8), None
    >>> Toy()[0]["video"].shape  # training mode: one clip
    torch.Size([3, 4, 32, 32])
    >>> item = Toy(clips=1)[0]  # evaluation mode: [K, 3, T, S, S] with K = 1
    >>> item["video"].shape, item["starts"].tolist(), item["label"].item()
    (torch.Size([1, 3, 4, 32, 32]), [0], 50.0)
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from coreecho.data.folds import Folds, group_folds
from coreecho.data.pipelined import PipelineDataset, check_clips, resolve_preprocess
from coreecho.errors import InputError
from coreecho.models.config import PreprocessConfig
from coreecho.seeding import rng as seeded_rng
from coreecho.video.pipeline import ClipPipeline

__all__ = ["SequenceDataset"]


class SequenceDataset(PipelineDataset):
    """One clip per item, through the one input pipeline: the whole sequence resampled to ``frames`` frames.

    Subclasses fill :attr:`records` (objects with ``name``, ``patient`` and ``label``) and implement
    :meth:`_source` (a path, reader or array of raw frames, and an optional frame window). Items are dicts with
    ``"video"``, ``"label"`` (float32 for regression, int64 class index for classification), ``"name"``,
    ``"starts"`` (``[0]``: the clip starts at the sequence's first frame), ``"patient"`` and ``"index"``, plus
    what :meth:`_extra` adds. ``"video"`` is float32 ``(3, frames, size, size)`` in training mode
    (``clips=None``) and ``(1, 3, frames, size, size)`` in evaluation mode (any other ``clips``: a sequence is one
    clip whatever ``k`` asks for).

    The preprocessing is a :class:`~coreecho.models.config.PreprocessConfig` with ``sampling="sequence"`` unless
    the overrides say otherwise; a model fine-tuned on such a dataset saves it, so ``predict_ef`` on that model
    resamples whole sequences too.

    Args:
        preprocess: the recipe (default: the CoReEcho recipe with ``sampling="sequence"``).
        augment: pad each clip by ``pad`` pixels and crop back at a random offset (seeded by
            ``(seed, epoch, index)``; see :meth:`set_epoch`).
        clips: ``None`` (training mode) or ``k``/``"all"``/``"every"`` (evaluation mode, one clip per item).
        seed: base seed of the augmentation.
        cache: keep each item's deterministic pixels in memory (only with ``sampling="sequence"``).
        backend, limits: the video reader and its limits.
        **overrides: fields of ``preprocess`` to replace (``frames``, ``size``, ``mean``, ``std``, ``temporal``,
            ``pad``, ``crop_sector``...).

    Attributes:
        task: ``"regression"`` or ``"classification"``.
        strata: name → per-item values that metrics are broken down by (e.g. ``"quality"``).
    """

    task = "regression"

    def __init__(self, *, preprocess: PreprocessConfig | None = None, augment: bool = False,
                 clips: int | str | None = None, seed: int = 0, cache: bool = True, backend: str = "auto",
                 limits: Any = None, **overrides: Any):
        pre = resolve_preprocess(preprocess, {"sampling": "sequence", **overrides})
        self.preprocess = pre
        self.clips = check_clips(clips)
        self.starts = None  # a sequence has no start to fix: its one clip is the whole sequence
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

    def set_starts(self, starts: Mapping[str, Sequence[int]] | None) -> None:
        """Part of the item contract; a sequence item is one clip of the whole sequence, so only ``None`` fits.

        Raises:
            InputError: ``starts`` is not ``None``.
        """
        if starts is not None:
            raise InputError("starts", f"{type(self).__name__} resamples each whole sequence into one clip; "
                                       "fixed clip starts do not apply (pass None)")
        self.starts = None

    def default_folds(self, k: int, seed: int = 0) -> Folds:  # pragma: no cover - overridden
        """The dataset's cross-validation protocol."""
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
        rng = seeded_rng(int(self.seed or 0), self.epoch, index, 0xCA)
        x, _ = self.pipeline.finish(self.clip(index)[None], rng)
        dtype = torch.int64 if self.task == "classification" else torch.float32
        return {"video": x if self.clips is not None else x[0], "label": torch.tensor(rec.label, dtype=dtype),
                "name": rec.name, "starts": torch.zeros(1, dtype=torch.int64), "patient": rec.patient,
                "index": index, **self._extra(index)}
