"""``config.json``: the contract of a saved coreecho model.

A config names the encoder architecture and its arguments, the head, the preprocessing that
:meth:`coreecho.CoReEcho.predict_ef` must apply (frames, stride, size, mean/std in 0–255 pixel units,
the fps the model was trained at), the default test-time clip policy, the weights' licence and the
coreecho version that wrote it.

Example:
    >>> cfg = ModelConfig()
    >>> cfg.preprocessing.frames, cfg.preprocessing.stride, cfg.preprocessing.size
    (36, 4, 112)
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from coreecho._version import __version__
from coreecho.errors import ConfigError

__all__ = ["ModelConfig", "PreprocessConfig", "ECHONET_MEAN", "ECHONET_STD", "FORMAT_NAME", "FORMAT_VERSION"]

#: Per-channel mean and std of EchoNet-Dynamic in 0–255 pixel units (the official CoReEcho values).
ECHONET_MEAN = (0.12741163 * 255, 0.1279413 * 255, 0.12912785 * 255)
ECHONET_STD = (0.19557191 * 255, 0.19562256 * 255, 0.1965878 * 255)

FORMAT_NAME = "coreecho"
FORMAT_VERSION = 1


@dataclass
class PreprocessConfig:
    """How raw frames become model input.

    Attributes:
        frames: frames per clip (official: 36).
        stride: step between sampled frames (official: 4).
        size: square side of the model input (official: 112).
        mean: per-channel mean in 0–255 units, subtracted after padding.
        std: per-channel std in 0–255 units.
        fps: frame rate of the training videos (EchoNet-Dynamic: about 50); inputs far from it warn.
        crop_sector: crop non-square/non-``size`` inputs to the ultrasound fan before resizing.
    """

    frames: int = 36
    stride: int = 4
    size: int = 112
    mean: tuple[float, float, float] = ECHONET_MEAN
    std: tuple[float, float, float] = ECHONET_STD
    fps: float = 50.0
    crop_sector: bool = True

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        if self.frames < 1 or self.stride < 1 or self.size < 16:
            raise ConfigError(f"preprocessing needs frames >= 1, stride >= 1 and size >= 16; got frames="
                              f"{self.frames}, stride={self.stride}, size={self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"preprocessing mean/std need 3 values each and std > 0; got mean={self.mean}, "
                              f"std={self.std}")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model and use it the way it was trained.

    Attributes:
        architecture: encoder name (``uniformer_small``, ``uniformer_base`` or ``uniformer_custom``).
        encoder_args: keyword arguments of the encoder (e.g. ``depth``, ``embed_dim``, ``drop_rate``).
        head_args: keyword arguments of :class:`coreecho.models.head.RegressionHead` besides ``in_dim``.
        preprocessing: see :class:`PreprocessConfig`.
        test_clips: default clip policy at test time (an int, or ``"all"``).
        task: what the head predicts (``"ef"`` for ejection fraction in %).
        license: licence of the weights saved with this config.
        coreecho_version: version of coreecho that wrote the config.
        metadata: free-form provenance (training data, command, metrics, source checkpoint sha256).
    """

    architecture: str = "uniformer_small"
    encoder_args: dict[str, Any] = field(default_factory=dict)
    head_args: dict[str, Any] = field(default_factory=dict)
    preprocessing: PreprocessConfig = field(default_factory=PreprocessConfig)
    test_clips: int | str = 3
    task: str = "ef"
    license: str = "unknown"
    coreecho_version: str = __version__
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.preprocessing, dict):
            self.preprocessing = PreprocessConfig(**_known(PreprocessConfig, self.preprocessing, "preprocessing"))
        if not (self.test_clips == "all" or (isinstance(self.test_clips, int) and self.test_clips >= 1)):
            raise ConfigError(f"test_clips must be a positive int or 'all', got {self.test_clips!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, with the format name and version first."""
        data = asdict(self)
        data["preprocessing"]["mean"] = list(self.preprocessing.mean)
        data["preprocessing"]["std"] = list(self.preprocessing.std)
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "ModelConfig":
        """Build from a dict (as read from ``config.json``); unknown keys warn, wrong types raise."""
        data = dict(data)
        fmt = data.pop("format", FORMAT_NAME)
        version = data.pop("format_version", FORMAT_VERSION)
        if fmt != FORMAT_NAME:
            raise ConfigError(f"{source}: expected a coreecho config (format 'coreecho'), found format {fmt!r}")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ConfigError(f"{source}: config format_version {version!r} is newer than this coreecho "
                              f"({__version__}) understands ({FORMAT_VERSION}); upgrade coreecho")
        try:
            return cls(**_known(cls, data, source))
        except TypeError as err:
            raise ConfigError(f"{source}: invalid config: {err}") from err

    def save(self, path: str | Path) -> None:
        """Write as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        """Read a ``config.json``; a malformed file raises :class:`ConfigError` naming it."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the model config ({err})") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, found {type(data).__name__}")
        return cls.from_dict(data, source=str(path))


def _known(cls: type, data: dict[str, Any], source: str) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        warnings.warn(f"{source}: ignoring unknown config keys {unknown} (written by a newer coreecho?)",
                      stacklevel=3)
    return {k: v for k, v in data.items() if k in names}
