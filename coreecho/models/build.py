"""The one way to build a model from a config: :func:`build_model`, plus the named encoder sizes.

The registry, :func:`coreecho.load_model` (folders, Hub repos, official checkpoints), the encoder presets, both
training stages, their checkpoints and fine-tuning all build models here. :func:`build_model` accepts a
:class:`ModelConfig` or a ``config.json`` dict and constructs :class:`~coreecho.models.coreecho.CoReEcho`, whose
constructor checks the config's ``encoder_args`` and ``head_args`` before anything is allocated
(:func:`coreecho.models.args.check_model_args`, re-exported here): a hand-edited ``config.json`` with
``"embed_dim": [1000000000, ...]`` is a :class:`~coreecho.errors.ConfigError` naming the field.

Presets and validation are light; torch is imported when a model is built (the model class is imported then).

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

from typing import TYPE_CHECKING, Any

from coreecho.errors import ConfigError
from coreecho.models.args import MAX_PARAMETERS, check_model_args, estimate_parameters
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
    from coreecho.models.coreecho import CoReEcho  # noqa: PLC0415 - torch only when a model is built

    return CoReEcho(config, source=source)  # the constructor checks the config first
