"""The three transfer recipes' training: a linear probe, a fresh head on frozen embeddings, full fine-tuning.

* ``linear``: a scikit-learn model on standardised embeddings: ridge regression with the penalty chosen by
  efficient leave-one-out (``RidgeCV``), or logistic regression (L2, ``C=1``) — :func:`fit_linear`.
* ``mlp``: a fresh CoReEcho head (:func:`fresh_head`) trained on precomputed embeddings with AdamW (L1 loss for
  regression, cross-entropy for classification) — :func:`train_head`.
* ``full``: encoder and a fresh head trained end to end on clips (AdamW, a small encoder learning rate, a larger
  head learning rate, pad-and-crop augmentation) — :func:`train_full`.

Regression heads are trained on standardised targets (``(y - mean) / sd`` of the training fold) and the scaling is
folded into the last layer afterwards (:func:`fold_scale`), so the head outputs label units (EF in %) and the
learning rate does not depend on the label's scale. Classification heads have one output per class.

The training steps call the model themselves (``model(x)``, ``head(x)``), by design: they need gradients,
training-mode BatchNorm and dropout, which inference's engine never runs. Every pass of a frozen model over dataset
items goes through :func:`coreecho.engine.stream` instead (:mod:`coreecho.train.transfer.passes`).

Example:
    >>> from coreecho import CoReEcho
    >>> from coreecho.models.config import ModelConfig
    >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
    ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8}))
    >>> a, b = fresh_head(model, 1, seed=3), fresh_head(model, 1, seed=3)
    >>> bool((a[2].weight == b[2].weight).all()), float(a[-1].bias)
    (True, 0.0)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from coreecho.models.coreecho import CoReEcho
from coreecho.models.head import RegressionHead
from coreecho.seeding import derive_seed
from coreecho.train.transfer.config import TransferConfig
from coreecho.train.transfer.data import dataset_mode, train_loader

__all__ = ["fresh_head", "with_fresh_head", "fit_linear", "train_head", "train_full", "fold_scale"]


def fresh_head(model: CoReEcho, out_dim: int, seed: int) -> RegressionHead:
    """The one fresh-head recipe of transfer: ``model``'s head architecture with ``out_dim`` outputs.

    Hidden width and dropout come from ``model.config.head_args``; a one-output (regression) head starts with a
    zero last bias, because it learns standardised targets; the weights are drawn from ``seed`` alone (the global
    torch generator is left as it was), on the model's device and dtype, in eval mode (the trainers switch it).
    """
    args = {**model.config.head_args, "out_dim": int(out_dim), "bias_init": 0.0 if out_dim == 1 else None}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = RegressionHead(model.embed_dim, **args)
    return head.to(device=model.device, dtype=model.dtype).eval()


def with_fresh_head(model: CoReEcho, out_dim: int, seed: int) -> CoReEcho:
    """``model`` itself with :func:`fresh_head` in place of its head, its config's ``head_args`` updated so that a
    saved model rebuilds the new head (for fine-tuning a copy)."""
    model.head = fresh_head(model, out_dim, seed)
    model.config.head_args = {**model.config.head_args, "out_dim": int(out_dim),
                              "bias_init": 0.0 if out_dim == 1 else None}
    return model


def fold_scale(head: nn.Module, mean: float, sd: float) -> None:
    """Make a head trained on ``(y - mean) / sd`` output ``y``."""
    last = head[-1]
    with torch.no_grad():
        last.weight.mul_(sd)
        last.bias.mul_(sd).add_(mean)


def _target(y: torch.Tensor, task: str, mean: float, sd: float) -> torch.Tensor:
    return y.long() if task == "classification" else (y.float() - mean) / sd


def _loss(out: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    if task == "classification":
        return F.cross_entropy(out.float(), target)
    return F.l1_loss(out.float().reshape(-1), target.reshape(-1))


def fit_linear(emb: np.ndarray, y: np.ndarray, task: str, cfg: TransferConfig) -> Any:
    """The ``linear`` recipe: a fitted scikit-learn pipeline (standardisation, then ridge or logistic regression)."""
    from sklearn.linear_model import LogisticRegression, RidgeCV  # noqa: PLC0415 - scikit-learn loads slowly
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    if task == "classification":
        est = LogisticRegression(C=cfg.logistic_c, max_iter=5000)
    else:
        est = RidgeCV(alphas=cfg.ridge_alphas)
    return make_pipeline(StandardScaler(), est).fit(emb.astype(np.float64), y)


def train_head(head: nn.Module, emb: np.ndarray, y: np.ndarray, task: str, cfg: TransferConfig, seed: int,
               mean: float, sd: float, device: torch.device) -> nn.Module:
    """The ``mlp`` recipe: train ``head`` on embeddings ``emb`` (returned in eval mode, in label units)."""
    torch.manual_seed(seed)
    x_all = torch.as_tensor(emb, dtype=torch.float32, device=device)
    y_all = torch.as_tensor(y, device=device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.head_lr, weight_decay=cfg.weight_decay)
    n, bs = len(x_all), int(cfg.batch_size or 32)
    gen = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(int(cfg.epochs or 1)):
        perm = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, bs):
            b = perm[start:start + bs]
            if len(b) < 2:
                continue
            loss = _loss(head(x_all[b]), _target(y_all[b], task, mean, sd), task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    head.eval()
    if task == "regression":
        fold_scale(head, mean, sd)
    return head


def train_full(model: CoReEcho, dataset: Any, indices: Sequence[int], task: str, cfg: TransferConfig, seed: int,
               mean: float, sd: float, log: Callable[[str], None] | None) -> CoReEcho:
    """The ``full`` recipe: train encoder and head on the items ``indices`` (returned in eval mode)."""
    torch.manual_seed(seed)
    device = model.device
    opt = torch.optim.AdamW([
        {"params": list(model.encoder.parameters()), "lr": cfg.lr},
        {"params": list(model.head.parameters()), "lr": cfg.head_lr},
    ], weight_decay=cfg.weight_decay)
    model.train()
    with dataset_mode(dataset, True, cfg):
        for epoch in range(int(cfg.epochs or 1)):
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(derive_seed(seed, epoch) % (2**31))
            total, count = 0.0, 0
            for batch in train_loader(dataset, indices, int(cfg.batch_size or 16), cfg, derive_seed(seed, epoch, 1)):
                x = batch["video"].to(device=device, dtype=model.dtype)
                if x.shape[0] < 2:
                    continue
                y = batch["label"].repeat_interleave(batch["counts"]).to(device)
                loss = _loss(model(x), _target(y, task, mean, sd), task)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, count = total + loss.item() * x.shape[0], count + x.shape[0]
            if log is not None:
                log(f"    epoch {epoch + 1}/{cfg.epochs}: training loss {total / max(count, 1):.4f}")
    model.eval()
    if task == "regression":
        fold_scale(model.head, mean, sd)
    return model
