"""Encoder and head arguments of a model config: their bounds, and the checks run before anything is allocated.

:func:`check_model_args` is what :class:`~coreecho.models.coreecho.CoReEcho` runs on its config first: known
keyword names only, positive sizes within documented bounds, and an estimated parameter count below
:data:`MAX_PARAMETERS`, so a hand-edited ``config.json`` with ``"embed_dim": [1000000000, ...]`` is a
:class:`~coreecho.errors.ConfigError` naming the field, not an out-of-memory kill. No torch here.

Example:
    >>> from coreecho.models.config import ModelConfig
    >>> check_model_args(ModelConfig(architecture="uniformer_custom", encoder_args={
    ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8}))[0]["head_dim"]
    8
    >>> check_model_args(ModelConfig(head_args={"out_dim": 0}))
    Traceback (most recent call last):
    ...
    coreecho.errors.ConfigError: config: head_args.out_dim must be an integer in 1..10000, found 0
"""

from __future__ import annotations

import math
from typing import Any

from coreecho.errors import ConfigError
from coreecho.models.config import ModelConfig

__all__ = ["check_model_args", "estimate_parameters", "MAX_PARAMETERS", "MAX_DEPTH", "MAX_WIDTH", "MAX_MLP_RATIO",
           "MAX_IN_CHANS", "MIN_MODEL_SIZE", "MAX_OUTPUTS", "ENCODER_KEYS", "HEAD_KEYS"]

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
#: Smallest input side of a UniFormer encoder: its four stages divide the side by 4, 2, 2 and 2.
MIN_MODEL_SIZE = 32
#: Largest model :func:`build_model` builds (parameters, estimated from the config before allocation): 4 GB fp32.
MAX_PARAMETERS = 1_000_000_000

ENCODER_KEYS = ("depth", "embed_dim", "head_dim", "mlp_ratio", "qkv_bias", "drop_rate", "attn_drop_rate",
                 "drop_path_rate", "in_chans", "num_classes", "grad_checkpointing")
HEAD_KEYS = ("out_dim", "hidden_dim", "dropout", "bias_init")


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
    _unknown(source, "encoder_args", enc, ENCODER_KEYS)
    _unknown(source, "head_args", head, HEAD_KEYS)
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
    if "in_chans" in enc and _int(source, "encoder_args.in_chans", enc["in_chans"], 1, MAX_IN_CHANS) != 3:
        raise ConfigError(f"{src}.in_chans must be 3: the pipeline gives the model RGB frames (grey videos are "
                          f"repeated to 3 channels), found {enc['in_chans']!r}")
    size = config.preprocessing.size
    if size < MIN_MODEL_SIZE:
        raise ConfigError(f"{source}: preprocessing.size must be at least {MIN_MODEL_SIZE} for a UniFormer encoder "
                          f"(its stages divide the frame side by {MIN_MODEL_SIZE}), found {size}")
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
