"""Cross-validation of a transfer recipe (:func:`cross_validate`): folds, one fit per fold, the paper's metrics.

The folds follow the dataset's protocol by default (CAMUS's 10 official blocks, HMC-QU's 5 stratified
patient-level folds, otherwise 5 patient-level folds); metrics are reported per fold, as mean ± sd over folds, and
for the pooled out-of-fold predictions (:mod:`coreecho.train.transfer.reports`).

Example:
    >>> result = cross_validate(model, HMCQU("HMC-QU"), mode="full", folds=5, epochs=5)  # doctest: +SKIP
    >>> print(result.table())  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict
from typing import Any, Callable, Sequence

import numpy as np
import torch

from coreecho.data.folds import check_folds, group_folds
from coreecho.errors import InputError
from coreecho.models.coreecho import CoReEcho
from coreecho.precision import resolve_device
from coreecho.seeding import derive_seed
from coreecho.train.transfer.config import TransferConfig, resolve_config
from coreecho.train.transfer.data import groups_of, label_stats, labels_of, n_classes, task_of
from coreecho.train.transfer.passes import extract_embeddings, predict_outputs
from coreecho.train.transfer.recipes import fit_linear, fresh_head, train_full, train_head, with_fresh_head
from coreecho.train.transfer.reports import (
    HEADLINE,
    PAPER_RESULTS,
    TransferResult,
    aggregate,
    classification_report,
    regression_report,
)

__all__ = ["cross_validate"]


def cross_validate(model: CoReEcho, dataset: Any, *, mode: str | None = None,
                   folds: int | Sequence[tuple[Any, Any]] | None = None, task: str | None = None,
                   config: TransferConfig | None = None, dataset_name: str | None = None,
                   log: Callable[[str], None] | None = None, **overrides: Any) -> TransferResult:
    """Run a transfer recipe over cross-validation folds and report the paper's metrics.

    Args:
        model: the pretrained model (moved to ``config.device`` but otherwise not modified; ``full`` fine-tunes a
            copy per fold).
        dataset: a :class:`~coreecho.data.camus.CAMUS`, :class:`~coreecho.data.hmcqu.HMCQU`, any
            :class:`~coreecho.data.camus.SequenceDataset`, or a :class:`~coreecho.data.echonet.ClipDataset` such as
            :class:`~coreecho.data.echonet.VideoRegressionDataset` (optionally with a ``groups`` attribute).
        mode: ``"linear"``, ``"mlp"`` or ``"full"`` (default: ``config.mode``, else ``"mlp"``).
        folds: number of folds for the dataset's protocol (``dataset.default_folds(k, seed)``; CAMUS 10, HMC-QU 5,
            others 5 patient-level folds), or explicit ``(train_indices, test_indices)`` pairs.
        task: ``"regression"`` or ``"classification"`` (default: the dataset's ``task``, else regression).
        config: hyper-parameters; ``**overrides`` replace single fields (``epochs=3``...).
        dataset_name: name used in the report and to look up the paper's numbers (``"camus"``, ``"hmcqu"``).
        log: called with progress lines (e.g. ``print``).

    Returns:
        A :class:`TransferResult`.

    Raises:
        InputError: an unknown mode or task, bad folds, or non-integer class labels.

    Example:
        >>> result = cross_validate(model, HMCQU("HMC-QU"), mode="full", folds=5, epochs=5)  # doctest: +SKIP
        >>> result.summary["f1"]["mean"]  # doctest: +SKIP
        0.91
    """
    cfg = resolve_config(mode, config, overrides)
    task = task_of(dataset, task)
    y = labels_of(dataset, task)
    groups = groups_of(dataset)
    name = dataset_name or type(dataset).__name__.lower()
    split = _folds(dataset, folds, name, task, y, groups, cfg, log)
    strata = dict(getattr(dataset, "strata", {}) or {})
    device = resolve_device(cfg.device)
    base = model.to(device)
    started = time.perf_counter()
    emb = None
    if cfg.mode in ("linear", "mlp"):
        if log:
            log(f"embedding {len(dataset)} videos with the frozen encoder")
        emb = extract_embeddings(base, dataset, config=cfg)
    preds = np.zeros(len(dataset), dtype=np.float64)
    scores = np.full(len(dataset), np.nan)
    fold_of = np.full(len(dataset), -1, dtype=np.int64)
    per_fold = []
    for f, (train, test) in enumerate(split):
        if task == "classification" and len(np.unique(y[train])) < 2:
            raise InputError(f"fold {f}", "its training set has a single class; use fewer folds")
        if log and cfg.mode == "full":
            log(f"  fold {f + 1}/{len(split)}: fine-tuning on {len(train)} videos")
        out = _fold_outputs(base, dataset, emb, y, train, test, task, cfg, derive_seed(cfg.seed, f), log)
        if task == "classification":
            preds[test] = np.argmax(out, axis=-1)
            scores[test] = out[:, 1] if out.shape[1] > 1 else out[:, 0]
            metrics = classification_report(y[test], preds[test], scores[test])
        else:
            preds[test] = np.asarray(out, dtype=np.float64).reshape(-1)
            metrics = regression_report(y[test], preds[test], {k: [v[i] for i in test] for k, v in strata.items()})
        fold_of[test] = f
        per_fold.append(metrics)
        if log:
            shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in HEADLINE[task] if k in metrics
                              and math.isfinite(metrics[k]))
            log(f"  fold {f + 1}/{len(split)}: {len(test)} test videos: {shown}")
    if task == "classification":
        pooled = classification_report(y, preds.astype(np.int64), scores)
    else:
        pooled = regression_report(y, preds, strata)
    rows = _rows(dataset, y, preds, scores, fold_of, groups, strata, task)
    details = {**asdict(cfg), "model": model.config.architecture, "seconds": round(time.perf_counter() - started, 2),
               "device": str(device)}
    return TransferResult(name, cfg.mode, task, per_fold, aggregate(per_fold), pooled, rows, details,
                          PAPER_RESULTS.get((name, cfg.mode)))


def _folds(dataset: Any, folds: Any, name: str, task: str, y: np.ndarray, groups: list[str], cfg: TransferConfig,
           log: Callable[[str], None] | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(train, test)`` index pairs: explicit ones, else the dataset's protocol; folds without test items are
    left out; checked (disjoint, in range, patients whole)."""
    if folds is None or isinstance(folds, (int, np.integer)):
        k = int(folds) if folds is not None else {"camus": 10, "hmcqu": 5}.get(name, 5)
        if hasattr(dataset, "default_folds"):
            split = dataset.default_folds(k, cfg.seed)
        else:
            split = group_folds(groups, k, labels=y if task == "classification" else None, seed=cfg.seed)
    else:
        split = [(np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64)) for tr, te in folds]
    empty = [f for f, (_, te) in enumerate(split) if len(te) == 0]
    if empty and log:
        log(f"skipping {len(empty)} fold(s) without test videos (e.g. a CAMUS block with no patient of the kept "
            "image qualities)")
    split = [(tr, te) for tr, te in split if len(te)]
    check_folds(split, len(dataset), groups)
    return split


