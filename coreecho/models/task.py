"""What a model predicts, read from its config: EF regression (one output) or classification (several).

A model's config records its head (``head_args["out_dim"]``, 1 when absent), its ``task`` label (``"ef"``,
``"mi"``, ``"custom"``) and, for a fine-tuned model, ``metadata["finetune"]["task"]`` (``"regression"`` or
``"classification"``). Commands that read a model's outputs as EFs (``evaluate``, ``calibrate``, ``predict``,
stage 2 continuing the head) call :func:`check_ef_regression`, so a 2-class model is refused with a clear message
instead of having its logits averaged as EFs.

Example:
    >>> from coreecho.models.config import ModelConfig
    >>> cfg = ModelConfig(head_args={"out_dim": 2}, task="custom")
    >>> model_task(cfg), head_outputs(cfg)
    ('classification', 2)
    >>> check_ef_regression(cfg, "my-model", "evaluate")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    coreecho.models.task.ModelTaskError: my-model: is a classification model with 2 output(s) ...
"""

from __future__ import annotations

from typing import Any

from coreecho.errors import ConfigError

__all__ = ["ModelTaskError", "head_outputs", "model_task", "check_ef_regression"]


class ModelTaskError(ConfigError):
    """A model of another task was given (a classifier where an EF regressor is needed); the message names it."""


def head_outputs(config: Any) -> int:
    """Outputs of the model's head (``head_args["out_dim"]``, default 1)."""
    value = (getattr(config, "head_args", None) or {}).get("out_dim", 1)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


def model_task(config: Any) -> str:
    """``"classification"`` or ``"regression"``: the fine-tuning record when there is one, else the head's outputs."""
    finetune = (getattr(config, "metadata", None) or {}).get("finetune")
    recorded = finetune.get("task") if isinstance(finetune, dict) else None
    if recorded in ("classification", "regression"):
        return str(recorded)
    return "classification" if head_outputs(config) > 1 else "regression"


def check_ef_regression(config: Any, source: str, use: str) -> None:
    """Refuse a model whose outputs are not one regression value (an EF).

    Args:
        config: the model's :class:`~coreecho.models.config.ModelConfig`.
        source: the model as the user named it (first in the message).
        use: what needed an EF model (``"evaluate"``, ``"calibrate"``...).

    Raises:
        ModelTaskError: a classification model, or a head with more than one output.
    """
    task, outputs = model_task(config), head_outputs(config)
    if task == "classification" or outputs != 1:
        raise ModelTaskError(f"{source}: is a {task} model with {outputs} output(s) (config task "
                             f"{getattr(config, 'task', '?')!r}); {use} needs an EF regression model with one output. "
                             "Use the model this command was meant for")
