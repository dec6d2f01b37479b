"""Training checkpoints: atomic writes, verified contents, the last two kept, random number generator states.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only (model and optimiser state dicts,
epoch, step within the epoch, best validation error, the training config, the metrics history, the RNG states of
Python, numpy, torch and CUDA), so it loads with ``torch.load(weights_only=True)``: no arbitrary pickle is ever
executed. It is written through :func:`coreecho._atomic.replace_atomically` (a temporary file in the same folder,
flushed to disk, renamed over the old one), so a run killed while saving leaves the previous checkpoint intact;
temporaries of an interrupted save are removed by the next save.

**Verified.** Every checkpoint carries ``payload_sha256``, a sha256 of its whole content (each entry's name, type
and value; each tensor's dtype, shape and bytes), computed at save time and checked at load: a checkpoint changed
on disk (a flipped byte in tensor data) is a :class:`~coreecho.errors.ChecksumError` naming the file. Checkpoints
written before digests existed load without the check (a warning says so once).

**The last two are kept.** Saving ``checkpoint_last.pt`` first keeps the one it replaces as ``checkpoint_prev.pt``
(:func:`previous_path`); :func:`load_latest_checkpoint` (what ``--resume`` uses) falls back to it, with a warning,
when the last one is damaged or missing. Resuming from the previous checkpoint repeats a few steps and, training
being exactly resumable, ends with the same result.

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

import hashlib
import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coreecho._atomic import clean_stale_temporaries, replace_atomically
from coreecho.errors import ChecksumError, WeightsError

__all__ = ["save_checkpoint", "load_checkpoint", "load_latest_checkpoint", "previous_path", "payload_digest",
           "check_checkpoint", "rng_state", "set_rng_state", "CHECKPOINT_FORMAT", "TRAINING_ENTRIES", "DIGEST_KEY"]

CHECKPOINT_FORMAT = "coreecho-train-checkpoint"
#: The entry holding the sha256 of every other entry (:func:`payload_digest`).
DIGEST_KEY = "payload_sha256"
_UNVERIFIED_WARNED: set[str] = set()

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


def payload_digest(payload: dict[str, Any]) -> str:
    """sha256 (hex) of a checkpoint's entries: names, types and values, tensors by dtype, shape and bytes.

    The same for a dict before :func:`torch.save` and after :func:`torch.load` (whatever the device it is loaded to).
    """
    h = hashlib.sha256()
    _feed(h, payload)
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, dict):
        h.update(f"D{len(value)}|".encode())
        for k, v in value.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, (list, tuple)):
        h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}|".encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, (bytes, bytearray)):
        h.update(f"B{len(value)}|".encode() + bytes(value))
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(f"S{len(data)}|".encode() + data)
    else:  # None, bool, int, float (repr round-trips exactly), torch.dtype, ...
        text = f"{type(value).__name__}:{value!r}".encode("utf-8", "surrogatepass")
        h.update(f"V{len(text)}|".encode() + text)


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint replaced by a save of ``path`` is kept: ``checkpoint_prev.pt`` for
    ``checkpoint_last.pt``, else ``NAME.prev.pt``."""
    p = Path(path)
    name = p.name.replace("_last", "_prev", 1) if "_last" in p.name else f"{p.stem}.prev{p.suffix}"
    return p.with_name(name)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], *, keep_previous: bool = True) -> Path:
    """Write ``state`` atomically with its digest; the checkpoint it replaces becomes :func:`previous_path`.

    Raises:
        OutputError: the file cannot be written (disk full, permission, read-only; typed, naming it) or its path
            holds a link, folder or device; the previous checkpoints are unchanged.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = previous_path(target)
    for name in (target.name, previous.name):
        clean_stale_temporaries(target.parent, name)
    payload = {"format": CHECKPOINT_FORMAT, **{k: v for k, v in state.items() if k != DIGEST_KEY}}
    payload[DIGEST_KEY] = payload_digest({k: v for k, v in payload.items()})
    return replace_atomically(target, lambda fh: torch.save(payload, fh), binary=True,
                              keep_previous=previous if keep_previous else None)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``) and check its digest.

    Raises:
        ChecksumError: the content does not match its digest (the file changed after it was written).
        WeightsError: the file is missing, unreadable, or not a coreecho training checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{p}: no such checkpoint")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds
        raise WeightsError(f"{p}: cannot read the training checkpoint ({err}); the file is damaged or is not a "
                           "checkpoint") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{p}: not a coreecho training checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    digest = ckpt.pop(DIGEST_KEY, None)
    if digest is None:
        if str(p.absolute()) not in _UNVERIFIED_WARNED:
            _UNVERIFIED_WARNED.add(str(p.absolute()))
            warnings.warn(f"{p}: this checkpoint was written before coreecho recorded checkpoint digests; it is "
                          "loaded without checking its content", UserWarning, stacklevel=2)
    elif digest != payload_digest(ckpt):
        raise ChecksumError(f"{p}: the checkpoint's content does not match the sha256 recorded when it was written "
                            "(the file was changed or damaged on disk); it cannot be trusted")
    if any(k in ckpt for k in _RUN_MARKERS):
        check_checkpoint(ckpt, p)
    return ckpt


def load_latest_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                           ) -> tuple[dict[str, Any], Path] | None:
    """The checkpoint at ``path``, or the previous one (:func:`previous_path`) when it is damaged or missing.

    Returns:
        ``(checkpoint, the file it came from)``, or ``None`` when neither file exists. Falling back warns, naming
        both files and why.

    Raises:
        WeightsError: the last checkpoint is damaged and there is no intact previous one (the message says both).
    """
    last, prev = Path(path), previous_path(path)
    if not last.is_file() and not prev.is_file():
        return None
    try:
        return load_checkpoint(last, map_location), last
    except WeightsError as err:
        if not prev.is_file():
            raise
        reason = str(err)
    try:
        ckpt = load_checkpoint(prev, map_location)
    except WeightsError as err:
        raise WeightsError(f"{reason}; the previous checkpoint cannot be used either ({err}). Start again without "
                           "--resume (or with another --out)") from None
    warnings.warn(f"{reason}. Resuming from the previous checkpoint {prev} instead (epoch {ckpt.get('epoch')}, "
                  f"step {ckpt.get('step_in_epoch')}); the steps after it are trained again", UserWarning,
                  stacklevel=2)
    return ckpt, prev


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
