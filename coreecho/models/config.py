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
from coreecho.constants import ECHONET_MEAN, ECHONET_STD, PAD_STYLES  # re-exported: defined in coreecho.constants
from coreecho.errors import ConfigError

__all__ = ["ModelConfig", "PreprocessConfig", "ECHONET_MEAN", "ECHONET_STD", "FORMAT_NAME", "FORMAT_VERSION",
           "SAMPLINGS", "TEMPORALS", "ARCHITECTURES", "PAD_STYLES", "preprocessing_from_saved", "read_json"]


FORMAT_NAME = "coreecho"
#: Version 2: ``preprocessing.pad`` has the meaning ``preprocessing.pad_style`` gives it (default ``"coreecho"``, the
#: official augmentation). In version 1 files ``pad`` had EchoNet-Dynamic's meaning (``pad`` zeros on each side);
#: they are read as ``pad_style="echonet-dynamic"``, so they keep it.
FORMAT_VERSION = 2


#: Time-sampling policies of :class:`PreprocessConfig`.
SAMPLINGS = ("clips", "sequence")
#: Temporal interpolation of ``sampling="sequence"``.
TEMPORALS = ("linear", "nearest")
#: Encoder architectures a config may name.
ARCHITECTURES = ("uniformer_small", "uniformer_base", "uniformer_custom")
#: Upper bounds of config values: anything larger is refused before a model or a buffer is built from it.
MAX_FRAMES = 1024
MAX_STRIDE = 64
MAX_SIZE = 1024
MAX_PAD = 256
MAX_TEST_CLIPS = 1000


def _int_in(source: str, name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"{source}: {name} must be an integer in {lo}..{hi}, found {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{source}: {name} must be in {lo}..{hi}, found {value}")
    return int(value)


