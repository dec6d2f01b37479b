"""Fit a transfer recipe on a whole dataset (:func:`finetune`) and get a :class:`~coreecho.CoReEcho` back.

Example:
    >>> tuned = finetune(model, VideoRegressionDataset("videos.csv"), mode="mlp", epochs=50)  # doctest: +SKIP
    >>> tuned.save_pretrained("my-model")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from coreecho.errors import InputError
from coreecho.models.config import PreprocessConfig
from coreecho.models.coreecho import CoReEcho
from coreecho.precision import resolve_device
from coreecho.seeding import derive_seed
from coreecho.train.transfer.config import TransferConfig, resolve_config
from coreecho.train.transfer.data import label_stats, labels_of, n_classes, task_of
from coreecho.train.transfer.passes import extract_embeddings
from coreecho.train.transfer.recipes import train_full, train_head, with_fresh_head

__all__ = ["finetune"]


def finetune(model: CoReEcho, dataset: Any, *, mode: str | None = None, task: str | None = None,
             config: TransferConfig | None = None, label_name: str | None = None,
             log: Callable[[str], None] | None = None, **overrides: Any) -> CoReEcho:
    """Fit a recipe on a whole dataset and return a new model with the trained head (the input is not modified).

    ``mode="mlp"`` trains a fresh head on frozen embeddings; ``mode="full"`` fine-tunes encoder and head. Linear
    probes are scikit-learn models, not CoReEcho heads: use :func:`cross_validate` for their metrics.

    Args:
        model: the pretrained model.
        dataset: see :func:`cross_validate`.
        mode: ``"mlp"`` or ``"full"`` (default: ``config.mode``, else ``"mlp"``).
        task: ``"regression"`` or ``"classification"`` (default: the dataset's).
        config: hyper-parameters; ``**overrides`` replace single fields.
        label_name: stored as the config's ``task`` (e.g. ``"mi"``); default: ``"ef"`` for regression heads
            with one output, ``"custom"`` for classification.
        log: called with progress lines.

    Returns:
        The fine-tuned :class:`~coreecho.CoReEcho` (save it with ``save_pretrained``); its config's metadata
        records the recipe, and its preprocessing is the dataset's (``dataset.preprocess``, e.g. CAMUS's whole
        sequences resampled to ``frames`` frames), so ``predict_ef`` feeds it as it was fine-tuned.

    Example:
        >>> tuned = finetune(model, VideoRegressionDataset("videos.csv"), mode="mlp", epochs=50)  # doctest: +SKIP
        >>> tuned.save_pretrained("my-model")  # doctest: +SKIP
    """
    cfg = resolve_config(mode, config, overrides)
    if cfg.mode == "linear":
        raise InputError("mode", "a linear probe is a scikit-learn model, not a CoReEcho head; use mode='mlp' or "
                                 "'full' to get a model, or cross_validate(..., mode='linear') for its metrics")
    task = task_of(dataset, task)
    y = labels_of(dataset, task)
    device = resolve_device(cfg.device)
    if task == "classification" and len(set(y.tolist())) < 2:
        raise InputError("labels", f"classification needs at least 2 classes; the labels hold only class "
                                   f"{sorted(set(y.tolist()))} (a model trained on them would be a "
                                   f"{n_classes(y)}-output head that never saw the other class)")
    out_dim = n_classes(y) if task == "classification" else 1
    mean, sd = label_stats(y, task)
    seed = derive_seed(cfg.seed, 10_000)
    tuned = with_fresh_head(copy.deepcopy(model).to(device), out_dim, seed)
    if cfg.mode == "mlp":
        if log:
            log(f"embedding {len(dataset)} videos with the frozen encoder")
        emb = extract_embeddings(tuned, dataset, config=cfg)
        train_head(tuned.head, emb, y, task, cfg, seed, mean, sd, device)
    else:
        train_full(tuned, dataset, range(len(dataset)), task, cfg, seed, mean, sd, log)
    tuned.eval()
    tuned.config.task = label_name or ("ef" if task == "regression" else "custom")
    pre = getattr(dataset, "preprocess", None)
    if isinstance(pre, PreprocessConfig):  # served as fine-tuned (e.g. CAMUS: whole sequences, not clips)
        tuned.config.preprocessing = pre
    tuned.config.metadata = {**tuned.config.metadata, "finetune": {
        "mode": cfg.mode, "task": task, "n_videos": len(dataset), "epochs": cfg.epochs, "lr": cfg.lr,
        "head_lr": cfg.head_lr, "weight_decay": cfg.weight_decay, "batch_size": cfg.batch_size, "seed": cfg.seed,
        "classes": out_dim if task == "classification" else None,
        "label_mean": mean if task == "regression" else None}}
    return tuned
