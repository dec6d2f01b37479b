"""The accepted range of every training setting: one table for ``TrainConfig`` and the ``coreecho train`` options.

A value outside its range is refused before anything runs: by the option's parser (``--lr nan`` is a usage error
naming ``--lr``) and by :class:`~coreecho.train.config.TrainConfig` (a :class:`~coreecho.errors.ConfigError`
naming the field, for the Python API and ``--config`` files). The ranges and why (see ``docs/training.md``,
"Safety"):

* learning rates ``lr``, ``head_lr``: finite, in ``(0, 1]``. AdamW moves every weight by about ``lr`` per step;
  above 1 a step moves weights by more than their own scale (the official recipe uses 1e-4).
* weight decays: finite, in ``[0, 1e3]``, and ``lr * weight_decay < 1`` (AdamW multiplies weights by
  ``1 - lr * weight_decay`` every step: at 1 or more they are zeroed or flip sign).
* ``lr_decay``: finite, in ``(0, 1]`` (a factor that multiplies the learning rate: 0 stops learning, a negative one
  gives a negative learning rate, above 1 it grows).
* ``lr_decay_epochs``: integers >= 0 (0-based passes).
* ``temperature``: finite, in ``(0, 1e3]``.
* counts (``batch_size``, ``epochs``, ``val_clips``, ``micro_batch``, ``loss_chunk_size``, ``limit_*``): integers
  >= 1; ``num_workers``, ``save_every_steps``, ``seed``: integers >= 0.

Example:
    >>> check_values(_Values(lr=float("nan")))
    ['lr must be a finite number in (0, 1], got nan']
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["FLOAT_RANGES", "INT_RANGES", "check_types", "check_values", "describe_range", "in_range",
           "TYPE_RULES"]

#: name -> (low, high, low included, high included)
FLOAT_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "lr": (0.0, 1.0, False, True),
    "head_lr": (0.0, 1.0, False, True),
    "weight_decay": (0.0, 1e3, True, True),
    "head_weight_decay": (0.0, 1e3, True, True),
    "lr_decay": (0.0, 1.0, False, True),
    "temperature": (0.0, 1e3, False, True),
}
#: name -> (low, high or None)
INT_RANGES: dict[str, tuple[int, int | None]] = {
    "batch_size": (1, 4096), "epochs": (1, 100_000), "val_clips": (1, 1000), "micro_batch": (1, 4096),
    "loss_chunk_size": (1, None), "limit_train": (1, None), "limit_val": (1, None), "num_workers": (0, 64),
    "save_every_steps": (0, None), "seed": (0, 2**63 - 1), "stop_after_steps": (1, None),
}
_OPTIONAL = {"epochs", "loss_chunk_size", "limit_train", "limit_val", "stop_after_steps"}
#: name -> (accepted types, what it must be); checked before any value is used
TYPE_RULES: dict[str, tuple[tuple[type, ...], str]] = {
    "data": ((str,), "a string (a folder)"), "out": ((str,), "a string (a folder)"),
    "init": ((str,), "a string"), "preset": ((str, type(None)), "a preset name or null"),
    "architecture": ((str,), "a string"), "encoder_args": ((dict,), "an object"), "head_args": ((dict,), "an object"),
    "reinit_head": ((bool,), "true or false"), "cached_batch": ((bool,), "true or false"),
    "grad_checkpointing": ((bool,), "true or false"), "sync_bn": ((bool,), "true or false"),
    "resume": ((bool,), "true or false"), "progress": ((bool,), "true or false"),
    "tensorboard": ((bool,), "true or false"), "pin_memory": ((bool, type(None)), "true, false or null"),
    "device": ((str, type(None)), "a device name or null"), "precision": ((str,), "a string"),
    "command": ((str, type(None)), "a string or null"), "overwrite": ((bool,), "true or false"),
    "lr_decay_epochs": ((list, tuple), "a list of integers"),
}


class _Values:
    def __init__(self, **kw: Any):
        self.__dict__.update(kw)


def in_range(value: float, name: str) -> bool:
    """Whether ``value`` is finite and in the range of float setting ``name``."""
    low, high, low_in, high_in = FLOAT_RANGES[name]
    if not math.isfinite(value):
        return False
    return (value >= low if low_in else value > low) and (value <= high if high_in else value < high)


def describe_range(name: str) -> str:
    """``"a finite number in (0, 1]"`` for a float setting, ``"an integer in 1..4096"`` for an integer one."""
    if name in FLOAT_RANGES:
        low, high, low_in, high_in = FLOAT_RANGES[name]
        return f"a finite number in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
    low, high = INT_RANGES[name]
    return f"an integer in {low}..{high}" if high is not None else f"an integer >= {low}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_types(cfg: Any) -> list[str]:
    """Problems with the *types* of a config's fields (``"lr must be a number, got str '0.1'"``)."""
    problems = []
    for name, (types, what) in TYPE_RULES.items():
        if hasattr(cfg, name) and not isinstance(getattr(cfg, name), types):
            value = getattr(cfg, name)
            problems.append(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    for name in FLOAT_RANGES:
        value = getattr(cfg, name, 1.0)
        if not _is_number(value):
            problems.append(f"{name} must be a number, got {type(value).__name__} {value!r}")
    for name in INT_RANGES:
        value = getattr(cfg, name, 1)
        if value is None and name in _OPTIONAL:
            continue
        if not _is_int(value):
            problems.append(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    epochs = getattr(cfg, "lr_decay_epochs", ())
    if isinstance(epochs, (list, tuple)) and not all(_is_int(v) for v in epochs):
        problems.append(f"lr_decay_epochs must be a list of integers, got {list(epochs)!r}")
    return problems


def check_values(cfg: Any) -> list[str]:
    """Problems with the values of a config whose types are right (one line per field)."""
    from coreecho.models.build import ENCODER_PRESETS

    problems = []
    for name in FLOAT_RANGES:
        value = getattr(cfg, name, None)
        if value is not None and not in_range(float(value), name):
            problems.append(f"{name} must be {describe_range(name)}, got {value!r}")
    for name, (low, high) in INT_RANGES.items():
        value = getattr(cfg, name, None)
        if value is None:
            continue
        if value < low or (high is not None and value > high):
            problems.append(f"{name} must be {describe_range(name)}, got {value!r}")
    for lr_name, wd_name in (("lr", "weight_decay"), ("head_lr", "head_weight_decay")):
        lr, wd = getattr(cfg, lr_name, None), getattr(cfg, wd_name, None)
        if lr is not None and wd is not None and math.isfinite(lr * wd) and lr * wd >= 1:
            problems.append(f"{lr_name} x {wd_name} must be < 1 (AdamW multiplies the weights by 1 - lr x "
                            f"weight_decay every step), got {lr!r} x {wd!r}")
    bad = [v for v in getattr(cfg, "lr_decay_epochs", ()) if v < 0]
    if bad:
        problems.append(f"lr_decay_epochs must be 0-based passes (integers >= 0), got {bad[0]}")
    precision = getattr(cfg, "precision", "auto")
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        problems.append(f"precision must be auto, fp32, bf16 or fp16 (got {precision!r})")
    preset = getattr(cfg, "preset", None)
    if preset is not None and preset not in ENCODER_PRESETS:
        problems.append(f"preset must be one of {', '.join(ENCODER_PRESETS)} (got {preset!r})")
    return problems
