"""The epoch loop shared by both stages: data order, per-step seeding, validation, checkpoints, resume, logging.

Exact resume. Every random choice of a run is a pure function of the seed and the position in the run:

* the order of an epoch is the permutation of ``(seed, epoch)`` (:class:`~coreecho.train.distributed.ResumableSampler`);
* a training item's clip starts and crops come from ``(seed, epoch, video index)`` (the dataset's ``set_epoch``);
* dropout and any other torch randomness of step ``k`` of epoch ``e`` come from ``torch.manual_seed`` of a seed
  derived from ``(seed, stage, epoch, k, rank)``, set right before the step;
* validation clips come from ``(seed, epoch)``.

A checkpoint (every epoch, and every ``save_every_steps`` steps) stores the weights, the optimiser and loss-scaler
states, the epoch, the number of steps done in it, the best validation error, the history and the partial sums of
the epoch's training losses. A resumed run skips the batches already done and continues with the same data and
the same random numbers, so it ends with the same weights and metrics as a run that was never interrupted (bit
for bit on the same hardware and software, with deterministic kernels). The learning rate is a function of the
epoch (:meth:`~coreecho.train.config.TrainConfig.lr_at`), so no scheduler state is needed.

Outputs in ``cfg.out``: ``checkpoint_last.pt``, ``metrics.csv`` (one row per epoch), ``curves.png`` (its figure:
at the end, and after every pass of a minute or more), ``train_config.json``,
``best_model/`` (best validation MAE so far, a :func:`coreecho.load_model` folder), ``last_model/`` and, for
stage 2, ``model/`` (the final export); ``tensorboard/`` when TensorBoard is installed.

Safety (``docs/training.md``, "Safety"): the dataset listing is checked before the first step
(:func:`check_listing`) and its digest is stored in every checkpoint (``data_listing``), so ``--resume`` refuses an
edited listing; a diverged run (:mod:`coreecho.train.divergence`) stops before anything of the bad step is written;
``train_config.json``, ``metrics.csv`` and ``result.json`` are written atomically, and only once the data, the
model and the resume state were accepted.

Training steps run their own forward and backward pass, by design (gradients, training-mode layers); validation
predicts through the inference engine (:func:`~coreecho.train.evaluation.predict_dataset`, which runs
:func:`coreecho.engine.stream`), like every other forward pass over data.

Example:
    >>> derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 1, 3)
    True
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from coreecho._atomic import replace_atomically
from coreecho.data.echonet import EchoNetDynamic
from coreecho.data.echonet_audit import EchoNetAudit, audit_echonet, listing_digest
from coreecho.errors import ConfigError, CoReEchoError, DatasetError, WeightsError
from coreecho.models.config import PreprocessConfig
from coreecho.models.coreecho import CoReEcho
from coreecho.seeding import derive_seed  # re-exported: the one seed helper lives in coreecho.seeding
from coreecho.train.checkpoint import load_latest_checkpoint, rng_state, save_checkpoint, set_rng_state
from coreecho.train.config import TrainConfig
from coreecho.train.divergence import TrainingDiverged, find_divergence, validation_divergence, weights_divergence
from coreecho.train.distributed import DistEnv, ResumableSampler, all_gather_objects, barrier, is_main, unwrap
from coreecho.train.evaluation import predict_dataset
from coreecho.train.figures import CURVES_AFTER_PASS_S, write_training_curves
from coreecho.train.metrics import regression_metrics
from coreecho.train.recipe import check_resume
from coreecho.train.runfolder import remove_previous_run

__all__ = ["TrainingInterrupted", "TrainingDiverged", "TrainResult", "Stage", "derive_seed", "build_datasets",
           "find_resume", "run",
           "CHECKPOINT_NAME", "check_listing"]

CHECKPOINT_NAME = "checkpoint_last.pt"
_STAGE_IDS = {"stage1": 1, "stage2": 2}


class TrainingInterrupted(CoReEchoError):
    """Raised by the ``stop_after_steps`` testing hook (stands for a run killed mid-epoch)."""


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        out: the output folder.
        best_model: folder of the best model (by validation MAE).
        final_model: the exported model folder (stage 2: ``model/``; stage 1: ``best_model/``).
        best_val_mae: its validation MAE.
        best_epoch: its (0-based) epoch.
        history: one dict per epoch (losses, learning rate, validation metrics, seconds).
    """

    out: Path
    best_model: Path
    final_model: Path
    best_val_mae: float
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Stage:
    """The stage-specific parts of a run, given to :func:`run`.

    Attributes:
        name: ``"stage1"`` or ``"stage2"``.
        model: the unwrapped model (weights to save and export).
        encoder, head: the modules used for training (possibly DDP-wrapped).
        optimizers: by name; their state is checkpointed.
        base_lrs: learning rate of each optimiser at epoch 0.
        step: runs one optimisation step on a batch and returns scalars to log (``{"loss": ..., "l1": ...}``).
        train_modes: puts the modules in the modes of training (called at the start of every epoch).
        scaler: the fp16 loss scaler, if any.
        metadata: training facts recorded in the exported model's ``config.json``.
        export_final: also export ``model/`` (the best model with the run's metadata) at the end.
    """

    name: str
    model: CoReEcho
    encoder: nn.Module
    head: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    base_lrs: dict[str, float]
    step: Callable[[dict[str, Any]], dict[str, float]]
    train_modes: Callable[[], None]
    scaler: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    export_final: bool = False


