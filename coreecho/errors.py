"""Exception hierarchy of coreecho.

Every error the library raises on purpose derives from :class:`CoReEchoError`, so callers can catch one
class. Messages say what was expected, what was found and what to do.

Example:
    >>> from coreecho.errors import CoReEchoError, VideoReadError
    >>> try:
    ...     raise VideoReadError("clip.avi", "no frames could be decoded")
    ... except CoReEchoError as err:
    ...     print(err)
    clip.avi: no frames could be decoded
"""

from __future__ import annotations

__all__ = [
    "CoReEchoError",
    "WeightsError",
    "ModelNotFoundError",
    "ChecksumError",
    "ConfigError",
    "InputError",
    "VideoReadError",
    "DatasetError",
    "OutputError",
    "MissingDependencyError",
    "DeviceError",
]


class CoReEchoError(Exception):
    """Base class of every error raised by coreecho."""


class WeightsError(CoReEchoError):
    """A checkpoint or weights file cannot be used (wrong keys, shapes, format)."""


class ModelNotFoundError(WeightsError):
    """A model name, folder or file cannot be found or is not available offline."""


class ChecksumError(WeightsError):
    """A downloaded file does not have the sha256 it must have."""


class ConfigError(CoReEchoError):
    """A ``config.json`` or a configuration value is invalid."""


class InputError(CoReEchoError, ValueError):
    """An input (array, tensor, argument) has the wrong shape, type or values.

    Args:
        source: what the input was (a path, ``"array"``, ``"item 3"``...), named first in the message.
        problem: what is wrong and what to do.
    """

    def __init__(self, source: object, problem: str | None = None):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}" if problem is not None else str(source))


class VideoReadError(InputError):
    """A video file cannot be read (missing, empty, truncated, not a video, no pixel data)."""


class DeviceError(CoReEchoError, RuntimeError):
    """A device was asked for that this machine or torch build does not have (CUDA absent, ``cuda:7`` of 2 GPUs).

    The message names the device and says what to do (``--device cpu``, check the driver, install a CUDA build).
    """


class OutputError(CoReEchoError):
    """A model produced an unusable output (NaN or inf) for an input; the message names the input."""


class DatasetError(CoReEchoError):
    """A dataset folder does not have the expected layout (missing file, column or split)."""


class MissingDependencyError(CoReEchoError, ImportError):
    """An optional dependency is needed for this feature; the message says which extra installs it."""

    def __init__(self, package: str, extra: str, feature: str):
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the optional package '{package}'. Install it with "
            f"`pip install \"coreecho[{extra}]\"` (in a clone: `pip install -e \".[{extra}]\"`), "
            f"or `pip install {package}`."
        )
