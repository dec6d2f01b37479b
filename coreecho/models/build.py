"""The one way to build a model: :func:`build_model` turns a :class:`ModelConfig` into a :class:`CoReEcho`.

The registry, :func:`coreecho.load_model` (folders, Hub repos, official checkpoints), the encoder presets, both
training stages, their checkpoints and fine-tuning all build models here. Before anything is allocated the
config's ``encoder_args`` and ``head_args`` are checked: known keyword names only, positive sizes within
documented bounds, and an estimated parameter count below :data:`MAX_PARAMETERS`, so a hand-edited
``config.json`` with ``"embed_dim": [1000000000, ...]`` is a :class:`~coreecho.errors.ConfigError` naming the
field, not an out-of-memory kill.

This module imports torch only when a model is actually built (presets and validation are light).

Example:
    >>> from coreecho.models.config import ModelConfig
    >>> arch, args = resolve_encoder("micro", "uniformer_small", {"drop_rate": 0.0})
    >>> model = build_model(ModelConfig(architecture=arch, encoder_args=args))
    >>> model.embed_dim
    64
    >>> build_model(ModelConfig(architecture=arch, encoder_args={**args, "embed_dim": [10**9] * 4}))
    Traceback (most recent call last):
    ...
    coreecho.errors.ConfigError: config: encoder_args.embed_dim must be 4 integers in 1..4096, found [1000000000, 1000000000, 1000000000, 1000000000]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from coreecho.errors import ConfigError
from coreecho.models.config import ModelConfig

if TYPE_CHECKING:  # pragma: no cover
    from coreecho.models.coreecho import CoReEcho

__all__ = ["build_model", "ENCODER_PRESETS", "resolve_encoder", "check_model_args", "estimate_parameters",
           "MAX_PARAMETERS"]

#: Named encoder sizes: ``(architecture, encoder_args)``. ``tiny``/``micro`` are for CPU experiments and tests.
ENCODER_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "small": ("uniformer_small", {}),
    "base": ("uniformer_base", {}),
    "tiny": ("uniformer_custom", {"depth": [1, 1, 1, 1], "embed_dim": [16, 32, 64, 128], "head_dim": 16}),
    "micro": ("uniformer_custom", {"depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8}),
}

#: Published sizes (kept here so that validation does not import torch; equal to ``uniformer.UNIFORMER_SIZES``).
_SIZES: dict[str, dict[str, Any]] = {
    "uniformer_small": {"depth": (3, 4, 8, 3), "embed_dim": (64, 128, 320, 512)},
    "uniformer_base": {"depth": (5, 8, 20, 7), "embed_dim": (64, 128, 320, 512)},
}

#: Bounds of encoder and head arguments (UniFormer-B: depth 20, width 512, about 50 M parameters).
MAX_DEPTH = 64
MAX_WIDTH = 4096
MAX_MLP_RATIO = 16.0
MAX_IN_CHANS = 16
MAX_OUTPUTS = 10_000
#: Largest model :func:`build_model` builds (parameters, estimated from the config before allocation): 4 GB fp32.
MAX_PARAMETERS = 1_000_000_000

_ENCODER_KEYS = ("depth", "embed_dim", "head_dim", "mlp_ratio", "qkv_bias", "drop_rate", "attn_drop_rate",
                 "drop_path_rate", "in_chans", "num_classes", "grad_checkpointing")
_HEAD_KEYS = ("out_dim", "hidden_dim", "dropout", "bias_init")


def resolve_encoder(preset: str | None, architecture: str, encoder_args: dict[str, Any]) -> tuple[str, dict]:
    """``(architecture, encoder_args)`` from a preset name, with explicit ``encoder_args`` overriding it.

    Example:
        >>> resolve_encoder("tiny", "uniformer_small", {"drop_rate": 0.0})[1]["drop_rate"]
        0.0
    """
    if preset is None:
        return architecture, dict(encoder_args)
    if preset not in ENCODER_PRESETS:
        raise ConfigError(f"unknown encoder preset {preset!r}; choose one of {', '.join(ENCODER_PRESETS)}")
    arch, args = ENCODER_PRESETS[preset]
    return arch, {**args, **encoder_args}


def _int(source: str, name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()) or not lo <= value <= hi:
        raise ConfigError(f"{source}: {name} must be an integer in {lo}..{hi}, found {value!r}")
    return int(value)


def _real(source: str, name: str, value: Any, lo: float, hi: float, *, hi_open: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and \
        lo <= value and (value < hi if hi_open else value <= hi)
    if not ok:
        raise ConfigError(f"{source}: {name} must be a number in [{lo}, {hi}{')' if hi_open else ']'}, "
                          f"found {value!r}")
    return float(value)


def _four(source: str, name: str, value: Any) -> list[int]:
    hi = MAX_DEPTH if name.endswith("depth") else MAX_WIDTH
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) != 4 or any(
            isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi for v in value):
        raise ConfigError(f"{source}: {name} must be 4 integers in 1..{hi}, found {value!r}")
    return [int(v) for v in value]


def _unknown(source: str, what: str, args: dict[str, Any], known: tuple[str, ...]) -> None:
    bad = sorted(str(k) for k in args if k not in known)
    if bad:
        raise ConfigError(f"{source}: unknown {what} {bad}; known: {list(known)}")


def estimate_parameters(depth: list[int], embed_dim: list[int], mlp_ratio: float = 4.0) -> int:
    """About how many parameters a UniFormer with these stages has (used to refuse absurd configs).

    Example:
        >>> round(estimate_parameters([3, 4, 8, 3], [64, 128, 320, 512]) / 1e6, 1)  # UniFormer-S: 21.2 M
        21.2
    """
    total, prev = 3 * 3 * 4 * 4 * 3 * embed_dim[0], embed_dim[0]
    for s, (n, d) in enumerate(zip(depth, embed_dim)):
        total += prev * d * 4 + 3 * d  # patch embedding of the stage
        mlp = 2 * int(d * mlp_ratio) * d
        block = 27 * d + (2 * d * d + 125 * d if s < 2 else 4 * d * d) + mlp + 8 * d
        total += n * block
        prev = d
    return int(total)


def check_model_args(config: ModelConfig, source: str = "config") -> tuple[dict[str, Any], dict[str, Any]]:
    """Validated ``(encoder kwargs, head kwargs)`` of ``config`` (checks only; nothing is allocated).

    Raises:
        ConfigError: an unknown architecture or keyword, a value of the wrong type or outside its bounds, or a
            model larger than :data:`MAX_PARAMETERS` parameters; the message names the field.
    """
    config.validate(source)
    arch = config.architecture
    enc, head = dict(config.encoder_args), dict(config.head_args)
    _unknown(source, "encoder_args", enc, _ENCODER_KEYS)
    _unknown(source, "head_args", head, _HEAD_KEYS)
    src = f"{source}: encoder_args"
    if arch == "uniformer_custom":
        for key in ("depth", "embed_dim"):
            if key not in enc:
                raise ConfigError(f"{src}: architecture 'uniformer_custom' needs {key} (4 integers)")
    sizes = {**_SIZES.get(arch, {}), **enc}
    depth = _four(source, "encoder_args.depth", sizes.get("depth", (3, 4, 8, 3)))
    width = _four(source, "encoder_args.embed_dim", sizes.get("embed_dim", (64, 128, 320, 512)))
    head_dim = _int(source, "encoder_args.head_dim", enc.get("head_dim", 64), 1, MAX_WIDTH)
    for s in (2, 3):
        if width[s] % head_dim:
            raise ConfigError(f"{src}: embed_dim[{s}] = {width[s]} must be a multiple of head_dim = {head_dim} "
                              "(attention stages split channels into heads)")
    mlp_ratio = _real(source, "encoder_args.mlp_ratio", enc.get("mlp_ratio", 4.0), 1e-3, MAX_MLP_RATIO)
    for key in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
        if key in enc:
            _real(source, f"encoder_args.{key}", enc[key], 0.0, 1.0, hi_open=True)
    if "in_chans" in enc:
        _int(source, "encoder_args.in_chans", enc["in_chans"], 1, MAX_IN_CHANS)
    if "num_classes" in enc:
        _int(source, "encoder_args.num_classes", enc["num_classes"], 0, MAX_OUTPUTS)
    for key in ("qkv_bias", "grad_checkpointing"):
        if key in enc and not isinstance(enc[key], bool):
            raise ConfigError(f"{src}.{key} must be true or false, found {enc[key]!r}")
    if "out_dim" in head:
        _int(source, "head_args.out_dim", head["out_dim"], 1, MAX_OUTPUTS)
    if head.get("hidden_dim") is not None:
        _int(source, "head_args.hidden_dim", head["hidden_dim"], 1, MAX_WIDTH)
    if "dropout" in head:
        _real(source, "head_args.dropout", head["dropout"], 0.0, 1.0, hi_open=True)
    if head.get("bias_init") is not None:
        _real(source, "head_args.bias_init", head["bias_init"], -1e6, 1e6)
    n = estimate_parameters(depth, width, mlp_ratio)
    if n > MAX_PARAMETERS:
        raise ConfigError(f"{src}: depth {depth} and embed_dim {width} describe an encoder of about {n / 1e6:,.0f} M "
                          f"parameters, more than the limit of {MAX_PARAMETERS / 1e6:,.0f} M")
    enc.pop("num_classes", None)  # CoReEcho uses the pooled embedding; the head is its own module
    return enc, head


def build_model(config: ModelConfig | dict[str, Any] | None = None, *, source: str = "config") -> "CoReEcho":
    """A :class:`~coreecho.CoReEcho` (randomly initialised, train mode) from a validated config.

    Args:
        config: a :class:`ModelConfig`, a ``config.json`` dict, or ``None`` for CoReEcho's UniFormer-S setup.
        source: what the config came from (a file name), named first in error messages.

    Raises:
        ConfigError: the config is invalid (see :func:`check_model_args`).

    Example:
        >>> build_model({"architecture": "uniformer_huge"})
        Traceback (most recent call last):
        ...
        coreecho.errors.ConfigError: config: unknown architecture 'uniformer_huge'; known: ['uniformer_small', 'uniformer_base', 'uniformer_custom']
    """
    if config is None:
        config = ModelConfig()
    elif isinstance(config, dict):
        config = ModelConfig.from_dict(config, source=source)
    elif not isinstance(config, ModelConfig):
        raise ConfigError(f"{source}: expected a ModelConfig or a dict, found {type(config).__name__}")
    check_model_args(config, source)
    from coreecho.models.coreecho import CoReEcho  # noqa: PLC0415 - torch only when a model is built

    return CoReEcho(config)