def build_datasets(cfg: TrainConfig, views: int, preprocess: PreprocessConfig | None = None
                   ) -> tuple[EchoNetDynamic, EchoNetDynamic]:
    """Training (random clips, augmentation) and validation (``val_clips`` random clips) datasets.

    Args:
        cfg: the run's configuration.
        views: clips per training video (stage 1: 2, stage 2: 1).
        preprocess: the model's input recipe (default: :meth:`TrainConfig.preprocess`); its ``pad`` is the
            training augmentation (none when 0); validation is never augmented.
    """
    pre = preprocess if preprocess is not None else cfg.preprocess()
    audit = check_listing(cfg.data)
    train = EchoNetDynamic(cfg.data, "train", preprocess=pre, views=views, augment=pre.pad > 0, seed=cfg.seed)
    val = EchoNetDynamic(cfg.data, "val", preprocess=pre, clips=cfg.val_clips, clip_policy="random",
                         seed=derive_seed(cfg.seed, 0x7A1))
    if cfg.limit_train is not None:
        train.records = train.records[: cfg.limit_train]
    if cfg.limit_val is not None:
        val.records = val.records[: cfg.limit_val]
    used = {"train": audit.used.get("train", []), "val": audit.used.get("val", [])}
    train.listing = {"sha256": listing_digest(used), "train": len(used["train"]), "val": len(used["val"])}
    return train, val


def check_listing(data: str) -> EchoNetAudit:
    """Check the dataset's listing before anything is trained (:func:`~coreecho.data.echonet_audit.audit_echonet`):
    errors raise a :class:`~coreecho.errors.DatasetError` with counts and example rows; warnings are issued; the
    summary line (videos per split, and why others are left out) is printed by rank 0."""
    audit = audit_echonet(data)
    audit.raise_errors()
    if is_main():
        for line in audit.warnings:
            warnings.warn(line, UserWarning, stacklevel=3)
        print(audit.summary(), flush=True)
    return audit


def find_resume(cfg: TrainConfig, stage: str, env: DistEnv) -> dict[str, Any] | None:
    """The checkpoint to resume from (``cfg.resume`` and ``out/checkpoint_last.pt`` present), checked.

    Raises:
        WeightsError: the checkpoint is of another stage or was written by another number of processes.
        ConfigError: ``cfg`` differs from the checkpoint's recipe (see :mod:`coreecho.train.recipe`).
    """
    path = Path(cfg.out) / CHECKPOINT_NAME
    if not cfg.resume:
        return None
    found = load_latest_checkpoint(path)  # checked against its digest; the previous one if the last is damaged
    if found is None:
        if env.main:
            print(f"{stage}: no checkpoint at {path}; starting from the beginning", flush=True)
        return None
    ckpt, path = found
    if ckpt.get("stage") != stage:
        raise WeightsError(f"{path}: is a {ckpt.get('stage')} checkpoint; cannot resume {stage} from it "
                           "(use another --out folder)")
    if int(ckpt.get("world_size", 1)) != env.world_size:
        raise WeightsError(f"{path}: was written by {ckpt.get('world_size')} processes; resume with the same "
                           f"number (now {env.world_size}) so that the data order is the same")
    check_resume(ckpt, cfg, stage, path)  # the recipe (architecture, preprocessing, ...) must not change
    return ckpt


