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
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coreecho.errors import WeightsError

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "coreecho-train-checkpoint"


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
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


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
    return ckpt
