"""Training configuration: one dataclass with the CoReEcho paper's defaults, and encoder presets.

The defaults are the official recipe for stage 1 on EchoNet-Dynamic (UniFormer-S from Kinetics-400, 36 frames at
stride 4, 112 px with 12 px pad-and-crop, AdamW lr 1e-4 / wd 1e-4 for encoder and head, lr x0.1 from epoch 15,
batch 16 videos x 2 views, 25 epochs, Rank-N-Contrast temperature 1, selection by validation MAE on 3 random
clips). Stage 2 uses the same dataclass (``views`` is forced to 1 and the encoder is frozen).

Example:
    >>> cfg = TrainConfig(data="EchoNet-Dynamic", out="runs/s1")
    >>> cfg.batch_size, cfg.lr, cfg.lr_at(14), cfg.lr_at(15)
    (16, 0.0001, 0.0001, 1e-05)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from coreecho.errors import ConfigError
from coreecho.models.build import ENCODER_PRESETS, resolve_encoder  # re-exported: they moved to coreecho.models
from coreecho.models.config import ECHONET_MEAN, ECHONET_STD, PreprocessConfig

__all__ = ["TrainConfig", "ENCODER_PRESETS", "resolve_encoder", "RESUMABLE_FIELDS"]

#: Settings that may change when a run is resumed (``--resume``): how long it runs and how it runs on this machine.
#: Every other field is the run's recipe; a resume with a different value is refused
#: (:func:`coreecho.train.recipe.resume_diff`).
RESUMABLE_FIELDS = ("epochs", "data", "out", "resume", "command", "num_workers", "pin_memory", "device", "precision",
                    "progress", "tensorboard", "save_every_steps", "stop_after_steps", "loss_chunk_size",
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
        frames, stride, size, pad: clip length, frame step, input side, augmentation padding.
        mean, std: per-channel normalisation in 0–255 units.
        val_clips: random clips per validation video (official 3).
        epochs: training loops run (the official scripts run ``epochs + 1`` loops; pass 26 to match them).
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
    frames: int = 36
    stride: int = 4
    size: int = 112
    pad: int = 12
    mean: tuple[float, float, float] = ECHONET_MEAN
    std: tuple[float, float, float] = ECHONET_STD
    val_clips: int = 3
    epochs: int = 25
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
    limit_train: int | None = None
    limit_val: int | None = None
    stop_after_steps: int | None = None
    progress: bool = True
    tensorboard: bool = True
    command: str | None = None

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        self.lr_decay_epochs = tuple(int(v) for v in self.lr_decay_epochs)
        self.encoder_args = dict(self.encoder_args)
        self.head_args = dict(self.head_args)
        problems = []
        for name in ("frames", "stride", "size", "epochs", "batch_size", "val_clips", "micro_batch"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.pad < 0 or self.num_workers < 0 or self.save_every_steps < 0:
            problems.append("pad, num_workers and save_every_steps must be >= 0")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            problems.append(f"precision must be auto, fp32, bf16 or fp16 (got {self.precision!r})")
        if self.temperature <= 0 or self.lr <= 0 or self.head_lr <= 0:
            problems.append("temperature, lr and head_lr must be > 0")
        if self.preset is not None and self.preset not in ENCODER_PRESETS:
            problems.append(f"preset must be one of {', '.join(ENCODER_PRESETS)} (got {self.preset!r})")
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))
        self.preprocess()  # frames, stride, size, pad, mean, std within PreprocessConfig's bounds

    # ------------------------------------------------------------------ derived values
    def preprocess(self) -> PreprocessConfig:
        """The model input recipe of this run: ``frames``, ``stride``, ``size``, ``pad``, ``mean``, ``std`` and
        ``sampling="clips"`` (EchoNet-Dynamic clips of every ``stride``-th frame).

        Stage 1 writes it into the model's config and both stages build their datasets from it (stage 2 from the
        stage-1 model's, with its own ``pad``), so a trained model is served exactly as it was trained.

        Example:
            >>> TrainConfig(frames=16, size=64).preprocess().replace(mean=(0, 0, 0), std=(1, 1, 1))
            PreprocessConfig(frames=16, stride=4, size=64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), fps=50.0, \
crop_sector=True, sampling='clips', temporal='linear', pad=12)
        """
        try:
            return PreprocessConfig(frames=self.frames, stride=self.stride, size=self.size, mean=self.mean,
                                    std=self.std, pad=self.pad, sampling="clips")
        except ConfigError as err:
            raise ConfigError(f"invalid training config: {str(err).replace('preprocessing: ', '', 1)}") from None

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
        """JSON-ready dict."""
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        data["lr_decay_epochs"] = list(self.lr_decay_epochs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from :meth:`to_dict` output; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        """Indented JSON."""
        return json.dumps(self.to_dict(), indent=2)
