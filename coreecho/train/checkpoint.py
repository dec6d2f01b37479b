"""Training checkpoints: atomic writes, random number generator states, safe loading.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only (model and optimiser state dicts,
epoch, step within the epoch, best validation error, the training config, the metrics history, the RNG states of
Python, numpy, torch and CUDA), so it loads with ``torch.load(weights_only=True)``: no arbitrary pickle is ever
executed. It is written to a temporary file in the same folder, flushed to disk, then renamed over the old one
(``os.replace``), so a run killed while saving leaves the previous checkpoint intact.

Example:
    >>> import tempfile, os, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "checkpoint_last.pt")
    >>> _ = save_checkpoint(path, {"epoch": 3, "rng": rng_state(), "w": torch.ones(2)})
    >>> ckpt = load_checkpoint(path)
    >>> ckpt["epoch"], ckpt["w"].tolist()
    (3, [1.0, 1.0])
    >>> set_rng_state(ckpt["rng"])
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coreecho._atomic import replace_atomically
from coreecho.errors import WeightsError

__all__ = ["save_checkpoint", "load_checkpoint", "check_checkpoint", "rng_state", "set_rng_state", "CHECKPOINT_FORMAT",
           "TRAINING_ENTRIES"]

CHECKPOINT_FORMAT = "coreecho-train-checkpoint"

#: Entries of a training run's checkpoint (written by :mod:`coreecho.train.engine`) and what each must be.
TRAINING_ENTRIES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "stage": (str, "a stage name"),
    "config": (dict, "the training config (a dict)"),
    "model_config": (dict, "the model config (a dict)"),
    "model": (dict, "the model's state dict"),
    "optimizers": (dict, "the optimisers' state dicts"),
    "epoch": (int, "an integer"),
    "step_in_epoch": (int, "an integer"),
    "global_step": (int, "an integer"),
    "best_val_mae": ((int, float), "a number"),
    "best_epoch": (int, "an integer"),
    "history": (list, "a list of per-epoch metrics"),
    "rng": (dict, "the random generator states"),
    "world_size": (int, "an integer"),
}
#: Any of these marks a checkpoint as a training run's, checked against :data:`TRAINING_ENTRIES`.
_RUN_MARKERS = ("stage", "model", "optimizers", "model_config")


def rng_state() -> dict[str, Any]:
    """The states of Python's, numpy's, torch's and (if initialised) CUDA's global generators, as tensors/ints."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA only when present in both the state and this process)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (temporary file in the same folder, fsync, ``os.replace``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return replace_atomically(target, lambda fh: torch.save({"format": CHECKPOINT_FORMAT, **state}, fh), binary=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        WeightsError: the file is missing, unreadable, or not a coreecho training checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{p}: no such checkpoint")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds
        raise WeightsError(f"{p}: cannot read the training checkpoint ({err})") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{p}: not a coreecho training checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    if any(k in ckpt for k in _RUN_MARKERS):
        check_checkpoint(ckpt, p)
    return ckpt


def check_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike = "checkpoint") -> None:
    """Check that a training run's checkpoint has every entry of :data:`TRAINING_ENTRIES`, of the right kind.

    Raises:
        WeightsError: naming the first missing or bad entry (a corrupt or hand-edited checkpoint), and what to do.

    Example:
        >>> check_checkpoint({"stage": "stage1"}, "ckpt.pt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        coreecho.errors.WeightsError: ckpt.pt: the checkpoint has no 'config' entry ...
    """
    fix = ("the file was edited or is damaged; restore it, or start again without --resume (or with another --out)")

    def bad(entry: str, problem: str) -> WeightsError:
        return WeightsError(f"{path}: {problem}; {fix}")

    for entry, (kind, what) in TRAINING_ENTRIES.items():
        if entry not in ckpt:
            raise bad(entry, f"the checkpoint has no {entry!r} entry ({what})")
        value = ckpt[entry]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad(entry, f"entry {entry!r} should be {what}, found {type(value).__name__}")
    for key, value in ckpt["model"].items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise bad("model", f"entry 'model' should map names to tensors; {key!r} holds {type(value).__name__}")
    for name, state in ckpt["optimizers"].items():
        if not isinstance(state, dict) or not {"state", "param_groups"} <= set(state):
            raise bad("optimizers", f"entry 'optimizers'[{name!r}] is not an optimiser state dict")
    rng = ckpt["rng"]
    python, numpy = rng.get("python"), rng.get("numpy")
    if not (isinstance(python, (list, tuple)) and len(python) == 3 and isinstance(numpy, dict)
            and {"name", "keys", "pos", "has_gauss", "cached_gaussian"} <= set(numpy)
            and isinstance(numpy.get("keys"), torch.Tensor) and isinstance(rng.get("torch"), torch.Tensor)):
        raise bad("rng", "entry 'rng' does not hold the python, numpy and torch generator states")
    for entry in ("epoch", "step_in_epoch", "global_step", "world_size"):
        if ckpt[entry] < (1 if entry == "world_size" else 0):
            raise bad(entry, f"entry {entry!r} is {ckpt[entry]}, out of range")
