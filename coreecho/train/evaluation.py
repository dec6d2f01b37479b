"""Evaluation (``coreecho.train.evaluate``): EF of every video of a split from its clips, MAE / RMSE / R² with bootstrap intervals, per-video CSV.

The official test protocol is ``starts=test_start_indexes.pkl`` (three fixed starts per video, the prediction is
the mean over the three clips). Without a starts file, ``clips=k`` takes ``k`` evenly spaced clips (as
:func:`coreecho.predict_ef` does; ``clip_policy="random"`` draws them at random as the official validation does)
and ``clips="all"`` non-overlapping clips covering each video.

Example:
    >>> from coreecho.train import evaluate
    >>> result = evaluate("runs/stage2/model", "EchoNet-Dynamic", split="test",
    ...                   starts="test_start_indexes.pkl", output="per_video.csv")  # doctest: +SKIP
    >>> round(result.metrics["mae"], 2)  # doctest: +SKIP
    3.9
"""

from __future__ import annotations

import copy
import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from coreecho.data.echonet import ClipDataset, EchoNetDynamic
from coreecho.precision import autocast_for, resolve_device, resolve_precision
from coreecho.train.metrics import format_metrics, regression_metrics

__all__ = ["evaluate", "EvalResult", "predict_dataset", "autocast_for", "resolve_device"]


@dataclass
class EvalResult:
    """Metrics and per-video predictions.

    Attributes:
        metrics: ``n``, ``mae``, ``rmse``, ``r2`` and their ``*_ci`` bootstrap intervals.
        rows: one dict per video: ``name``, ``ef_true``, ``ef_pred`` (mean over clips), ``abs_error``,
            ``clip_starts`` and ``clip_efs`` (lists).
        mean_predictor_mae: MAE of always predicting ``baseline`` (when given), for reference.
    """

    metrics: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    mean_predictor_mae: float | None = None

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the per-video table (clip values joined with ``;``)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        from coreecho._atomic import replace_atomically
        from coreecho._csvcells import escape_cell  # a name starting with '=' is text in a spreadsheet

        def write(fh: Any) -> None:  # atomically: an interrupted write leaves the previous file as it was
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["name", "ef_true", "ef_pred", "abs_error", "n_clips", "clip_starts", "clip_efs"])
            for r in self.rows:
                w.writerow([escape_cell(r["name"]), f"{r['ef_true']:.6f}", f"{r['ef_pred']:.6f}",
                            f"{r['abs_error']:.6f}",
                            len(r["clip_efs"]), ";".join(str(s) for s in r["clip_starts"]),
                            ";".join(f"{v:.6f}" for v in r["clip_efs"])])

        return replace_atomically(p, write)

    def summary(self) -> str:
        """Human-readable metrics."""
        text = format_metrics(self.metrics)
        if self.mean_predictor_mae is not None:
            text += f"\nmean-predictor MAE  {self.mean_predictor_mae:.3f}"
        return text


def predict_dataset(encoder: nn.Module, head: nn.Module, dataset: ClipDataset, *, batch_size: int | None = None,
                    device: torch.device | str | None = None, precision: str = "auto", num_workers: int | None = 0,
                    rank: int = 0, world_size: int = 1, progress: bool = False,
                    desc: str = "evaluate") -> list[dict[str, Any]]:
    """Predict every video of ``dataset`` (an evaluation-mode :class:`ClipDataset`) from the mean over its clips.

    Runs through the inference engine (:func:`coreecho.engine.stream`): the dataset's items (the one input pipeline)
    are decoded ahead by ``num_workers`` loader processes and batched ``batch_size`` clips per forward pass (default:
    the engine's policy, by activation size on a CPU or free memory on a GPU). With ``world_size > 1`` each rank
    predicts every ``world_size``-th video and the rows of all ranks are gathered (every rank returns the full list,
    in dataset order). Modules are put in eval mode.

    Args:
        batch_size: clips per forward pass; ``None``: the engine's batch policy for the dataset's preprocessing.
        precision: ``"auto"`` follows the training policy (fp32 on a CPU, bf16/fp16 on CUDA); see
            :mod:`coreecho.precision`.
        num_workers: loader worker processes; ``None``: the engine's default (:func:`coreecho.engine.default_workers`).

    Returns:
        One dict per video (see :class:`EvalResult`).
    """
    from coreecho.engine import DatasetItems, EncoderHead, stream
    from coreecho.train.distributed import all_gather_objects

    dev = resolve_device(device)
    used = resolve_precision(precision, dev, training=True)
    encoder.eval()
    head.eval()
    items = DatasetItems(dataset, range(rank, len(dataset), world_size))  # batch policy: the dataset's preprocess

    def row(item: Any, _emb: Any, out: Any) -> dict[str, Any]:
        clip_efs = np.asarray(out, dtype=np.float64).reshape(-1)
        true, pred = float(item.extra["label"]), float(clip_efs.mean())
        return {"index": item.index, "name": item.source, "ef_true": true, "ef_pred": pred,
                "abs_error": abs(pred - true), "clip_starts": item.starts, "clip_efs": [float(v) for v in clip_efs]}

    rows = list(stream(items, EncoderHead(encoder, head), finish=row, batch_size=batch_size, precision=used,
                       workers=num_workers, errors="raise", progress=progress, desc=desc))
    if world_size > 1:
        rows = [r for part in all_gather_objects(rows) for r in part]
    rows.sort(key=lambda r: r["index"])
    return rows


