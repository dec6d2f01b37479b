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
    "DiskFullError",
    "NotWritableError",
    "BusyError",
    "MissingDependencyError",
    "DeviceError",
    "DecoderMissingError",
    "NoSignalError",
    "MemoryBudgetError",
]


def _rebuild(cls: type, args: tuple, kwargs: dict, state: dict) -> "CoReEchoError":
    err = cls(*args, **kwargs)
    err.__dict__.update(state)
    return err


class CoReEchoError(Exception):
    """Base class of every error raised by coreecho.

    Every subclass survives pickling (errors come back from loader worker processes), whatever its constructor's
    arguments: the arguments it was built with are kept and given to it again.
    """

    def __new__(cls, *args: object, **kwargs: object) -> "CoReEchoError":
        err = super().__new__(cls, *args)
        err._init_args = (args, kwargs)
        return err

    def __reduce__(self) -> tuple:
        args, kwargs = self.__dict__.get("_init_args", (self.args, {}))
        state = {k: v for k, v in self.__dict__.items() if k != "_init_args"}
        return (_rebuild, (type(self), tuple(args), dict(kwargs), state))


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
    """An output cannot be produced or written: a model's unusable result (NaN or inf) for an input, or an output
    file that cannot be written (a link, folder, device or FIFO at its path; a failed write). The message names the
    input or the file."""


class DiskFullError(OutputError):
    """A file cannot be written: the disk is full, a quota or the file-size limit is reached (the message names it)."""


class NotWritableError(OutputError):
    """A file cannot be written: permission denied or a read-only file system (the message names it)."""


class BusyError(OutputError):
    """Another coreecho run holds the output (its lock): the message names the output and that run (pid, command,
    start time). Wait for it to finish, or choose another output."""


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


class DecoderMissingError(VideoReadError, MissingDependencyError):
    """One file needs a decoder that is not installed (a DICOM transfer syntax without its pydicom plugin).

    It is both a :class:`VideoReadError` (that file fails, a batch goes on) and a :class:`MissingDependencyError`
    (the message names the package and the extra that installs it, e.g. ``pip install "coreecho[dicom]"``).

    Args:
        source: the file.
        problem: what is missing and how to install it.
        package: the package that would decode it.
        extra: the coreecho extra that installs it.
    """

    def __init__(self, source: object, problem: str | None = None, *, package: str = "", extra: str = "dicom"):
        self.source, self.problem, self.package, self.extra = str(source), problem, package, extra
        ImportError.__init__(self, f"{source}: {problem}" if problem is not None else str(source))


class NoSignalError(VideoReadError):
    """A video has no usable signal (constant, all black, all white, or grey levels below the contrast floor
    :data:`coreecho.video.base.MIN_CONTRAST`); an EF computed from it would mean nothing. The message names the
    reason."""


class MemoryBudgetError(InputError):
    """One input would need more memory than the budget allows (:class:`coreecho.video.limits.Limits` ``max_bytes``,
    or the ``COREECHO_MAX_BYTES`` environment variable), counted before anything is allocated.

    That input fails (a batch goes on); the message names it, the stage that needs the most and the numbers, and
    says how to raise the budget or need less (fewer clips, a smaller batch).

    Attributes:
        stage: the stage that needs the most (e.g. ``"clip batch"``).
        needed: bytes the whole path would hold for this input.
        budget: the budget, in bytes.
    """

    def __init__(self, source: object, problem: str | None = None, *, stage: str = "", needed: int = 0,
                 budget: int = 0):
        super().__init__(source, problem)
        self.stage, self.needed, self.budget = stage, int(needed), int(budget)