class _Log:
    """metrics.csv (rewritten from the whole history, so a resumed run has clean rows) and TensorBoard."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool):
        self.out, self.enabled, self.writer = out, enabled, None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                self.writer = None

    def epoch(self, history: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        keys: list[str] = []
        for row in history:
            keys += [k for k in row if k not in keys]
        def write(fh: Any) -> None:
            w = csv.DictWriter(fh, fieldnames=keys, lineterminator="\n")
            w.writeheader()
            w.writerows(history)

        replace_atomically(self.out / "metrics.csv", write)
        if self.writer is not None and history:
            row = history[-1]
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.writer.add_scalar(k, v, row["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _export(model: CoReEcho, folder: Path, metadata: dict[str, Any], title: str) -> Path:
    from coreecho.hub import save_pretrained

    model.config.metadata = {**model.config.metadata, **metadata}
    return save_pretrained(model, folder, title=title, description=metadata.get("description"),
                           training_data=metadata.get("training_data"))


def _restore(resume: dict[str, Any], model: Any, stage: Stage, env: DistEnv, path: Path) -> tuple:
    """Load a checkpoint's states into the run; a missing or unfitting entry is a WeightsError naming it."""
    entry = "model"
    try:
        model.load_state_dict(resume["model"])
        for name, opt in stage.optimizers.items():
            entry = f"optimizers.{name}"
            opt.load_state_dict(resume["optimizers"][name])
        entry = "scaler"
        if stage.scaler is not None and resume.get("scaler"):
            stage.scaler.load_state_dict(resume["scaler"])
        entry = "counters"
        counters = (int(resume["epoch"]), int(resume["step_in_epoch"]), int(resume["global_step"]),
                    float(resume["best_val_mae"]), int(resume["best_epoch"]), list(resume["history"]))
        entry = "epoch_sums"
        per_rank = resume.get("epoch_sums") or [{}] * env.world_size
        sums = dict(per_rank[env.rank])
        entry = "rng"
        set_rng_state(resume["rng"])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        detail = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
        raise WeightsError(f"{path}: the checkpoint's {entry!r} entry is missing or does not fit this run "
                           f"({detail}); the file was edited or written by another version - start a new --out "
                           "or resume with the settings that wrote it") from err
    return (*counters, sums)


