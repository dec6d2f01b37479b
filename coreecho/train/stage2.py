"""Stage 2 of CoReEcho: the encoder of stage 1 frozen (eval mode), the EF head trained with L1.

The stage-1 model gives the encoder, the head to continue from (or a fresh one with ``reinit_head``) and the
preprocessing (frames, stride, size, mean, std, sampling): stage 2 always uses the stage-1 model's preprocessing,
whatever ``cfg.frames``/``cfg.stride``/... say; only the augmentation (``cfg.pad`` and ``cfg.pad_style``) is this
stage's (and the exported config records it). One augmented clip per video per step; head AdamW (``head_lr`` 1e-4,
``head_weight_decay``); ``cfg.epochs`` passes (default: 5, the official ``--epochs 4``); the best head by validation
MAE (``val_clips`` random clips) is exported with
:func:`coreecho.hub.save_pretrained` to ``out/model`` with the training metadata (recipe of both stages, seed,
command, metrics) in ``config.json``.

Example:
    >>> from coreecho.train import TrainConfig, train_stage2
    >>> result = train_stage2(TrainConfig(data="EchoNet-Dynamic", out="runs/stage2",
    ...                                   init="runs/stage1"))  # doctest: +SKIP
    >>> result.final_model  # doctest: +SKIP
    PosixPath('runs/stage2/model')
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from coreecho.data.pipelined import batch_clips
from coreecho.errors import ConfigError
from coreecho.models.coreecho import CoReEcho
from coreecho.train import engine
from coreecho.train.config import TrainConfig
from coreecho.train.distributed import DistEnv, cleanup_distributed, init_distributed, wrap_ddp
from coreecho.train.evaluation import autocast_for
from coreecho.train.runfolder import claim_run_folder
from coreecho.train.stage1 import build_optimizers, head_l1_step, make_scaler, model_from_checkpoint, run_metadata

__all__ = ["train_stage2", "stage2_step", "load_stage1_model"]


def load_stage1_model(init: str, *, check_task: bool = True) -> CoReEcho:
    """The stage-1 model: a stage-1 output folder (its ``best_model/``), a model folder, or an official ``.pth``.

    With ``check_task`` (stage 2 continues the model's head) a classification or multi-output model is refused
    with a :class:`~coreecho.models.task.ModelTaskError`."""
    if init in ("", "auto", "none"):
        raise ConfigError("stage 2 needs the stage-1 model: pass --init RUN_DIR (the stage-1 --out folder), "
                          "a model folder, or an official best.pth")
    from coreecho.hub import load_model

    from coreecho.models.task import check_ef_regression

    path = Path(init).expanduser()
    if (path / "best_model").is_dir():
        path = path / "best_model"
    from coreecho.hub.folder import internal_load

    with internal_load():  # the stage-1 model has no calibration yet, as expected: not said
        model = load_model(path if path.exists() else init, device="cpu")
    if check_task:
        check_ef_regression(model.config, f"--init {init}", "stage 2 (it trains an EF regression head on this encoder; "
                            "use --reinit-head to start a fresh one)")
    return model


def stage2_step(encoder: nn.Module, head: nn.Module, clips: torch.Tensor, ef: torch.Tensor, *,
                opt_head: torch.optim.Optimizer, autocast: Callable[[], Any] = contextlib.nullcontext,
                scaler: Any = None) -> dict[str, float]:
    """One stage-2 step: frozen encoder forward without gradients, L1 update of the head.

    Args:
        encoder: the frozen encoder (in eval mode).
        head: the head (train mode; possibly DDP-wrapped).
        clips: ``[B, 3, T, S, S]``.
        ef: ``[B]``.
        opt_head: the head's optimiser.
        autocast: mixed-precision context factory.
        scaler: GradScaler (fp16) or ``None``.

    Returns:
        ``{"l1": loss}``.

    Example:
        >>> from coreecho.models.head import RegressionHead
        >>> enc, head = nn.Sequential(nn.Flatten(), nn.Linear(24, 8)).eval(), RegressionHead(8)
        >>> stage2_step(enc, head, torch.randn(4, 3, 2, 2, 2), torch.rand(4) * 60,
        ...             opt_head=torch.optim.AdamW(head.parameters())).keys()
        dict_keys(['l1'])
    """
    with torch.no_grad(), autocast():
        emb = encoder(clips)
    l1 = head_l1_step(head, emb, ef, opt_head, scaler)
    return {"l1": float(l1.detach())}


def train_stage2(cfg: TrainConfig) -> engine.TrainResult:
    """Run stage 2 (see the module docstring); under torchrun every process calls it.

    Returns:
        A :class:`~coreecho.train.engine.TrainResult`; ``final_model`` (``out/model``) is the deliverable.
    """
    env = init_distributed(cfg.device)
    try:
        if cfg.batch_size < 2:
            raise ConfigError(f"batch_size {cfg.batch_size}: stage 2 needs at least 2 videos per step and process "
                              "(the head's BatchNorm layers cannot train on one)")
        with claim_run_folder(cfg, "stage2", env):
            return _run_stage2(cfg, env)  # returns before cleanup: no DDP wrapper outlives the group
    finally:
        cleanup_distributed(env)


def _run_stage2(cfg: TrainConfig, env: DistEnv) -> engine.TrainResult:
    autocast, precision = autocast_for(env.device, cfg.precision)
    resume = engine.find_resume(cfg, "stage2", env)
    if resume is None:
        model = load_stage1_model(cfg.init, check_task=not cfg.reinit_head)
        stage1_meta = dict(model.config.metadata)
        if cfg.reinit_head:
            torch.manual_seed(cfg.seed)
            model.reset_head(1, **{k: v for k, v in cfg.head_args.items()
                                   if k in ("hidden_dim", "dropout", "bias_init")})
    else:
        model = model_from_checkpoint(resume)
        meta_now = model.config.metadata
        stage1_meta = dict(meta_now["stage1"] if meta_now.get("stage") == "stage2" else meta_now)
    # the stage-1 model's input recipe (sampling included), with this stage's augmentation; the run's config and
    # the exported model's config hold this one object
    pre = model.config.preprocessing.replace(pad=cfg.pad, pad_style=cfg.pad_style)
    model.config.preprocessing = pre
    cfg = dataclasses.replace(cfg, preprocessing=pre, epochs=cfg.passes("stage2"), preset=None,
                              architecture=model.config.architecture, encoder_args=dict(model.config.encoder_args))
    train_set, val_set = engine.build_datasets(cfg, views=1, preprocess=pre)
    model = model.to(env.device)
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    head = wrap_ddp(model.head, env)
    opt_head = build_optimizers(cfg, model, "stage2")["head"]
    scaler = make_scaler(env.device, precision)
    encoder = model.encoder

    def step(batch: dict[str, Any]) -> dict[str, float]:
        clips = batch_clips(batch, env.device)  # uint8 in, normalised (and cropped) on the device
        ef = batch["label"].to(env.device, non_blocking=True)
        return stage2_step(encoder, head, clips, ef, opt_head=opt_head, autocast=autocast, scaler=scaler)

    def modes() -> None:
        encoder.eval()
        head.train()

    meta = run_metadata(cfg, "stage2", env, precision)
    meta["stage1"] = {k: v for k, v in stage1_meta.items() if k != "stage1"}
    meta["description"] = "CoReEcho (stage 1 Rank-N-Contrast encoder + stage 2 head) trained with coreecho"
    stage = engine.Stage("stage2", model, encoder, head, {"head": opt_head}, {"head": cfg.head_lr}, step, modes,
                         scaler, meta, export_final=True)
    return engine.run(cfg, env, stage, train_set, val_set, resume)
