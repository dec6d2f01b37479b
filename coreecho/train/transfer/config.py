"""Hyper-parameters of the transfer recipes (:class:`TransferConfig`) and how a call's arguments make one.

Example:
    >>> resolve_config("full", None, {"epochs": 2}).epochs
    2
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from coreecho.errors import InputError
from coreecho.precision import PRECISIONS

__all__ = ["MODES", "TASKS", "TransferConfig", "resolve_config"]

MODES = ("linear", "mlp", "full")
TASKS = ("regression", "classification")


@dataclass
class TransferConfig:
    """Hyper-parameters of the recipes (the defaults are this library's choices; the paper does not list them).

    Example:
        >>> cfg = TransferConfig(mode="full")
        >>> cfg.epochs, cfg.batch_size, cfg.lr, cfg.head_lr
        (10, 16, 1e-05, 0.001)

    Attributes:
        mode: ``"linear"``, ``"mlp"`` or ``"full"``.
        epochs: training epochs (default: 100 for ``mlp``, 10 for ``full``; unused by ``linear``).
        batch_size: videos (``full``) or embeddings (``mlp``) per training step; default 16 / 32 (the frozen
            passes size their forward passes by the engine's batch policy instead).
        lr: encoder learning rate of ``full``.
        head_lr: head learning rate of ``mlp`` and ``full``.
        weight_decay: AdamW weight decay.
        augment: pad-and-crop augmentation during ``full`` training.
        eval_clips: clips per video for embeddings and evaluation of clip datasets (CSV); sequence datasets
            (CAMUS, HMC-QU) have one clip per item.
        ridge_alphas: penalties tried by ``RidgeCV`` (``linear`` regression).
        logistic_c: inverse penalty of the logistic regression (``linear`` classification).
        seed: seed of initialisation, data order, dropout and augmentation (each fold derives its own).
        device: ``None`` picks CUDA when available (see :func:`coreecho.precision.resolve_device`).
        num_workers: loader worker processes, for training batches and for the frozen-encoder passes
            (embeddings, predictions), which run through :func:`coreecho.engine.stream`.
        precision: arithmetic of those frozen-encoder passes (``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``; see
            :mod:`coreecho.precision`); their clips per forward pass follow the engine's batch policy.
    """

    mode: str = "mlp"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float = 1e-5
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    augment: bool = True
    eval_clips: int = 3
    ridge_alphas: tuple[float, ...] = tuple(float(10.0**e) for e in range(-3, 5))
    logistic_c: float = 1.0
    seed: int = 0
    device: str | None = None
    num_workers: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError("mode", f"expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.epochs is None:
            self.epochs = {"linear": 0, "mlp": 100, "full": 10}[self.mode]
        if self.batch_size is None:
            self.batch_size = 32 if self.mode == "mlp" else 16
        if self.mode != "linear" and self.epochs < 1:
            raise InputError("epochs", f"must be >= 1 for mode {self.mode!r}, got {self.epochs}")
        if self.batch_size < 2:
            raise InputError("batch_size", f"must be >= 2 (the head has BatchNorm), got {self.batch_size}")
        if min(self.lr, self.head_lr) <= 0 or self.weight_decay < 0 or self.eval_clips < 1:
            raise InputError("config", "lr and head_lr must be > 0, weight_decay >= 0 and eval_clips >= 1")
        if self.precision not in PRECISIONS:
            raise InputError("precision", f"expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")


def resolve_config(mode: str | None, config: TransferConfig | None, overrides: dict[str, Any]) -> TransferConfig:
    """The config of a call: ``config`` (default: one for ``mode``, else ``"mlp"``) with ``overrides`` applied.

    Changing the mode of a given config resets ``epochs`` and ``batch_size`` to the new mode's defaults.

    Example:
        >>> resolve_config("full", TransferConfig(mode="mlp"), {}).batch_size
        16
    """
    if config is None:
        return TransferConfig(mode=mode or "mlp", **overrides)
    fields_ = asdict(config)
    if mode is not None and mode != config.mode:  # epochs/batch size defaults follow the new mode
        fields_.update(mode=mode, epochs=None, batch_size=None)
    fields_.update(overrides)
    return TransferConfig(**fields_)
