"""Structural checks of converted weights: the right tensors, of the right kind, holding numbers a trained model has.

A checksum says a file is the published one; these checks say a file *could be* a trained CoReEcho model, and catch
what a checksum cannot know about (a file whose hash is not pinned yet, a user's own conversion): exactly the keys
the architecture has, each with its shape and dtype, every value finite, and BatchNorm running statistics that moved
away from their initial values (mean 0 and variance 1): every BatchNorm of a trained network has seen data, so a
layer still at its initial statistics means random or untrained weights dressed as a model.

Example:
    >>> import torch
    >>> bn = torch.nn.Sequential(torch.nn.BatchNorm1d(2))
    >>> problems(bn, dict(bn.state_dict()))
    ['BatchNorm running statistics at their initial values (mean 0, variance 1) in 1 of 1 layers: 0']
    >>> state = dict(bn.state_dict(), **{"0.running_mean": torch.tensor([0.1, -0.2])})
    >>> problems(bn, state)
    []
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from coreecho.errors import WeightsError

__all__ = ["problems", "check_weights", "initial_batchnorms"]


def _show(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" ... (+{len(items) - n} more)" if len(items) > n else "")


def initial_batchnorms(module: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[list[str], int]:
    """Names of the BatchNorm layers of ``module`` whose statistics in ``state`` are the initial ones, and how many
    BatchNorm layers with running statistics there are."""
    initial, total = [], 0
    for name, sub in module.named_modules():
        if not isinstance(sub, nn.modules.batchnorm._BatchNorm) or not sub.track_running_stats:
            continue
        total += 1
        prefix = f"{name}." if name else ""
        mean, var = state.get(prefix + "running_mean"), state.get(prefix + "running_var")
        if isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor) and \
                bool(torch.all(mean == 0)) and bool(torch.all(var == 1)):
            initial.append(name or "(root)")
    return initial, total


def problems(module: nn.Module, state: Mapping[str, torch.Tensor], *, trained: bool = True) -> list[str]:
    """What is wrong with ``state`` as the weights of ``module`` (empty when nothing is).

    Args:
        module: the model the weights are for (its own state gives the keys, shapes and dtypes).
        state: the weights as read from the file, in ``module``'s names, before any cast.
        trained: also require BatchNorm statistics that are not the initial ones.
    """
    own = module.state_dict()
    found: list[str] = []
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing:
        found.append(f"{len(missing)} missing keys: {_show(missing)}")
    if unexpected:
        found.append(f"{len(unexpected)} unexpected keys: {_show(unexpected)}")
    common = sorted(set(own) & set(state))
    bad_kind = [k for k in common if not isinstance(state[k], torch.Tensor)]
    if bad_kind:
        found.append(f"{len(bad_kind)} entries that are not tensors: {_show(bad_kind)}")
    tensors = [k for k in common if isinstance(state[k], torch.Tensor)]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in tensors
              if tuple(state[k].shape) != tuple(own[k].shape)]
    if shapes:
        found.append(f"{len(shapes)} tensors of another shape: {_show(shapes)}")
    dtypes = [f"{k} {state[k].dtype} vs {own[k].dtype}".replace("torch.", "") for k in tensors
              if state[k].dtype != own[k].dtype]
    if dtypes:
        found.append(f"{len(dtypes)} tensors of another dtype: {_show(dtypes)}")
    nonfinite = [k for k in tensors if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all())]
    if nonfinite:
        found.append(f"{len(nonfinite)} tensors with NaN or infinite values: {_show(nonfinite)}")
    if trained:
        initial, total = initial_batchnorms(module, state)
        if initial:
            found.append(f"BatchNorm running statistics at their initial values (mean 0, variance 1) in "
                         f"{len(initial)} of {total} layers: {_show(initial)}")
    return found


def check_weights(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, *, trained: bool = True) -> None:
    """Raise :class:`~coreecho.errors.WeightsError` listing every :func:`problems` of ``state``."""
    found = problems(module, state, trained=trained)
    if found:
        raise WeightsError(f"{source}: these weights fail coreecho's structural checks: {'; '.join(found)}. This is "
                           "not a trained CoReEcho model (a random, untrained, damaged or different file).")