def evaluate(model: Any, data: str | os.PathLike | ClipDataset, split: str = "test", *,
             clips: int | str | None = None, starts: str | os.PathLike | Mapping[str, Sequence[int]] | None = None,
             clip_policy: str = "even", batch_size: int | None = None, device: str | torch.device | None = None,
             precision: str = "auto", num_workers: int | None = None, threads: int | None = None, seed: int = 0, bootstrap: int = 1000,
             output: str | os.PathLike | None = None, limit: int | None = None, baseline: float | None = None,
             progress: bool = False, rank: int = 0, world_size: int = 1) -> EvalResult:
    """Evaluate an EF model on a split of an EchoNet-Dynamic-layout dataset.

    Args:
        model: a :class:`~coreecho.CoReEcho`, or anything :func:`coreecho.load_model` accepts.
        data: the dataset folder, or a ready evaluation-mode :class:`ClipDataset`.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        clips: clips per video (``int``), ``"all"`` or ``"every"``; default: the model config's ``test_clips``.
        starts: fixed starts (a ``.pkl``/``.json``/``.csv`` file or a mapping); overrides ``clips``.
        clip_policy: ``"even"`` (evenly spaced, as inference) or ``"random"`` (seeded by ``seed``) for ``clips=k``.
        batch_size: clips per forward pass (default: the engine's policy).
        device: ``None`` picks CUDA when available.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"`` (fp32 on a CPU, bf16/fp16 on CUDA); see
            :mod:`coreecho.precision`.
        num_workers: loader worker processes decoding ahead (default: one per core, up to 4).
        threads: torch CPU threads for this call (``None``: leave as set).
        seed: seed of random clips and of the bootstrap.
        bootstrap: bootstrap resamples for the 95% intervals (0: none).
        output: write the per-video CSV here.
        limit: evaluate only the first ``limit`` videos.
        baseline: also report the MAE of always predicting this value (e.g. the training mean).
        progress: show a progress bar.
        rank, world_size: under torchrun (an initialised process group), each rank predicts every
            ``world_size``-th video and every rank gets all rows; only rank 0 writes ``output``.

    Returns:
        An :class:`EvalResult`.

    Example:
        >>> result = evaluate("runs/stage2/model", "EchoNet-Dynamic", clips=3)  # doctest: +SKIP
        >>> print(result.summary())  # doctest: +SKIP
    """
    from coreecho.models.coreecho import CoReEcho

    from coreecho.models.task import check_ef_regression

    source = str(model) if not isinstance(model, CoReEcho) else "the model"
    if not isinstance(model, CoReEcho):
        from coreecho.hub import load_model

        model = load_model(model, device=str(resolve_device(device)))
    check_ef_regression(model.config, source, "evaluate")  # a classifier's logits are not EFs
    dev = resolve_device(device)
    from coreecho.inference import inference_view

    model = inference_view(model.to(dev))  # eval-mode view; the caller's module keeps its mode
    if starts is not None and not isinstance(starts, Mapping):
        from coreecho.train.starts import load_starts

        starts = load_starts(starts)
    if isinstance(data, ClipDataset):
        dataset = data
    else:
        dataset = EchoNetDynamic(data, split, preprocess=model.config.preprocessing,
                                 clips=model.config.test_clips if clips is None else clips,
                                 clip_policy=clip_policy, seed=seed)
    if limit is not None or starts is not None:
        dataset = copy.copy(dataset)  # never modify the caller's dataset
    if limit is not None:
        dataset.records = dataset.records[:limit]
    if starts is not None:
        dataset.set_starts(starts)
    from coreecho.precision import set_threads

    used = resolve_precision(precision, dev, training=True)
    before = set_threads(threads)
    try:  # batch_size and num_workers None: the engine's policies (coreecho.engine.stream) decide
        rows = predict_dataset(model.encoder, model.head, dataset, batch_size=batch_size, device=dev,
                               precision=used, num_workers=num_workers, progress=progress and rank == 0,
                               rank=rank, world_size=world_size)
    finally:
        set_threads(before)
    truth = np.array([r["ef_true"] for r in rows])
    metrics = regression_metrics(truth, np.array([r["ef_pred"] for r in rows]), bootstrap=bootstrap, seed=seed)
    result = EvalResult(metrics, rows)
    if baseline is not None:
        result.mean_predictor_mae = float(np.abs(truth - baseline).mean())
    if output is not None and rank == 0:
        result.to_csv(output)
    return result