def _triple(source: str, name: str, value: Any, positive: bool) -> tuple[float, float, float]:
    import math  # noqa: PLC0415

    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
        raise ConfigError(f"{source}: {name} must be 3 numbers (one per RGB channel, 0-255 units), found {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ConfigError(f"{source}: {name} must hold finite numbers, found {value!r}")
        if positive and float(v) <= 0:
            raise ConfigError(f"{source}: {name} must be positive (it divides the pixels), found {value!r}")
        out.append(float(v))
    return tuple(out)  # type: ignore[return-value]


@dataclass
class PreprocessConfig:
    """How raw frames become model input: the recipe a model was trained with, which serving reads back.

    :meth:`coreecho.CoReEcho.pipeline` builds a :class:`~coreecho.video.pipeline.ClipPipeline` from it; training,
    evaluation, fine-tuning, inference, Grad-CAM and embedding all go through that one pipeline.

    Attributes:
        frames: frames per clip (official: 36).
        stride: step between sampled frames with ``sampling="clips"`` (official: 4).
        size: square side of the model input (official: 112).
        mean: per-channel mean in 0–255 units, subtracted after padding.
        std: per-channel std in 0–255 units.
        fps: frame rate of the training videos (EchoNet-Dynamic: about 50); inputs far from it warn.
        crop_sector: crop non-square/non-``size`` inputs to the ultrasound fan before resizing.
        sampling: how time is sampled: ``"clips"`` (clips of ``frames`` frames, every ``stride``-th frame, as in
            EchoNet-Dynamic) or ``"sequence"`` (the whole sequence resampled to ``frames`` frames, one clip per
            video, as for CAMUS / HMC-QU half cycles).
        temporal: interpolation of ``sampling="sequence"``: ``"linear"`` (blend neighbouring frames) or
            ``"nearest"``.
        pad: augmentation of training (never applied at test time): zero padding in pixels, read as ``pad_style``
            says. Official: 12 with ``pad_style="coreecho"``, i.e. frames zero-padded to ``size + 12`` and cropped
            back at a uniform random position: each clip moves by ``-6 .. +6`` px per axis. 0: no augmentation.
        pad_style: what ``pad`` means: ``"coreecho"`` (``pad`` pixels per axis in total, ``pad + 1`` crop
            positions; the official CoReEcho augmentation) or ``"echonet-dynamic"`` (``pad`` pixels on each side,
            ``2 * pad`` positions: EchoNet-Dynamic's convention, ``-11 .. +12`` px for ``pad=12``). See
            :data:`coreecho.constants.PAD_STYLES` and :meth:`shift_range`.

    Raises:
        ConfigError: a value of the wrong type or outside its range (see the ``MAX_*`` constants).
    """

    frames: int = 36
    stride: int = 4
    size: int = 112
    mean: tuple[float, float, float] = ECHONET_MEAN
    std: tuple[float, float, float] = ECHONET_STD
    fps: float = 50.0
    crop_sector: bool = True
    sampling: str = "clips"
    temporal: str = "linear"
    pad: int = 12
    pad_style: str = "coreecho"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str = "preprocessing") -> "PreprocessConfig":
        """Check types and ranges (called on construction); returns ``self``."""
        import math  # noqa: PLC0415

        self.frames = _int_in(source, "frames", self.frames, 1, MAX_FRAMES)
        self.stride = _int_in(source, "stride", self.stride, 1, MAX_STRIDE)
        self.size = _int_in(source, "size", self.size, 16, MAX_SIZE)
        self.pad = _int_in(source, "pad", self.pad, 0, MAX_PAD)
        self.mean = _triple(source, "mean", self.mean, positive=False)
        self.std = _triple(source, "std", self.std, positive=True)
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not math.isfinite(self.fps) \
                or not 0 < self.fps <= 10_000:
            raise ConfigError(f"{source}: fps must be a positive number (frames per second of the training "
                              f"videos), found {self.fps!r}")
        self.fps = float(self.fps)
        if not isinstance(self.crop_sector, bool):
            raise ConfigError(f"{source}: crop_sector must be true or false, found {self.crop_sector!r}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"{source}: sampling must be one of {list(SAMPLINGS)}, found {self.sampling!r}")
        if self.temporal not in TEMPORALS:
            raise ConfigError(f"{source}: temporal must be one of {list(TEMPORALS)}, found {self.temporal!r}")
        if self.pad_style not in PAD_STYLES:
            raise ConfigError(f"{source}: pad_style must be one of {list(PAD_STYLES)}, found {self.pad_style!r}")
        return self

    def shift_range(self) -> tuple[int, int]:
        """Smallest and largest move (px, per axis, inclusive) of the training augmentation; uniform in between.

        Example:
            >>> PreprocessConfig().shift_range(), PreprocessConfig(pad_style="echonet-dynamic").shift_range()
            ((-6, 6), (-11, 12))
        """
        from coreecho.video.augment import shift_range  # noqa: PLC0415

        return shift_range(self.pad, self.pad_style)

    def replace(self, **changes: Any) -> "PreprocessConfig":
        """A copy with some fields changed (validated).

        Example:
            >>> PreprocessConfig().replace(size=64).size
            64
        """
        from dataclasses import replace  # noqa: PLC0415

        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(f"preprocessing has no field(s) {unknown}; known: {[f.name for f in fields(self)]}")
        return replace(self, **changes)

    def diff(self, other: "PreprocessConfig") -> list[str]:
        """Lines ``name: mine -> other`` for every field that differs (empty when equal)."""
        return [f"{f.name}: {getattr(self, f.name)!r} -> {getattr(other, f.name)!r}" for f in fields(self)
                if getattr(self, f.name) != getattr(other, f.name)]


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
        self.validate()

    def validate(self, source: str = "config") -> "ModelConfig":
        """Check every field's type and range; raises :class:`ConfigError` naming the field."""
        if isinstance(self.preprocessing, dict):
            try:
                self.preprocessing = PreprocessConfig(**_known(PreprocessConfig, self.preprocessing,
                                                               f"{source}: preprocessing"))
            except ConfigError as err:
                raise ConfigError(str(err).replace("preprocessing:", f"{source}: preprocessing:", 1)) from None
        elif not isinstance(self.preprocessing, PreprocessConfig):
            raise ConfigError(f"{source}: preprocessing must be an object, found {self.preprocessing!r}")
        else:
            self.preprocessing.validate(f"{source}: preprocessing")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"{source}: unknown architecture {self.architecture!r}; known: {list(ARCHITECTURES)}")
        for name in ("encoder_args", "head_args", "metadata"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"{source}: {name} must be an object, found {getattr(self, name)!r}")
        if self.test_clips != "all":
            self.test_clips = _int_in(source, "test_clips", self.test_clips, 1, MAX_TEST_CLIPS)
        for name in ("task", "license", "coreecho_version"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{source}: {name} must be a string, found {getattr(self, name)!r}")
        return self

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
        if isinstance(data.get("preprocessing"), dict):
            data["preprocessing"] = preprocessing_from_saved(data["preprocessing"], version)
        known = _known(cls, data, source)
        try:
            cfg = cls.__new__(cls)
            defaults = cls()
            for f in fields(cls):
                setattr(cfg, f.name, known.get(f.name, getattr(defaults, f.name)))
            return cfg.validate(source)
        except TypeError as err:
            raise ConfigError(f"{source}: invalid config: {err}") from err

    def save(self, path: str | Path) -> None:
        """Write as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        """Read a ``config.json``; a malformed file raises :class:`ConfigError` naming it."""
        data = read_json(path, "the model config")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, found {type(data).__name__}")
        return cls.from_dict(data, source=str(path))


#: Largest ``config.json`` read (a model config is a few kilobytes).
MAX_CONFIG_BYTES = 16 * 2**20


def read_json(path: str | Path, what: str = "the model config") -> Any:
    """The JSON value of a file, or a :class:`ConfigError` naming the file: unreadable, over
    :data:`MAX_CONFIG_BYTES`, not UTF-8, not JSON, or nested too deeply to parse.

    Example:
        >>> read_json("/nonexistent/config.json")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        coreecho.errors.ConfigError: /nonexistent/config.json: cannot read the model config (...)
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read {what} ({err})") from err
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {what} is larger than {MAX_CONFIG_BYTES // 2**20} MiB; not a coreecho config")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: {what} is not UTF-8 text (byte {err.start}: {err.reason})") from None
    try:
        return json.loads(text)
    except ValueError as err:  # JSONDecodeError, and an integer literal longer than Python converts
        raise ConfigError(f"{path}: cannot read {what} ({err})") from None
    except RecursionError:
        raise ConfigError(f"{path}: {what} is nested too deeply to be a coreecho config") from None


def preprocessing_from_saved(data: dict[str, Any], version: int) -> dict[str, Any]:
    """The preprocessing fields of a file of ``format_version`` ``version``, in today's meaning.

    Version 1 wrote ``pad`` in EchoNet-Dynamic's meaning (zeros on each side), so it is read with
    ``pad_style="echonet-dynamic"`` unless the file names a style.

    Example:
        >>> preprocessing_from_saved({"pad": 12}, 1), preprocessing_from_saved({"pad": 12}, 2)
        ({'pad': 12, 'pad_style': 'echonet-dynamic'}, {'pad': 12})
    """
    out = dict(data)
    if version < 2:
        out.setdefault("pad_style", "echonet-dynamic")
    return out


def _known(cls: type, data: dict[str, Any], source: str) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        warnings.warn(f"{source}: ignoring unknown config keys {unknown} (written by a newer coreecho?)",
                      stacklevel=3)
    return {k: v for k, v in data.items() if k in names}
