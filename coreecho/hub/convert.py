"""Official checkpoints into coreecho models: safe reading of ``.pth`` files and strict state-dict loading.

Official PyTorch checkpoints are read with ``torch.load(weights_only=True)`` only (tensors and plain containers;
arbitrary pickles are refused), and only to convert them: a UniFormer video ``.pth`` (Kinetics pretraining)
initialises an encoder (:func:`load_encoder_weights`); a CoReEcho ``best.pth`` (``{'model', 'regressor', ...}``,
with or without a ``module.`` prefix) becomes a whole model (:func:`load_official_checkpoint`). Every load is
strict (:func:`strict_load`): a missing, unexpected or reshaped key is an error that lists the differences.
:func:`coreecho.hub.folder.convert_checkpoint` writes the converted model as a folder.

Example:
    >>> import torch
    >>> layer = torch.nn.Linear(2, 1)
    >>> strict_load(layer, {"weight": torch.zeros(1, 2), "bias": torch.zeros(1)}, "state")
    >>> strict_load(layer, {"weight": torch.zeros(1, 2)}, "state")
    Traceback (most recent call last):
    ...
    coreecho.errors.WeightsError: state: the weights do not fit the model (1 missing: bias). Check that the config's architecture matches the checkpoint.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from coreecho.errors import ModelNotFoundError, WeightsError
from coreecho.hub.checks import check_weights, problems
from coreecho.hub.fetch import sha256_file
from coreecho.models.build import build_model
from coreecho.models.config import ModelConfig
from coreecho.models.coreecho import CoReEcho

__all__ = ["strict_load", "strip_prefix", "read_torch_checkpoint", "is_state_dict", "load_encoder_weights",
           "load_official_checkpoint", "NAMESPACE_MESSAGE"]

#: An official ``last.pth`` (or any checkpoint saved with the training options) pickles an ``argparse.Namespace``.
NAMESPACE_MESSAGE = (
    "{path}: this checkpoint also stores the training options as an argparse.Namespace (the official CoReEcho "
    "'last.pth' does), which safe loading (weights_only=True) refuses. Use the official 'best.pth' instead, or, for "
    "a file you trust, strip the options once: python -c \"import torch; c = torch.load('{path}', "
    "weights_only=False); torch.save({{k: c[k] for k in ('model', 'regressor', 'epoch', 'best_error') if k in c}}, "
    "'{path}.weights.pth')\" and load '{path}.weights.pth'.")


def strict_load(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` requiring identical key sets and shapes, real-valued dtypes where the model has
    them and finite values; the error lists the diff or names the tensors."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or mismatched:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {show(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} with other shapes: " + show(
                [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched]))
        raise WeightsError(f"{source}: the weights do not fit the model ({'; '.join(parts)}). Check that the "
                           "config's architecture matches the checkpoint.")
    kinds = [f"{k} {state[k].dtype} vs model {own[k].dtype}".replace("torch.", "") for k in sorted(own)
             if own[k].is_floating_point() and not state[k].is_floating_point()]
    if kinds:  # load_state_dict would cast int64 or bool tensors into the float weights silently
        raise WeightsError(f"{source}: {len(kinds)} tensors hold integers where the model has real-valued weights "
                           f"({', '.join(kinds[:6])}{' ...' if len(kinds) > 6 else ''}); not weights of this model")
    broken = [k for k in sorted(state) if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all())]
    if broken:  # a model with a NaN or infinite weight computes nothing usable: refuse it where it is loaded
        raise WeightsError(f"{source}: {len(broken)} tensors hold NaN or infinite values "
                           f"({', '.join(broken[:6])}{' ...' if len(broken) > 6 else ''}); these weights are broken "
                           "(a diverged training run, or a damaged file)")
    module.load_state_dict(dict(state), strict=True)


def strip_prefix(state: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """``state`` without ``prefix`` when every key carries it (DataParallel/DDP checkpoints), else a copy."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def read_torch_checkpoint(path: Path) -> Any:
    """The object in a ``.pth`` file, read with ``weights_only=True`` (no arbitrary pickles)."""
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds here
        if "argparse.Namespace" in str(err) or "Namespace" in str(err).split("GLOBAL")[-1][:80]:
            raise WeightsError(NAMESPACE_MESSAGE.format(path=path)) from err
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(f"{path}: cannot read it as a PyTorch checkpoint with weights_only=True ({first}). "
                           "Only plain tensor checkpoints are accepted; arbitrary pickles are refused.") from err


