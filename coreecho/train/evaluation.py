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

import contextlib
import copy
import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from coreecho.data.echonet import ClipDataset, EchoNetDynamic, collate_clips
from coreecho.errors import InputError
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
        with open(p, "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["name", "ef_true", "ef_pred", "abs_error", "n_clips", "clip_starts", "clip_efs"])
            for r in self.rows:
                w.writerow([r["name"], f"{r['ef_true']:.6f}", f"{r['ef_pred']:.6f}", f"{r['abs_error']:.6f}",
                            len(r["clip_efs"]), ";".join(str(s) for s in r["clip_starts"]),
                            ";".join(f"{v:.6f}" for v in r["clip_efs"])])
        return p

    def summary(self) -> str:
        """Human-readable metrics."""
        text = format_metrics(self.metrics)
        if self.mean_predictor_mae is not None:
            text += f"\nmean-predictor MAE  {self.mean_predictor_mae:.3f}"
        return text


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_for(device: torch.device, precision: str = "auto") -> tuple[Callable[[], Any], str]:
    """A context-manager factory for mixed precision on ``device`` and the precision actually used.

    ``"auto"``: bf16 on CUDA when supported, else fp16; fp32 on CPU (CPU autocast is slower and less exact).

    Example:
        >>> ctx, used = autocast_for(torch.device("cpu"))
        >>> used
        'fp32'
    """
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise InputError("precision", f"expected auto, fp32, bf16 or fp16, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    if precision == "fp32":
        return contextlib.nullcontext, "fp32"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return (lambda: torch.autocast(device_type=device.type, dtype=dtype)), precision


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@torch.no_grad()
def predict_dataset(encoder: nn.Module, head: nn.Module, dataset: ClipDataset, *, batch_size: int = 16,
                    device: torch.device | str | None = None, precision: str = "auto", num_workers: int = 0,
                    rank: int = 0, world_size: int = 1, progress: bool = False,
                    desc: str = "evaluate") -> list[dict[str, Any]]:
    """Predict every video of ``dataset`` (an evaluation-mode :class:`ClipDataset`) from the mean over its clips.

    With ``world_size > 1`` each rank predicts every ``world_size``-th video and the rows of all ranks are
    gathered (every rank returns the full list, in dataset order). Modules are put in eval mode.

    Returns:
        One dict per video (see :class:`EvalResult`).
    """
    from coreecho.train.distributed import all_gather_objects

    dev = resolve_device(device)
    autocast, _ = autocast_for(dev, precision)
    encoder.eval()
    head.eval()
    indices = list(range(rank, len(dataset), world_size))
    per_video = dataset.clips if isinstance(dataset.clips, int) else (3 if dataset.starts is not None else 1)
    loader = DataLoader(Subset(dataset, indices), batch_size=max(1, batch_size // per_video),
                        shuffle=False, num_workers=num_workers, collate_fn=collate_clips,
                        pin_memory=dev.type == "cuda")
    iterator: Any = loader
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(loader, desc=desc, unit="batch", leave=False)
    rows: list[dict[str, Any]] = []
    for batch in iterator:
        clips = batch["video"]
        preds = []
        for chunk in clips.split(batch_size):
            with autocast():
                emb = encoder(chunk.to(dev, non_blocking=True))
            preds.append(_float(head(_float(emb))).reshape(-1).double().cpu())
        values = torch.cat(preds).numpy()
        offset = 0
        for i, count in enumerate(batch["counts"].tolist()):
            clip_efs = values[offset:offset + count]
            offset += count
            true = float(batch["ef"][i])
            pred = float(clip_efs.mean())
            rows.append({"index": int(batch["index"][i]), "name": batch["name"][i], "ef_true": true, "ef_pred": pred,
                         "abs_error": abs(pred - true), "clip_starts": [int(s) for s in batch["starts"][i]],
                         "clip_efs": [float(v) for v in clip_efs]})
    if world_size > 1:
        rows = [r for part in all_gather_objects(rows) for r in part]
    rows.sort(key=lambda r: r["index"])
    return rows


def evaluate(model: Any, data: str | os.PathLike | ClipDataset, split: str = "test", *,
             clips: int | str | None = None, starts: str | os.PathLike | Mapping[str, Sequence[int]] | None = None,
             clip_policy: str = "even", batch_size: int = 16, device: str | torch.device | None = None,
             precision: str = "auto", num_workers: int = 0, seed: int = 0, bootstrap: int = 1000,
             output: str | os.PathLike | None = None, limit: int | None = None, baseline: float | None = None,
             progress: bool = False) -> EvalResult:
    """Evaluate an EF model on a split of an EchoNet-Dynamic-layout dataset.

    Args:
        model: a :class:`~coreecho.CoReEcho`, or anything :func:`coreecho.load_model` accepts.
        data: the dataset folder, or a ready evaluation-mode :class:`ClipDataset`.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        clips: clips per video (``int``), ``"all"`` or ``"every"``; default: the model config's ``test_clips``.
        starts: fixed starts (a ``.pkl``/``.json``/``.csv`` file or a mapping); overrides ``clips``.
        clip_policy: ``"even"`` (evenly spaced, as inference) or ``"random"`` (seeded by ``seed``) for ``clips=k``.
        batch_size: clips per forward pass.
        device: ``None`` picks CUDA when available.
        precision: autocast precision on CUDA (see :func:`autocast_for`).
        num_workers: DataLoader workers.
        seed: seed of random clips and of the bootstrap.
        bootstrap: bootstrap resamples for the 95% intervals (0: none).
        output: write the per-video CSV here.
        limit: evaluate only the first ``limit`` videos.
        baseline: also report the MAE of always predicting this value (e.g. the training mean).
        progress: show a progress bar.

    Returns:
        An :class:`EvalResult`.

    Example:
        >>> result = evaluate("runs/stage2/model", "EchoNet-Dynamic", clips=3)  # doctest: +SKIP
        >>> print(result.summary())  # doctest: +SKIP
    """
    from coreecho.models.coreecho import CoReEcho

    if not isinstance(model, CoReEcho):
        from coreecho.hub import load_model

        model = load_model(model, device=str(resolve_device(device)))
    dev = resolve_device(device)
    model = model.to(dev).eval()
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
        dataset.starts = dataset._index_starts(starts)
    rows = predict_dataset(model.encoder, model.head, dataset, batch_size=batch_size, device=dev,
                           precision=precision, num_workers=num_workers, progress=progress)
    truth = np.array([r["ef_true"] for r in rows])
    metrics = regression_metrics(truth, np.array([r["ef_pred"] for r in rows]), bootstrap=bootstrap, seed=seed)
    result = EvalResult(metrics, rows)
    if baseline is not None:
        result.mean_predictor_mae = float(np.abs(truth - baseline).mean())
    if output is not None:
        result.to_csv(output)
    return result
