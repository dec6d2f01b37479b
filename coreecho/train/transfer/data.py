"""What the transfer recipes read from a dataset: task, labels, patients, and items in training or evaluation mode.

Works for every dataset of :mod:`coreecho.data` (CAMUS, HMC-QU and other
:class:`~coreecho.data.camus.SequenceDataset` subclasses, :class:`~coreecho.data.echonet.ClipDataset` such as the
CSV-listed :class:`~coreecho.data.echonet.VideoRegressionDataset`): in evaluation mode their items follow
:mod:`coreecho.data.contract`, and training batches are collated by its :func:`~coreecho.data.contract.collate_items`.

Example:
    >>> import numpy as np
    >>> label_stats(np.array([50.0, 60.0, 70.0]), "regression")
    (60.0, 8.16496580927726)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from coreecho.data.contract import collate_items
from coreecho.engine import dataset_settings
from coreecho.errors import InputError
from coreecho.train.transfer.config import TASKS, TransferConfig

__all__ = ["dataset_mode", "task_of", "labels_of", "groups_of", "train_loader", "n_classes", "label_stats"]


def dataset_mode(dataset: Any, train: bool, cfg: TransferConfig) -> Any:
    """A context in which ``dataset`` gives training items (augmented, one random clip) or evaluation items
    (deterministic, ``eval_clips`` evenly spaced clips; one clip for a sequence dataset); its own settings come
    back afterwards (:func:`coreecho.engine.dataset_settings`)."""
    return dataset_settings(dataset, augment=bool(train and cfg.augment), clips=None if train else cfg.eval_clips,
                            clip_policy="random" if train else "even")


def task_of(dataset: Any, task: str | None) -> str:
    """``task``, else the dataset's ``task``, else ``"regression"``; checked against :data:`TASKS`."""
    task = task or getattr(dataset, "task", None) or "regression"
    if task not in TASKS:
        raise InputError("task", f"expected one of {', '.join(TASKS)}, got {task!r}")
    return task


def labels_of(dataset: Any, task: str) -> np.ndarray:
    """The dataset's labels: float64 for regression, int64 class indices (checked) for classification."""
    y = np.asarray(dataset.labels, dtype=np.float64)
    if task == "classification":
        if not np.allclose(y, np.rint(y)) or y.min() < 0:
            raise InputError("labels", "classification needs integer class labels 0, 1, ...")
        return np.rint(y).astype(np.int64)
    return y


def groups_of(dataset: Any) -> list[str]:
    """Per-item patient ids (``dataset.groups``), else the item names: folds keep each group whole."""
    groups = getattr(dataset, "groups", None)
    return [str(g) for g in groups] if groups is not None else [str(n) for n in dataset.names]


def train_loader(dataset: Any, indices: Sequence[int], batch_size: int, cfg: TransferConfig, seed: int) -> DataLoader:
    """Shuffled training batches (:func:`~coreecho.data.contract.collate_items`) of the items ``indices``.

    A last batch of one item is dropped: the head's BatchNorm cannot train on it.
    """
    n = len(indices)
    drop_last = n > batch_size and n % batch_size == 1
    return DataLoader(Subset(dataset, [int(i) for i in indices]), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed), num_workers=cfg.num_workers,
                      collate_fn=collate_items, drop_last=drop_last)


def n_classes(y: np.ndarray) -> int:
    """Outputs of a classification head for labels ``y`` (at least 2)."""
    return max(2, int(y.max()) + 1)


def label_stats(y: np.ndarray, task: str) -> tuple[float, float]:
    """``(mean, sd)`` that regression heads are trained to predict in units of (``(y - mean) / sd``); ``(0, 1)``
    for classification."""
    if task == "classification":
        return 0.0, 1.0
    sd = float(y.std())
    return float(y.mean()), sd if sd > 1e-8 else 1.0