def is_state_dict(obj: Any) -> bool:
    """A non-empty mapping of names to tensors."""
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def load_encoder_weights(encoder: nn.Module, source: str | Path | Mapping[str, torch.Tensor]) -> list[str]:
    """Initialise a UniFormer encoder from an official ``.pth`` (Kinetics or CoReEcho) or a state dict.

    The checkpoint's classification head (``head.*``, 400 Kinetics classes or CoReEcho's 1-output Linear)
    is dropped on purpose; every other key must match. Returns the dropped keys.
    """
    name = str(source) if not isinstance(source, Mapping) else "state dict"
    obj: Any = source if isinstance(source, Mapping) else read_torch_checkpoint(Path(source))
    for wrapper in ("model", "model_state", "state_dict"):
        if not is_state_dict(obj) and isinstance(obj, Mapping) and is_state_dict(obj.get(wrapper)):
            obj = obj[wrapper]
    if not is_state_dict(obj):
        raise WeightsError(f"{name}: expected a state dict of tensors (or a dict with 'model'), found "
                           f"{type(obj).__name__} with keys {list(obj)[:5] if isinstance(obj, Mapping) else '-'}")
    state = strip_prefix(obj)
    dropped = sorted(k for k in state if k.startswith("head."))
    if not isinstance(getattr(encoder, "head", None), nn.Linear):
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    else:
        dropped = []
    strict_load(encoder, state, name)
    return dropped


def load_official_checkpoint(path: str | Path, *, trained: bool | None = None, architecture: str = "uniformer_small",
                             encoder_args: Mapping[str, Any] | None = None) -> CoReEcho:
    """Build a :class:`CoReEcho` from an official training checkpoint (``best.pth``), checked structurally.

    The file holds ``{'epoch', 'model', 'regressor', 'best_error'}``; keys may carry ``module.``. The
    encoder's unused ``Linear(512, 1)`` head is dropped; the regressor becomes ``model.head``. The tensors must be
    exactly the architecture's (keys, shapes, dtypes) and finite (:mod:`coreecho.hub.checks`).

    Args:
        path: the ``.pth`` file.
        trained: BatchNorm statistics at their initial values (an untrained or random file) are an error with
            ``True`` (installing a registered model), a warning with ``None``, not checked with ``False``.
        architecture, encoder_args: the encoder the checkpoint holds (the official one: UniFormer-S).
    """
    path = Path(path)
    ckpt = read_torch_checkpoint(path)
    if not (isinstance(ckpt, Mapping) and is_state_dict(ckpt.get("model")) and is_state_dict(ckpt.get("regressor"))):
        keys = list(ckpt)[:6] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise WeightsError(f"{path}: not an official CoReEcho checkpoint: expected a dict with 'model' and "
                           f"'regressor' state dicts, found {keys}. For a Kinetics UniFormer checkpoint use "
                           "load_encoder_weights().")
    sha = sha256_file(path)
    metadata = {"description": "Official CoReEcho weights (EchoNet-Dynamic), converted by coreecho",
                "source_file": path.name, "source_sha256": sha, "epoch": _plain(ckpt.get("epoch")),
                "best_error": _plain(ckpt.get("best_error")), "training_data": "EchoNet-Dynamic"}
    cfg = ModelConfig(architecture=architecture, encoder_args=dict(encoder_args or {}), license="CC-BY-NC-4.0",
                      metadata=metadata)
    model = build_model(cfg, source=str(path))
    encoder = strip_prefix(ckpt["model"])
    if not isinstance(getattr(model.encoder, "head", None), nn.Linear):
        encoder = {k: v for k, v in encoder.items() if not k.startswith("head.")}  # unused Linear(512, 1)
    regressor = strip_prefix(ckpt["regressor"])
    strict_load(model.encoder, encoder, str(path))  # keys and shapes, in the checkpoint's own names
    strict_load(model.head, regressor, f"{path} ['regressor']")
    state = {**{f"encoder.{k}": v for k, v in encoder.items()}, **{f"head.{k}": v for k, v in regressor.items()}}
    found = problems(model, state, trained=trained is not False)
    stats = [p for p in found if p.startswith("BatchNorm")]
    if trained or len(stats) < len(found):  # only the statistics are a mere warning, and only without `trained`
        check_weights(model, state, str(path), trained=bool(trained))
    if stats:
        warnings.warn(f"{path}: {stats[0]}: these look like untrained weights, not a trained CoReEcho model.",
                      stacklevel=2)
    return model.eval()


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value if isinstance(value, (int, float, str, type(None))) else str(value)
