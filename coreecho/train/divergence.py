"""When a training run has diverged, and the error that stops it.

A run has **diverged** when, at any step or validation (the definition is deliberate; ``docs/training.md``,
"Safety"):

* a training loss (the Rank-N-Contrast loss, the head's L1 loss) is NaN or infinite;
* the head's training L1 error exceeds :data:`EXPLODED_EF` EF points (an EF is 0-100: an error of 1,000 points
  means the head's outputs have left any meaningful range);
* a validation prediction is NaN or infinite, or the validation MAE exceeds :data:`EXPLODED_EF`;
* a weight is NaN or infinite when a checkpoint is about to be written.

The run then stops with :class:`TrainingDiverged` (``stage1 diverged at epoch N, step S: ...``) before anything
else is written: ``best_model/`` (the best *finite* model so far) and the last checkpoint stay as they were.

Example:
    >>> find_divergence({"loss": 0.7, "l1": float("nan")})
    'training l1 is nan'
    >>> find_divergence({"l1": 2e3}) is not None, find_divergence({"loss": 3.0, "l1": 12.0})
    (True, None)
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from coreecho.errors import CoReEchoError

__all__ = ["TrainingDiverged", "EXPLODED_EF", "find_divergence", "validation_divergence", "weights_divergence"]

#: An EF error (L1 of a step, validation MAE) above this many EF points means the run has diverged.
EXPLODED_EF = 1e3
_EF_SCALARS = ("l1",)  # scalars in EF points


class TrainingDiverged(CoReEchoError):
    """A training run diverged (a loss, prediction or weight NaN/infinite, or an EF error above
    :data:`EXPLODED_EF`); the message says where (epoch, step), what, and which best model is kept."""


def find_divergence(scalars: Mapping[str, Any]) -> str | None:
    """Why a step's scalars (``{"loss": ..., "l1": ...}``) show divergence, or ``None``."""
    for key, value in scalars.items():
        v = float(value)
        if not math.isfinite(v):
            return f"training {key} is {v}"
        if key in _EF_SCALARS and abs(v) > EXPLODED_EF:
            return f"training {key} is {v:.4g} EF points (above {EXPLODED_EF:g})"
    return None


def validation_divergence(truth: Iterable[float], pred: Iterable[float], names: Iterable[str] = ()) -> str | None:
    """Why validation predictions show divergence (a non-finite prediction, or MAE above :data:`EXPLODED_EF`)."""
    truth, pred, names = list(truth), list(pred), list(names)
    for i, p in enumerate(pred):
        if not math.isfinite(float(p)):
            who = f" for {names[i]}" if i < len(names) else ""
            return f"validation prediction{who} is {float(p)}"
    if pred:
        mae = sum(abs(float(a) - float(b)) for a, b in zip(truth, pred)) / len(pred)
        if mae > EXPLODED_EF:
            return f"validation MAE is {mae:.4g} EF points (above {EXPLODED_EF:g})"
    return None


def weights_divergence(model: nn.Module) -> str | None:
    """The first parameter or buffer of ``model`` holding a NaN or an infinity, as a reason; ``None`` if finite."""
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return f"weight {name} holds NaN or infinity"
    return None