def _agreed(why: str | None, env: DistEnv) -> str | None:
    """A step's divergence as every rank sees it (one rank's NaN stops all ranks at the same step)."""
    if not env.distributed:
        return why
    flag = torch.tensor([0.0 if why is None else 1.0], device=env.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return why if why is not None else ("another rank's training loss is NaN, infinite or exploded"
                                        if flag.item() > 0 else None)


def _check_same_listing(resume: dict[str, Any], listing: dict[str, Any] | None, cfg: TrainConfig,
                        path: Path) -> None:
    """Refuse to resume when the videos (names, labels, splits) differ from those the checkpoint trained on."""
    saved = resume.get("data_listing")
    if not isinstance(saved, dict) or listing is None or saved.get("sha256") == listing.get("sha256"):
        return  # checkpoints of earlier versions carry no listing: nothing to compare
    raise ConfigError(
        f"{path}: cannot resume: the dataset listing of {cfg.data} changed since this checkpoint was written "
        f"(train {saved.get('train')} -> {listing.get('train')} videos, val {saved.get('val')} -> "
        f"{listing.get('val')}; names, labels or splits differ): FileList.csv or VolumeTracings.csv was edited. "
        "Restore the listing the run started with, or start a new run (another --out, or --overwrite)")


def run(cfg: TrainConfig, env: DistEnv, stage: Stage, train_set: EchoNetDynamic, val_set: EchoNetDynamic,
        resume: dict[str, Any] | None = None) -> TrainResult:
    """Train ``stage`` for ``cfg.epochs`` epochs (from ``resume`` if given); see the module docstring."""
    out = Path(cfg.out)
    model, stage_id = stage.model, _STAGE_IDS.get(stage.name, 9)
    start_epoch, start_step, global_step = 0, 0, 0
    best_mae, best_epoch, history = math.inf, -1, []
    sums: dict[str, float] = {}
    listing = getattr(train_set, "listing", None)
    if resume is not None:
        _check_same_listing(resume, listing, cfg, Path(cfg.out) / CHECKPOINT_NAME)
        start_epoch, start_step, global_step, best_mae, best_epoch, history, sums = _restore(
            resume, model, stage, env, Path(cfg.out) / CHECKPOINT_NAME)
    if env.main:  # the first write: everything above (data, model, resume state) was accepted
        remove_previous_run(cfg)  # --overwrite: the previous run's files go only now
        out.mkdir(parents=True, exist_ok=True)
        replace_atomically(out / "train_config.json", lambda fh: fh.write(cfg.to_json() + "\n"))

    def diverged(epoch: int, step: int | None, why: str) -> TrainingDiverged:
        where = f"epoch {epoch + 1}" + (f", step {step + 1}" if step is not None else ", validation")
        kept = (f"the best model so far is kept in {out / 'best_model'} (epoch {best_epoch + 1}, validation MAE "
                f"{best_mae:.4g})" if best_epoch >= 0 else "no best model had been saved yet")
        return TrainingDiverged(
            f"{stage.name} diverged at {where} (global step {global_step + (step is not None)}): {why}. Nothing of "
            f"this step was saved: {kept}; {out / CHECKPOINT_NAME} is from before. Lower the learning rates (--lr, "
            "--head-lr) and start a new run (another --out, or --overwrite)")

    sampler = ResumableSampler(len(train_set), num_replicas=env.world_size, rank=env.rank, shuffle=True,
                               seed=cfg.seed)
    pin = cfg.pin_memory if cfg.pin_memory is not None else env.device.type == "cuda"
    steps_per_epoch = sampler.num_samples // cfg.batch_size
    if steps_per_epoch < 1:
        raise DatasetError(f"{cfg.data}: the training split has {len(train_set)} videos, fewer than one batch of "
                           f"{cfg.batch_size} per process ({env.world_size} process(es)); lower --batch-size")
    log = _Log(out, env.main, cfg.tensorboard)

    def checkpoint(epoch: int, step_in_epoch: int) -> None:
        why = weights_divergence(model)  # never checkpoint NaN weights (every rank holds the same weights)
        if why is not None:
            raise diverged(max(0, epoch - 1) if step_in_epoch == 0 else epoch,
                           None if step_in_epoch == 0 else step_in_epoch - 1, why)
        all_sums = all_gather_objects(dict(sums))  # every rank's partial loss sums of the epoch
        if env.main:
            save_checkpoint(out / CHECKPOINT_NAME, {
                "stage": stage.name, "config": cfg.to_dict(), "model_config": model.config.to_dict(),
                "model": model.state_dict(), "optimizers": {k: o.state_dict() for k, o in stage.optimizers.items()},
                "scaler": stage.scaler.state_dict() if stage.scaler is not None else None,
                "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                "best_val_mae": best_mae, "best_epoch": best_epoch, "history": history, "epoch_sums": all_sums,
                "rng": rng_state(), "world_size": env.world_size, "data_listing": listing,
                "sampler": {"seed": cfg.seed, "epoch": epoch, "skip": step_in_epoch * cfg.batch_size},
            })
        barrier()

    try:
        for epoch in range(start_epoch, cfg.epochs):
            began = time.perf_counter()
            lrs = {}
            for name, opt in stage.optimizers.items():
                lrs[name] = cfg.lr_at(epoch, stage.base_lrs[name])
                for group in opt.param_groups:
                    group["lr"] = lrs[name]
            skip = start_step if epoch == start_epoch else 0
            if epoch != start_epoch:
                sums = {}
            sampler.set_epoch(epoch)
            sampler.skip = skip * cfg.batch_size
            train_set.set_epoch(epoch)
            train_set.handover = "pixels"  # uint8 clips + crop offsets; the step makes its input on the device
            loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                                num_workers=cfg.num_workers, pin_memory=pin)
            stage.train_modes()
            bar = None
            if env.main and cfg.progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=steps_per_epoch, initial=skip, desc=f"{stage.name} epoch {epoch + 1}/{cfg.epochs}",
                           unit="step", leave=False)
            for k, batch in enumerate(loader, start=skip):
                torch.manual_seed(derive_seed(cfg.seed, stage_id, epoch, k, env.rank))
                scalars = stage.step(batch)
                why = _agreed(find_divergence(scalars), env)
                if why is not None:
                    raise diverged(epoch, k, why)
                for key, value in scalars.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                sums["_steps"] = sums.get("_steps", 0.0) + 1
                global_step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({key: f"{v:.3f}" for key, v in scalars.items()})
                if cfg.save_every_steps and global_step % cfg.save_every_steps == 0 and k + 1 < steps_per_epoch:
                    checkpoint(epoch, k + 1)
                if cfg.stop_after_steps is not None and global_step >= cfg.stop_after_steps:
                    raise TrainingInterrupted(f"stopped after {global_step} steps (stop_after_steps)")
            if bar is not None:
                bar.close()

            val_set.set_epoch(epoch)
            rows = predict_dataset(unwrap(stage.encoder), unwrap(stage.head), val_set, batch_size=2 * cfg.batch_size,
                                   device=env.device, precision=cfg.precision, num_workers=cfg.num_workers,
                                   rank=env.rank, world_size=env.world_size)
            why = validation_divergence([r["ef_true"] for r in rows], [r["ef_pred"] for r in rows],
                                        [r.get("name", "") for r in rows])
            if why is not None:  # every rank holds every row: all ranks stop together
                raise diverged(epoch, None, why)
            val = regression_metrics([r["ef_true"] for r in rows], [r["ef_pred"] for r in rows], bootstrap=0)
            parts = all_gather_objects(dict(sums))  # training losses: mean over steps and ranks
            row: dict[str, Any] = {"epoch": epoch}
            row.update({f"lr_{name}": v for name, v in lrs.items()})
            for key in sums:
                if not key.startswith("_"):
                    row[f"train_{key}"] = sum(p.get(key, 0.0) / max(1.0, p.get("_steps", 0.0)) for p in parts) / len(parts)
            row.update({"val_mae": val["mae"], "val_rmse": val["rmse"], "val_r2": val["r2"],
                        "seconds": round(time.perf_counter() - began, 3)})
            history.append(row)
            if val["mae"] <= best_mae:  # as the official scripts: a tie goes to the later pass
                best_mae, best_epoch = float(val["mae"]), epoch
                if env.main:
                    _export(model, out / "best_model", {**stage.metadata, "epoch": epoch, "metrics": {
                        "val_mae": val["mae"], "val_rmse": val["rmse"], "val_r2": val["r2"]}},
                        title=f"CoReEcho {stage.name} (best validation MAE)")
            sums = {}
            checkpoint(epoch + 1, 0)
            log.epoch(history)
            if env.main and row["seconds"] >= CURVES_AFTER_PASS_S:  # an interrupted long run keeps its figure
                write_training_curves(out)
            if env.main and cfg.progress:
                print(f"{stage.name} epoch {epoch + 1}/{cfg.epochs}: " + ", ".join(
                    f"{k} {v:.4g}" for k, v in row.items() if k != "epoch" and isinstance(v, float)), flush=True)
    finally:
        log.close()

    best_dir = out / "best_model"
    final = best_dir
    if env.main:
        last_meta = {**stage.metadata, "epoch": cfg.epochs - 1, "metrics": {"val_mae": history[-1]["val_mae"]}
                     if history else {}}
        _export(model, out / "last_model", last_meta, title=f"CoReEcho {stage.name} (last epoch)")
        if stage.export_final and best_dir.is_dir():
            from coreecho.hub import load_model

            from coreecho.hub.folder import internal_load

            with internal_load():  # a model just trained has no calibration yet: not said
                best = load_model(best_dir, device="cpu")
            best_row = next((r for r in history if r["epoch"] == best_epoch), {})
            final = _export(best, out / "model", {**stage.metadata, "epoch": best_epoch, "metrics": {
                "val_mae": best_row.get("val_mae"), "val_rmse": best_row.get("val_rmse"),
                "val_r2": best_row.get("val_r2")}, "history": history}, title="CoReEcho (trained with coreecho)")
        result = {"best_val_mae": best_mae, "best_epoch": best_epoch, "epochs": cfg.epochs, "history": history}
        replace_atomically(out / "result.json", lambda fh: fh.write(json.dumps(result, indent=2) + "\n"))
        if history:  # the log is closed: curves.png from the whole metrics.csv (a warning, never a failure)
            write_training_curves(out)
    elif stage.export_final:
        final = out / "model"
    barrier()
    return TrainResult(out, best_dir, final, best_mae, best_epoch, history)
