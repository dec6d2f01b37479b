"""Training configuration: one dataclass with the CoReEcho paper's defaults, and encoder presets.

The defaults are the official recipe on EchoNet-Dynamic (the table in ``docs/training.md`` lists every choice, where
the official code sets it, and the test that checks it): UniFormer-S from Kinetics-400, 36 frames at stride 4,
112 px, the official augmentation (zero-pad to 124 px and crop 112 px back: every clip moves by -6..+6 px per
axis), AdamW lr 1e-4 / wd 1e-4 for encoder and head, lr x0.1 from (0-based) pass 15, batch 16 videos x 2 views,
Rank-N-Contrast temperature 1, selection by validation MAE on one random clip per video, and the official number
of passes over the training set: 26 for stage 1 and 5 for stage 2 (the official scripts' ``--epochs 25`` and
``--epochs 4`` run passes ``0 .. epochs`` inclusive). Stage 2 uses the same dataclass (``views`` is 1 and the
encoder is frozen).

The model input recipe is one :class:`~coreecho.models.config.PreprocessConfig`, ``cfg.preprocessing``; its fields
may be given and read by name (``TrainConfig(frames=16)``, ``cfg.frames``), and ``to_dict`` writes them at the top
level (the names of the ``coreecho train`` options), with ``format_version``.

Example:
    >>> cfg = TrainConfig(data="EchoNet-Dynamic", out="runs/s1")
    >>> cfg.batch_size, cfg.lr, cfg.lr_at(14), cfg.lr_at(15), cfg.passes("stage1"), cfg.passes("stage2")
    (16, 0.0001, 0.0001, 1e-05, 26, 5)
    >>> cfg.preprocessing.shift_range(), cfg.frames is cfg.preprocessing.frames
    ((-6, 6), True)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from coreecho.errors import ConfigError
from coreecho.models.build import ENCODER_PRESETS, resolve_encoder  # re-exported: they moved to coreecho.models
from coreecho.models.config import PreprocessConfig, preprocessing_from_saved
from coreecho.train.limits import check_types, check_values

__all__ = ["TrainConfig", "ENCODER_PRESETS", "resolve_encoder", "RESUMABLE_FIELDS", "OFFICIAL_PASSES",
           "PREPROCESS_FIELDS", "TRAIN_FORMAT_VERSION"]

#: Passes over the training set of the official recipe, per stage: the official scripts loop
#: ``for epoch in range(0, epochs + 1)`` and their README passes ``--epochs 25`` (stage 1) and ``--epochs 4``
#: (stage 2). ``TrainConfig.epochs`` counts passes, so ``None`` (the default) means these.
OFFICIAL_PASSES = {"stage1": 26, "stage2": 5}
#: Fields of :class:`~coreecho.models.config.PreprocessConfig` a TrainConfig takes and shows by name.
PREPROCESS_FIELDS = tuple(f.name for f in fields(PreprocessConfig))
#: Version of :meth:`TrainConfig.to_dict`. 2: ``pad`` with ``pad_style`` (see ``PreprocessConfig``). Dicts without
#: a version (``train_config.json`` of earlier releases) are version 1: their ``pad`` is EchoNet-Dynamic's.
TRAIN_FORMAT_VERSION = 2

#: Settings that may change when a run is resumed (``--resume``): how long it runs and how it runs on this machine.
#: Every other field is the run's recipe; a resume with a different value is refused
#: (:func:`coreecho.train.recipe.resume_diff`).
RESUMABLE_FIELDS = ("epochs", "data", "out", "resume", "overwrite", "command", "num_workers", "pin_memory", "device",
                    "precision", "progress", "tensorboard", "save_every_steps", "stop_after_steps", "loss_chunk_size",
                    "cached_batch", "micro_batch", "grad_checkpointing", "sync_bn")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved in every checkpoint and in the exported model's metadata.

    Attributes:
        data: EchoNet-Dynamic folder (``FileList.csv``, ``VolumeTracings.csv``, ``Videos/``).
        out: output folder (checkpoints, ``metrics.csv``, ``best_model/``, ``model/``).
        init: stage 1: ``"uniformer-small-k400"`` (Kinetics-400 UniFormer-S), a ``.pth``/folder path, ``"none"``,
            or ``"auto"`` (Kinetics for ``uniformer_small``, else none). Stage 2: the stage-1 result (its output
            folder, its ``best_model/`` folder, a coreecho model folder or an official ``best.pth``).
        preset: encoder preset (``small``, ``base``, ``tiny``, ``micro``); overrides ``architecture``.
        architecture: encoder architecture when no preset is given.
        encoder_args: encoder keyword arguments (override the preset's).
        head_args: head keyword arguments (stage 1, or stage 2 with ``reinit_head``).
        reinit_head: stage 2: start from a fresh head instead of the stage-1 head.
        preprocessing: the model input recipe (:class:`~coreecho.models.config.PreprocessConfig`): frames,
            stride, size, mean/std, the augmentation ``pad`` and ``pad_style``... Each of its fields may also be
            passed to the constructor by name and read as an attribute (``cfg.frames``).
        val_clips: random clips per validation video, averaged (official: 1, drawn anew every pass).
        epochs: passes over the training set; ``None`` runs the official number of the stage
            (:data:`OFFICIAL_PASSES`: 26 for stage 1, 5 for stage 2; see :meth:`passes`).
        batch_size: videos per step per process (stage 1 sees ``2 * batch_size`` clips).
        lr, weight_decay: AdamW of the encoder (stage 1).
        head_lr, head_weight_decay: AdamW of the head (both stages).
        lr_decay_epochs, lr_decay: multiply both learning rates by ``lr_decay`` from each of these (0-based) epochs.
        temperature: Rank-N-Contrast temperature.
        loss_chunk_size: anchors per chunk of the loss (memory), ``None`` for one pass.
        cached_batch: stage 1: gradient caching (exact large-batch loss with micro-batch activation memory).
        micro_batch: clips per encoder call with ``cached_batch``.
        grad_checkpointing: recompute encoder block activations in backward (memory).
        sync_bn: convert BatchNorm to SyncBatchNorm under multi-GPU DDP.
        seed: seed of every random choice (data order, clips, crops, dropout, init).
        num_workers: DataLoader workers.
        pin_memory: pin host memory (``None``: when CUDA is used).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks CUDA when available (``LOCAL_RANK`` under
            torchrun).
        precision: ``"auto"`` (bf16 autocast on CUDA when supported, else fp16 with loss scaling; fp32 on CPU),
            ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        save_every_steps: also checkpoint every N steps within an epoch (``0``: only at epoch ends).
        resume: continue from ``out/checkpoint_last.pt`` if it exists.
        overwrite: start a new run in an ``out`` folder that holds another run's files (they are removed first);
            without it (and without ``resume``) such a folder is refused.
        limit_train, limit_val: use only the first N videos of a split (quick experiments).
        stop_after_steps: testing hook: raise :class:`~coreecho.train.engine.TrainingInterrupted` after this many
            global steps (simulates a killed run).
        progress: show tqdm progress bars (rank 0).
        tensorboard: also log to TensorBoard when it is installed.
        command: the command line that started the run (recorded in the exported model).
    """

    data: str = ""
    out: str = "runs/coreecho"
    init: str = "auto"
    preset: str | None = None
    architecture: str = "uniformer_small"
    encoder_args: dict[str, Any] = field(default_factory=dict)
    head_args: dict[str, Any] = field(default_factory=dict)
    reinit_head: bool = False
    preprocessing: PreprocessConfig = field(default_factory=PreprocessConfig)
    val_clips: int = 1
    epochs: int | None = None
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 1e-4
    head_lr: float = 1e-4
    head_weight_decay: float = 1e-4
    lr_decay_epochs: tuple[int, ...] = (15,)
    lr_decay: float = 0.1
    temperature: float = 1.0
    loss_chunk_size: int | None = None
    cached_batch: bool = False
    micro_batch: int = 8
    grad_checkpointing: bool = False
    sync_bn: bool = False
    seed: int = 0
    num_workers: int = 4
    pin_memory: bool | None = None
    device: str | None = None
    precision: str = "auto"
    save_every_steps: int = 0
    resume: bool = False
    overwrite: bool = False
    limit_train: int | None = None
    limit_val: int | None = None
    stop_after_steps: int | None = None
    progress: bool = True
    tensorboard: bool = True
    command: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.preprocessing, dict):
            self.preprocessing = _preprocessing(dict(self.preprocessing))
        elif not isinstance(self.preprocessing, PreprocessConfig):
            raise ConfigError(f"invalid training config: preprocessing must be a PreprocessConfig or a dict, found "
                              f"{self.preprocessing!r}")
        problems = check_types(self)  # before any value is used: a --config with "lr": "0.1" names the field
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))
        self.lr_decay_epochs = tuple(int(v) for v in self.lr_decay_epochs)
        self.encoder_args = dict(self.encoder_args)
        self.head_args = dict(self.head_args)
        problems = check_values(self)
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))

    # ------------------------------------------------------------------ derived values
    def preprocess(self) -> PreprocessConfig:
        """The model input recipe of this run (a copy of :attr:`preprocessing`).

        Stage 1 writes it into the model's config and both stages build their datasets from it (stage 2 from the
        stage-1 model's, with this run's ``pad`` and ``pad_style``), so a trained model is served exactly as it was
        trained.

        Example:
            >>> TrainConfig(frames=16, size=64).preprocess().replace(mean=(0, 0, 0), std=(1, 1, 1))
            PreprocessConfig(frames=16, stride=4, size=64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fps=50.0, \
crop_sector=True, sampling='clips', temporal='linear', pad=12, pad_style='coreecho')
        """
        return self.preprocessing.replace()

    def passes(self, stage: str) -> int:
        """Passes over the training set this run makes in ``stage``: ``epochs``, or the official number."""
        if self.epochs is not None:
            return int(self.epochs)
        if stage not in OFFICIAL_PASSES:
            raise ConfigError(f"unknown stage {stage!r}; known: {', '.join(OFFICIAL_PASSES)}")
        return OFFICIAL_PASSES[stage]

    def encoder(self) -> tuple[str, dict[str, Any]]:
        """``(architecture, encoder_args)`` after applying the preset."""
        return resolve_encoder(self.preset, self.architecture, self.encoder_args)

    def resolved_init(self) -> str:
        """The stage-1 initialisation after resolving ``"auto"``."""
        if self.init != "auto":
            return self.init
        arch, args = self.encoder()
        plain = not any(k in args for k in ("depth", "embed_dim", "head_dim"))
        return "uniformer-small-k400" if arch == "uniformer_small" and plain else "none"

    def lr_at(self, epoch: int, base: float | None = None) -> float:
        """Learning rate of a (0-based) epoch: ``base * lr_decay ** (number of decay epochs <= epoch)``."""
        value = self.lr if base is None else base
        for milestone in self.lr_decay_epochs:
            if epoch >= milestone:
                value *= self.lr_decay
        return value

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``format_version``, then the fields, with the preprocessing's at the top level."""
        data = asdict(self)
        pre = data.pop("preprocessing")
        pre["mean"], pre["std"] = list(self.preprocessing.mean), list(self.preprocessing.std)
        data["lr_decay_epochs"] = list(self.lr_decay_epochs)
        return {"format_version": TRAIN_FORMAT_VERSION, **pre, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from :meth:`to_dict` output (any version); unknown keys raise :class:`ConfigError`.

        A dict without ``format_version`` is version 1 (``train_config.json`` of earlier releases): an explicit
        ``pad`` there is read with its meaning of then, ``pad_style="echonet-dynamic"``. Preprocessing fields may
        be given at the top level or as a ``preprocessing`` object.
        """
        data = dict(data)
        version = data.pop("format_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version > TRAIN_FORMAT_VERSION:
            raise ConfigError(f"training config format_version {version!r} is newer than this coreecho understands "
                              f"({TRAIN_FORMAT_VERSION}); upgrade coreecho")
        pre = data.pop("preprocessing", None) or {}
        if not isinstance(pre, (dict, PreprocessConfig)):
            raise ConfigError(f"training config: preprocessing must be an object, found {pre!r}")
        pre = asdict(pre) if isinstance(pre, PreprocessConfig) else dict(pre)
        pre.update({k: data.pop(k) for k in PREPROCESS_FIELDS if k in data})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**data, preprocessing=_preprocessing(preprocessing_from_saved(pre, version)))

    def to_json(self) -> str:
        """Indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


def _preprocessing(values: dict[str, Any], base: PreprocessConfig | None = None) -> PreprocessConfig:
    """``base`` (default: ``PreprocessConfig()``) with ``values`` applied; errors name the training config."""
    try:
        return (base or PreprocessConfig()).replace(**values)
    except (ConfigError, TypeError) as err:
        raise ConfigError(f"invalid training config: {str(err).replace('preprocessing: ', '', 1)}") from None


def _delegate(name: str) -> property:
    return property(lambda self: getattr(self.preprocessing, name),
                    doc=f"``preprocessing.{name}`` (read-only; change it with ``dataclasses.replace(cfg, {name}=...)``)")


def _accept_preprocessing_names(init: Any) -> Any:
    """Let the constructor take PreprocessConfig's fields by name: ``TrainConfig(frames=16, pad=0)``."""

    @functools.wraps(init)
    def __init__(self: TrainConfig, *args: Any, **kwargs: Any) -> None:
        named = {k: kwargs.pop(k) for k in PREPROCESS_FIELDS if k in kwargs}
        if named:
            given = kwargs.get("preprocessing")
            if isinstance(given, dict):
                given = _preprocessing(given)
            kwargs["preprocessing"] = _preprocessing(named, given)
        init(self, *args, **kwargs)

    return __init__


TrainConfig.__init__ = _accept_preprocessing_names(TrainConfig.__init__)  # type: ignore[method-assign]
for _name in PREPROCESS_FIELDS:
    setattr(TrainConfig, _name, _delegate(_name))
del _name
