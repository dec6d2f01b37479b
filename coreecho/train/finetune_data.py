"""Datasets of ``coreecho finetune``: CAMUS, HMC-QU or a CSV of videos, preprocessed as the model will be served.

The options come from the command line (:mod:`coreecho.cli.finetune`) as an :class:`argparse.Namespace`.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["build_dataset", "dataset_preprocess"]

#: Datasets whose items are whole (half-)cycles, resampled to ``frames`` frames (``sampling="sequence"``).
_SEQUENCE_DATASETS = ("camus", "hmcqu")


def dataset_preprocess(args: argparse.Namespace, model: Any) -> Any:
    """The :class:`~coreecho.models.config.PreprocessConfig` of the fine-tuning data: the model's, with
    ``sampling="sequence"`` for CAMUS and HMC-QU, and the fields the user overrides (``--frames``, ``--stride``,
    ``--sampling``, ``--temporal``). It becomes the fine-tuned model's preprocessing, so ``predict_ef`` feeds the
    model as it was fine-tuned.

    Example:
        >>> from coreecho.models.config import ModelConfig
        >>> model = argparse.Namespace(config=ModelConfig())
        >>> pre = dataset_preprocess(argparse.Namespace(dataset="camus", frames=None), model)
        >>> pre.sampling, pre.frames
        ('sequence', 36)
    """
    changes: dict[str, Any] = {}
    if args.dataset in _SEQUENCE_DATASETS:
        changes["sampling"] = "sequence"
    for name in ("frames", "stride", "sampling", "temporal"):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    return model.config.preprocessing.replace(**changes)


def build_dataset(args: argparse.Namespace, model: Any) -> Any:
    """The dataset of ``args``, preprocessed as :func:`dataset_preprocess` says (the model's config, with whole
    sequences for CAMUS and HMC-QU, and the user's overrides).

    Example:
        >>> build_dataset(argparse.Namespace(dataset="camus", data="CAMUS_public", ...), model)  # doctest: +SKIP
    """
    pre = dataset_preprocess(args, model)
    common = {"preprocess": pre, "seed": args.seed}
    if args.dataset == "camus":
        from coreecho.data.camus import CAMUS  # noqa: PLC0415

        quality = None if args.quality.strip().lower() == "all" else [q for q in args.quality.split(",") if q.strip()]
        return CAMUS(args.data, quality=quality, view=args.view, sampling=pre.sampling, **common)
    if args.dataset == "hmcqu":
        from coreecho.data.hmcqu import HMCQU  # noqa: PLC0415

        return HMCQU(args.data, spreadsheet=args.spreadsheet, video_dir=args.video_dir, video_name=args.video_name,
                     name_column=args.name_column, patient_pattern=args.patient_pattern, span=args.span,
                     sampling=pre.sampling, **common)
    from pathlib import Path  # noqa: PLC0415

    from coreecho.data.echonet import VideoRegressionDataset, read_csv_table  # noqa: PLC0415

    ds = VideoRegressionDataset(args.data, path_column=args.path_column, label_column=args.label_column,
                                clips=3, clip_policy="even", **common)
    ds.task = args.task
    if args.group_column:
        rows = read_csv_table(Path(args.data), [args.path_column, args.group_column], "a video list")
        ds.groups = [r[args.group_column] for r in rows]
    return ds
