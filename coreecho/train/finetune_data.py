"""Datasets of ``coreecho finetune``: CAMUS, HMC-QU or a CSV of videos, preprocessed as the model will be served.

The command line (:mod:`coreecho.cli.finetune`) passes its options as keyword arguments.

Example:
    >>> ds = build_dataset("camus", "CAMUS_public", model, quality="good,medium")  # doctest: +SKIP
    >>> ds.preprocess.sampling  # doctest: +SKIP
    'sequence'
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Sequence

from coreecho._warnings import warn_user
from coreecho.data.camus import CAMUS
from coreecho.data.echonet import VideoRegressionDataset, read_csv_table
from coreecho.data.hmcqu import HMCQU
from coreecho.errors import InputError

__all__ = ["build_dataset", "dataset_preprocess", "DATASETS"]

#: The dataset layouts ``coreecho finetune`` reads.
DATASETS = ("camus", "hmcqu", "csv")
#: Datasets whose items are whole (half-)cycles, resampled to ``frames`` frames (``sampling="sequence"``).
_SEQUENCE_DATASETS = ("camus", "hmcqu")
_PREPROCESS_FIELDS = ("frames", "stride", "sampling", "temporal")


def dataset_preprocess(kind: str, model: Any, *, frames: int | None = None, stride: int | None = None,
                       sampling: str | None = None, temporal: str | None = None) -> Any:
    """The :class:`~coreecho.models.config.PreprocessConfig` of the fine-tuning data: the model's, with
    ``sampling="sequence"`` for CAMUS and HMC-QU, and the fields the user overrides (``None`` keeps the model's).
    It becomes the fine-tuned model's preprocessing, so ``predict_ef`` feeds the model as it was fine-tuned.

    Args:
        kind: ``"camus"``, ``"hmcqu"`` or ``"csv"``.
        model: the model (its ``config.preprocessing`` is the starting point).
        frames, stride, sampling, temporal: overrides (``--frames``, ``--stride``, ``--sampling``, ``--temporal``).

    Example:
        >>> from types import SimpleNamespace
        >>> from coreecho.models.config import ModelConfig
        >>> pre = dataset_preprocess("camus", SimpleNamespace(config=ModelConfig()))
        >>> pre.sampling, pre.frames
        ('sequence', 36)
    """
    if isinstance(kind, argparse.Namespace):  # the 0.2 signature dataset_preprocess(args, model)
        warn_user("dataset_preprocess(args, model) is deprecated; call dataset_preprocess(kind, model, frames=..., "
                  "stride=..., sampling=..., temporal=...)", DeprecationWarning)
        args = kind
        return dataset_preprocess(args.dataset, model,
                                  **{k: getattr(args, k, None) for k in _PREPROCESS_FIELDS})
    changes: dict[str, Any] = {}
    if kind in _SEQUENCE_DATASETS:
        changes["sampling"] = "sequence"
    for name, value in (("frames", frames), ("stride", stride), ("sampling", sampling), ("temporal", temporal)):
        if value is not None:
            changes[name] = value
    return model.config.preprocessing.replace(**changes)


def _qualities(quality: str | Sequence[str] | None) -> list[str] | None:
    if quality is None:
        return None
    if isinstance(quality, str):
        if quality.strip().lower() == "all":
            return None
        return [q.strip() for q in quality.split(",") if q.strip()]
    return list(quality)


def build_dataset(kind: str, data: str | os.PathLike, model: Any = None, *, seed: int = 0, frames: int | None = None,
                  stride: int | None = None, sampling: str | None = None, temporal: str | None = None,
                  quality: str | Sequence[str] | None = "good,medium", view: str = "4CH",
                  spreadsheet: str | os.PathLike | None = None, video_dir: str | os.PathLike | None = None,
                  video_name: str = "{name}.avi", name_column: str = "ECHO",
                  patient_pattern: str = r"^\s*([A-Za-z]*\d+)", span: str = "cycle", task: str = "regression",
                  path_column: str = "path", label_column: str = "label", group_column: str | None = None) -> Any:
    """The fine-tuning dataset, preprocessed as :func:`dataset_preprocess` says (the model's config, with whole
    sequences for CAMUS and HMC-QU, and the overrides).

    Args:
        kind: ``"camus"`` (:class:`~coreecho.data.camus.CAMUS`), ``"hmcqu"`` (:class:`~coreecho.data.hmcqu.HMCQU`)
            or ``"csv"`` (:class:`~coreecho.data.echonet.VideoRegressionDataset`, 3 evenly spaced clips a video).
        data: the dataset folder (camus, hmcqu) or the CSV file (csv).
        model: the model whose preprocessing the data follows (required; the default only keeps the deprecated
            ``build_dataset(args, model)`` call working).
        seed: the dataset's augmentation seed.
        frames, stride, sampling, temporal: preprocessing overrides (see :func:`dataset_preprocess`).
        quality: CAMUS image qualities kept: a list, a comma-separated string, or ``"all"``/``None``.
        view: the CAMUS view.
        spreadsheet, video_dir, video_name, name_column, patient_pattern, span: HMC-QU options
            (see :class:`~coreecho.data.hmcqu.HMCQU`).
        task: ``"regression"`` or ``"classification"`` (csv).
        path_column, label_column: columns of video paths and labels (csv).
        group_column: column of patient ids (csv; folds keep patients whole).

    Raises:
        InputError: an unknown ``kind``.

    Example:
        >>> build_dataset("csv", "videos.csv", model, label_column="ef", group_column="patient")  # doctest: +SKIP
    """
    if isinstance(kind, argparse.Namespace):  # the 0.2 signature build_dataset(args, model)
        warn_user("build_dataset(args, model) is deprecated; call build_dataset(kind, data, model, **options)",
                  DeprecationWarning)
        args, model = kind, data
        names = ("seed", *_PREPROCESS_FIELDS, "quality", "view", "spreadsheet", "video_dir", "video_name",
                 "name_column", "patient_pattern", "span", "task", "path_column", "label_column", "group_column")
        return build_dataset(args.dataset, args.data, model,
                             **{k: getattr(args, k) for k in names if getattr(args, k, None) is not None})
    if kind not in DATASETS:
        raise InputError("dataset", f"expected one of {', '.join(DATASETS)}, got {kind!r}")
    if model is None:
        raise InputError("model", "build_dataset needs the model whose preprocessing the data follows")
    pre = dataset_preprocess(kind, model, frames=frames, stride=stride, sampling=sampling, temporal=temporal)
    if kind == "camus":
        # sampling=: a sequence dataset defaults to "sequence"; the resolved recipe says which
        return CAMUS(data, quality=_qualities(quality), view=view, preprocess=pre, sampling=pre.sampling, seed=seed)
    if kind == "hmcqu":
        return HMCQU(data, spreadsheet=spreadsheet, video_dir=video_dir, video_name=video_name,
                     name_column=name_column, patient_pattern=patient_pattern, span=span, preprocess=pre,
                     sampling=pre.sampling, seed=seed)
    ds = VideoRegressionDataset(data, path_column=path_column, label_column=label_column, clips=3,
                                clip_policy="even", preprocess=pre, seed=seed)
    ds.task = task
    if group_column:
        rows = read_csv_table(Path(data), [path_column, group_column], "a video list")
        ds.groups = [r[group_column] for r in rows]
    return ds
