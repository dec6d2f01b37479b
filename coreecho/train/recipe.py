"""What ``--resume`` may change: a resumed run must have the recipe of the checkpoint it continues.

A checkpoint records the run's :class:`~coreecho.train.config.TrainConfig` and the model's config. Resuming with
other values of what defines the trained model (architecture and encoder arguments, preset, head, the
preprocessing: frames, stride, size, pad, pad_style, mean, std, sampling; the data order and optimisation: seed, batch
size, learning rates, decay, temperature, the training/validation subsets; stage 2's initial model) would give
a model whose config says one recipe while its weights come from another, so :func:`check_resume` refuses with
one line per field, e.g. ``frames: checkpoint 16, now 36``.

Only :data:`~coreecho.train.config.RESUMABLE_FIELDS` may change: ``epochs`` (extend or shorten a run) and
settings of the machine and of memory use that do not change what is trained (device, precision, workers,
progress, TensorBoard, checkpoint frequency, gradient caching and checkpointing, loss chunking, SyncBatchNorm)
plus the data folder's location (``data``), which may move between machines.

Example:
    >>> from coreecho.train.config import TrainConfig
    >>> saved = TrainConfig(preset="micro", frames=16).to_dict()
    >>> resume_diff({"config": saved}, TrainConfig(preset="micro", frames=36, epochs=40), "stage1")
    ['frames: checkpoint 16, now 36']
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from coreecho.errors import ConfigError
from coreecho.train.config import PREPROCESS_FIELDS, TrainConfig

__all__ = ["resume_diff", "check_resume", "RECIPE_FIELDS"]

#: Fields compared on resume, per stage. Stage 2 takes the architecture and preprocessing from its ``init`` model
#: (its ``frames``/``stride``/... options are ignored), so it compares ``init`` instead, and its own augmentation
#: (``pad``, ``pad_style``).
RECIPE_FIELDS: dict[str, tuple[str, ...]] = {
    "stage1": ("architecture", "encoder_args", "head_args", "init", "frames", "stride", "size", "pad", "pad_style",
               "mean", "std", "sampling", "seed", "batch_size", "lr", "weight_decay", "head_lr", "head_weight_decay",
               "lr_decay_epochs", "lr_decay", "temperature", "val_clips", "limit_train", "limit_val"),
    "stage2": ("init", "reinit_head", "head_args", "pad", "pad_style", "seed", "batch_size", "head_lr",
               "head_weight_decay", "lr_decay_epochs", "lr_decay", "val_clips", "limit_train", "limit_val"),
}


def _init_path(init: str) -> str:
    path = Path(init).expanduser()
    if (path / "best_model").is_dir():
        path = path / "best_model"
    return str(path.resolve()) if path.exists() else init


def _values(cfg: TrainConfig, stage: str, sampling: str) -> dict[str, Any]:
    arch, args = cfg.encoder()
    out: dict[str, Any] = {name: getattr(cfg, name) for name in RECIPE_FIELDS[stage] if hasattr(cfg, name)}
    out.update(architecture=arch, encoder_args=args, sampling=sampling, mean=tuple(cfg.mean), std=tuple(cfg.std),
               lr_decay_epochs=tuple(cfg.lr_decay_epochs))
    out["init"] = _init_path(cfg.init) if stage == "stage2" else cfg.resolved_init()
    if stage == "stage2" and not cfg.reinit_head:
        out.pop("head_args", None)  # stage 2 continues the stage-1 head unless --reinit-head
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return a == b


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(f"{v:.6g}" for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def resume_diff(checkpoint: dict[str, Any], cfg: TrainConfig, stage: str) -> list[str]:
    """Lines ``field: checkpoint A, now B`` for each recipe field where ``cfg`` differs from ``checkpoint``.

    Args:
        checkpoint: a training checkpoint (its ``"config"``, the run's TrainConfig, and ``"model_config"``).
        cfg: the configuration of the run that wants to resume.
        stage: ``"stage1"`` or ``"stage2"``.
    """
    saved_dict = dict(checkpoint.get("config") or {})
    keep = set(TrainConfig.__dataclass_fields__) | set(PREPROCESS_FIELDS) | {"format_version"}
    known = {k: v for k, v in saved_dict.items() if k in keep}  # read in its own format_version
    try:
        saved = TrainConfig.from_dict(known)
    except (ConfigError, TypeError) as err:
        return [f"config: the checkpoint's training config is unreadable ({err})"]
    pre = (checkpoint.get("model_config") or {}).get("preprocessing") or {}
    saved_sampling = pre.get("sampling", "clips") if isinstance(pre, dict) else "clips"
    now_sampling = cfg.preprocess().sampling if stage == "stage1" else saved_sampling  # stage 2: the model's
    before, after = _values(saved, stage, saved_sampling), _values(cfg, stage, now_sampling)
    lines = []
    for name in RECIPE_FIELDS[stage]:
        if name not in before and name not in after:
            continue
        a, b = before.get(name), after.get(name)
        if not _same(a, b):
            extra = ""
            if name in ("architecture", "encoder_args") and (saved.preset or cfg.preset):
                extra = f" (presets: checkpoint {saved.preset!r}, now {cfg.preset!r})"
            lines.append(f"{name}: checkpoint {_show(a)}, now {_show(b)}{extra}")
    return lines


def check_resume(checkpoint: dict[str, Any], cfg: TrainConfig, stage: str, path: str | Path) -> None:
    """Raise :class:`ConfigError` with a readable diff when ``cfg`` does not have ``checkpoint``'s recipe.

    Example:
        >>> from coreecho.train.config import TrainConfig
        >>> try:
        ...     check_resume({"config": TrainConfig(size=64).to_dict()}, TrainConfig(size=112), "stage1", "ckpt.pt")
        ... except ConfigError as err:
        ...     print(str(err).splitlines()[:2])
        ["ckpt.pt: cannot resume: 1 setting of this run differs from the checkpoint's:", '  size: checkpoint 64, now 112']
    """
    lines = resume_diff(checkpoint, cfg, stage)
    if not lines:
        return
    folder = Path(path).parent
    details = [f"  {line}" for line in lines] + [
        f"To resume, run with the checkpoint's settings: `coreecho train {stage} --config "
        f"{folder / 'train_config.json'} --resume ...` (options given on the command line override that file).",
        "Or start a new run: another --out, or --overwrite to replace this one.",
        "What may change on resume: the number of epochs, the paths, workers, device, precision, logging,",
        "how often checkpoints are saved, and the memory savers (loss chunks, cached batch, micro-batch, "
        "gradient checkpointing, SyncBatchNorm)."]
    many = len(lines) > 1
    err = ConfigError(f"{path}: cannot resume: {len(lines)} setting{'s' if many else ''} of this run "
                      f"{'differ' if many else 'differs'} from the checkpoint's:\n" + "\n".join(details))
    err.details = details  # the CLI prints them one per line (coreecho.cli.main)
    raise err