def _fold_outputs(base: CoReEcho, dataset: Any, emb: np.ndarray | None, y: np.ndarray, train: np.ndarray,
                  test: np.ndarray, task: str, cfg: TransferConfig, seed: int,
                  log: Callable[[str], None] | None) -> np.ndarray:
    """One fold: fit the recipe on ``train``, return its outputs on ``test`` (values, or class probabilities)."""
    mean, sd = label_stats(y[train], task)
    out_dim = n_classes(y) if task == "classification" else 1
    if cfg.mode == "linear":
        est = fit_linear(emb[train], y[train], task, cfg)
        if task != "classification":
            return est.predict(emb[test].astype(np.float64))
        out = np.zeros((len(test), out_dim))
        out[:, est.classes_] = est.predict_proba(emb[test].astype(np.float64))
        return out
    if cfg.mode == "mlp":
        head = train_head(fresh_head(base, out_dim, seed), emb[train], y[train], task, cfg, seed, mean, sd,
                          base.device)
        with torch.no_grad():  # a head over precomputed embeddings (not over videos: those went through the engine)
            out = head(torch.as_tensor(emb[test], dtype=torch.float32, device=base.device)).float().cpu()
        return out.softmax(-1).numpy() if task == "classification" else out.numpy()
    m = train_full(with_fresh_head(copy.deepcopy(base), out_dim, seed), dataset, train, task, cfg, seed, mean, sd,
                   log)
    return predict_outputs(m, dataset, test, task, cfg)


def _rows(dataset: Any, y: np.ndarray, preds: np.ndarray, scores: np.ndarray, fold_of: np.ndarray,
          groups: list[str], strata: dict[str, Any], task: str) -> list[dict[str, Any]]:
    """One dict per item: name, patient, fold, true and predicted label (and the class-1 score), strata values."""
    rows = []
    names = [str(n) for n in getattr(dataset, "names", [str(i) for i in range(len(dataset))])]
    for i in range(len(dataset)):
        row: dict[str, Any] = {"name": names[i], "patient": groups[i], "fold": int(fold_of[i]),
                               "true": float(y[i]) if task == "regression" else int(y[i]),
                               "pred": float(preds[i]) if task == "regression" else int(preds[i])}
        if task == "classification":
            row["score"] = float(scores[i])
        for k, v in strata.items():
            row[k] = v[i]
        rows.append(row)
    return rows
