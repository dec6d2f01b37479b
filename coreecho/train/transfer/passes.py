"""The frozen-model passes of the transfer recipes, through the engine: embeddings and predictions of dataset items.

Both run :func:`coreecho.engine.stream` over the dataset's evaluation-mode items (:mod:`coreecho.data.contract`),
so they share inference's precision path, its batch policy (clips per forward pass) and its loader workers.

Example:
    >>> emb = extract_embeddings(model, dataset)  # doctest: +SKIP
    >>> emb.shape  # doctest: +SKIP
    (450, 512)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from coreecho.engine import DatasetItems, stream
from coreecho.inference import inference_view
from coreecho.models.coreecho import CoReEcho
from coreecho.train.transfer.config import TransferConfig
from coreecho.train.transfer.data import dataset_mode

__all__ = ["extract_embeddings", "predict_outputs"]


def _run(model: CoReEcho, dataset: Any, indices: Sequence[int] | None, cfg: TransferConfig,
         batch_size: int | None, finish: Any, desc: str) -> list[Any]:
    idx = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    with dataset_mode(dataset, False, cfg):
        return list(stream(DatasetItems(dataset, idx), inference_view(model), finish=finish, batch_size=batch_size,
                           precision=cfg.precision, workers=cfg.num_workers, errors="raise", desc=desc))


def extract_embeddings(model: CoReEcho, dataset: Any, indices: Sequence[int] | None = None, *,
                       config: TransferConfig | None = None, batch_size: int | None = None) -> np.ndarray:
    """Frozen-encoder embeddings ``[N, D]`` (float32) of the items, each the mean over its clips.

    Args:
        model: the model (never modified: a model in training mode is run through an eval-mode copy).
        dataset: a dataset of :mod:`coreecho.data`; it is put in evaluation mode (``config.eval_clips`` evenly
            spaced clips, no augmentation) for the call.
        indices: the items (default: all).
        config: ``eval_clips``, ``precision`` and ``num_workers`` are used.
        batch_size: clips per forward pass; ``None``: the engine's batch policy.

    Example:
        >>> emb = extract_embeddings(model, dataset)  # doctest: +SKIP
        >>> emb.shape  # doctest: +SKIP
        (450, 512)
    """
    rows = _run(model, dataset, indices, config or TransferConfig(), batch_size,
                lambda _item, emb, _out: emb.mean(0), "embed")
    return torch.stack(rows).numpy() if rows else np.zeros((0, model.embed_dim), np.float32)


def predict_outputs(model: CoReEcho, dataset: Any, indices: Sequence[int], task: str, cfg: TransferConfig,
                    batch_size: int | None = None) -> np.ndarray:
    """Per-item head outputs (mean over clips): values ``[N]`` for regression, class probabilities ``[N, C]``
    (per-clip softmax, then the mean) for classification."""

    def finish(_item: Any, _emb: Any, out: np.ndarray) -> torch.Tensor:
        y = torch.from_numpy(out)
        return (y.softmax(-1) if task == "classification" else y).mean(0)

    return torch.stack(_run(model, dataset, indices, cfg, batch_size, finish, "predict")).numpy()
