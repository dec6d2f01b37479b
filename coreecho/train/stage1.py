"""Stage 1 of CoReEcho: Rank-N-Contrast on two views per video, with the EF head trained alongside.

Each step takes ``B`` videos with two independently sampled and augmented clips each, embeds all ``2B`` clips in
one encoder batch, and minimises :class:`~coreecho.losses.CoReLoss` on the ``[B, 2, D]`` embeddings (encoder
AdamW). The head is trained at the same time with an L1 loss on the **detached** embeddings of both views (its
own AdamW), so it never changes the encoder. Under torchrun the encoder and head are DDP-wrapped and the loss
gathers the embeddings of all ranks (``gather_distributed=True``): the update equals that of one process on the
global batch (BatchNorm aside, see ``tests/test_train_ddp.py``). With ``cached_batch`` the encoder runs in
micro-batches under gradient caching (:mod:`coreecho.train.gradcache`): same loss, activation memory of one
micro-batch.

Example:
    >>> from coreecho.train import TrainConfig, train_stage1
    >>> result = train_stage1(TrainConfig(data="EchoNet-Dynamic", out="runs/stage1"))  # doctest: +SKIP
    >>> result.best_model  # doctest: +SKIP
    PosixPath('runs/stage1/best_model')
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from coreecho.data.pipelined import batch_clips
from coreecho.errors import ConfigError
from coreecho.losses import CoReLoss
from coreecho.models.build import build_model
from coreecho.models.config import ModelConfig
from coreecho.models.coreecho import CoReEcho
from coreecho.train import engine
from coreecho.train.config import TrainConfig
from coreecho.train.distributed import DistEnv, cleanup_distributed, init_distributed, wrap_ddp
from coreecho.train.evaluation import autocast_for
from coreecho.train.runfolder import claim_run_folder

__all__ = ["train_stage1", "stage1_step", "build_stage1_model", "build_optimizers", "make_scaler"]


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def make_scaler(device: torch.device, precision_used: str) -> Any:
    """A GradScaler for fp16 on CUDA, else ``None``."""
    if precision_used == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def build_optimizers(cfg: TrainConfig, model: CoReEcho, stage: str) -> dict[str, torch.optim.Optimizer]:
    """The optimisers of a stage, as the official scripts build them: torch's AdamW (default betas and eps) over
    all parameters of a module in one group, with one weight decay.

    Stage 1: ``{"encoder": AdamW(encoder, lr, weight_decay), "head": AdamW(head, head_lr, head_weight_decay)}``;
    stage 2: the head's only (the encoder is frozen). The learning rates are those of pass 0; the training loop sets
    ``lr_at(epoch)`` on every group at the start of each pass.

    Example:
        >>> opts = build_optimizers(TrainConfig(preset="micro"), build_stage1_model(TrainConfig(preset="micro")),
        ...                         "stage1")
        >>> sorted(opts), opts["encoder"].defaults["lr"], opts["head"].defaults["weight_decay"]
        (['encoder', 'head'], 0.0001, 0.0001)
    """
    head = torch.optim.AdamW(model.head.parameters(), lr=cfg.head_lr, weight_decay=cfg.head_weight_decay)
    if stage == "stage2":
        return {"head": head}
    return {"encoder": torch.optim.AdamW(model.encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
            "head": head}


def build_stage1_model(cfg: TrainConfig) -> CoReEcho:
    """The model of stage 1 (seeded by ``cfg.seed``), with the encoder initialised as ``cfg.init`` says.

    ``init``: a registered encoder checkpoint (``uniformer-small-k400``), a ``.pth`` file (Kinetics or official
    CoReEcho), a coreecho model folder or training output folder (its encoder is used), or ``none``.

    Example:
        >>> model = build_stage1_model(TrainConfig(preset="micro"))
        >>> model.embed_dim, model.config.preprocessing.frames, model.config.preprocessing.sampling
        (64, 36, 'clips')
    """
    arch, args = cfg.encoder()
    mcfg = ModelConfig(architecture=arch, encoder_args=args, head_args=dict(cfg.head_args),
                       preprocessing=cfg.preprocess())
    torch.manual_seed(cfg.seed)
    model = build_model(mcfg, source="training config")
    init = cfg.resolved_init()
    if init.lower() == "none":
        return model
    from coreecho.hub import REGISTRY, fetch_weights_file, load_encoder_weights, load_model

    if init in REGISTRY:
        if REGISTRY[init].kind != "hub-checkpoint":
            raise ConfigError(f"--init {init}: only downloadable encoder checkpoints can initialise stage 1 "
                              f"({', '.join(k for k, v in REGISTRY.items() if v.kind == 'hub-checkpoint')}), a "
                              "path, or 'none'")
        load_encoder_weights(model.encoder, fetch_weights_file(init))
    elif Path(init).is_dir():
        folder = Path(init) / "best_model" if (Path(init) / "best_model").is_dir() else Path(init)
        from coreecho.hub.folder import internal_load

        with internal_load():  # only its encoder is used: a missing calibration does not matter
            model.encoder.load_state_dict(load_model(folder, device="cpu").encoder.state_dict())
    else:
        load_encoder_weights(model.encoder, init)
    model.config.metadata["encoder_init"] = init
    return model


def stage1_step(encoder: nn.Module, head: nn.Module, clips: torch.Tensor, ef: torch.Tensor, *,
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                opt_encoder: torch.optim.Optimizer, opt_head: torch.optim.Optimizer,
                autocast: Callable[[], Any] = contextlib.nullcontext, scaler: Any = None,
                micro_batch: int | None = None) -> dict[str, float]:
    """One stage-1 step: Rank-N-Contrast update of the encoder, then an L1 update of the head on detached
    embeddings.

    Args:
        encoder: ``[N, 3, T, S, S] -> [N, D]`` (possibly DDP-wrapped).
        head: ``[N, D] -> [N]`` (possibly DDP-wrapped).
        clips: ``[B, V, 3, T, S, S]`` (``V`` views per video), on the device.
        ef: ``[B]`` labels.
        loss_fn: the contrastive loss, e.g. ``CoReLoss(temperature=1.0)``.
        opt_encoder, opt_head: the two optimisers.
        autocast: mixed-precision context factory.
        scaler: a GradScaler (fp16) or ``None``.
        micro_batch: use gradient caching with this many clips per encoder call.

    Returns:
        ``{"loss": global Rank-N-Contrast loss, "l1": head L1 loss}``.

    Example:
        >>> from coreecho.models.head import RegressionHead
        >>> enc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 4 * 4, 8))
        >>> head = RegressionHead(8)
        >>> x, y = torch.randn(4, 2, 3, 2, 4, 4), torch.rand(4) * 60 + 20
        >>> out = stage1_step(enc, head, x, y, loss_fn=CoReLoss(),
        ...                   opt_encoder=torch.optim.AdamW(enc.parameters()),
        ...                   opt_head=torch.optim.AdamW(head.parameters()))
        >>> sorted(out)
        ['l1', 'loss']
    """
    b, v = clips.shape[:2]
    opt_encoder.zero_grad(set_to_none=True)
    if micro_batch:
        from coreecho.train.gradcache import cached_contrastive_step

        def scaled(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            value = loss_fn(_float(features), labels)
            return scaler.scale(value) if scaler is not None else value

        with autocast():
            loss, emb = cached_contrastive_step(encoder, clips, ef, scaled, micro_batch, return_embeddings=True)
        emb = emb.flatten(0, 1)
    else:
        with autocast():
            emb = encoder(clips.flatten(0, 1))
        loss = loss_fn(_float(emb).view(b, v, -1), ef)
        (scaler.scale(loss) if scaler is not None else loss).backward()
    if scaler is not None:
        scaler.step(opt_encoder)
    else:
        opt_encoder.step()

    target = ef.reshape(b).repeat_interleave(v)  # rows of emb are video-major
    l1 = head_l1_step(head, emb.detach().reshape(b * v, -1), target, opt_head, scaler)
    global_loss = getattr(loss_fn, "last_global_loss", None)
    return {"loss": float(global_loss if global_loss is not None else loss), "l1": float(l1.detach())}


def head_l1_step(head: nn.Module, emb: torch.Tensor, target: torch.Tensor, opt_head: torch.optim.Optimizer,
                 scaler: Any = None) -> torch.Tensor:
    """One L1 step of the head on (detached) embeddings; updates the GradScaler when one is used.

    Returns:
        The L1 loss (with graph; detach before logging).
    """
    opt_head.zero_grad(set_to_none=True)
    pred = head(_float(emb))
    l1 = F.l1_loss(pred, target.to(pred.dtype).reshape(pred.shape))
    (scaler.scale(l1) if scaler is not None else l1).backward()
    if scaler is not None:
        scaler.step(opt_head)
        scaler.update()
    else:
        opt_head.step()
    return l1


def run_metadata(cfg: TrainConfig, stage: str, env: DistEnv, precision: str) -> dict[str, Any]:
    return {
        "description": f"CoReEcho {stage} trained with coreecho",
        "training_data": f"EchoNet-Dynamic layout at {cfg.data}",
        "stage": stage, "seed": cfg.seed, "command": cfg.command, "recipe": cfg.to_dict(),
        "world_size": env.world_size, "precision": precision,
    }


def train_stage1(cfg: TrainConfig) -> engine.TrainResult:
    """Run stage 1 (see the module docstring); under torchrun every process calls it.

    Returns:
        A :class:`~coreecho.train.engine.TrainResult`; ``best_model`` is the input of stage 2.

    Example:
        >>> cfg = TrainConfig(data="phantom", out="runs/s1", preset="tiny", frames=16, epochs=2)  # doctest: +SKIP
        >>> train_stage1(cfg).best_val_mae  # doctest: +SKIP
    """
    env = init_distributed(cfg.device)
    try:
        if cfg.batch_size * env.world_size < 2:
            raise ConfigError(f"batch_size {cfg.batch_size} with {env.world_size} process(es): stage 1 needs at "
                              "least 2 videos per step; the Rank-N-Contrast loss compares each video with the others "
                              "of its batch (with one video it is 0 and nothing is learned)")
        with claim_run_folder(cfg, "stage1", env):
            return _run_stage1(cfg, env)  # returns before cleanup: no DDP wrapper outlives the group
    finally:
        cleanup_distributed(env)


def _run_stage1(cfg: TrainConfig, env: DistEnv) -> engine.TrainResult:
    cfg = dataclasses.replace(cfg, epochs=cfg.passes("stage1"))  # default: the official 26 passes
    autocast, precision = autocast_for(env.device, cfg.precision)
    resume = engine.find_resume(cfg, "stage1", env)  # refuses a changed recipe before anything is built
    train_set, val_set = engine.build_datasets(cfg, views=2)
    model = build_stage1_model(cfg) if resume is None else model_from_checkpoint(resume)
    model.encoder.set_grad_checkpointing(cfg.grad_checkpointing)
    model = model.to(env.device)
    encoder = wrap_ddp(model.encoder, env, sync_bn=cfg.sync_bn and env.device.type == "cuda")
    head = wrap_ddp(model.head, env)
    if encoder is not model.encoder and cfg.sync_bn:
        model.encoder = encoder.module  # the SyncBatchNorm-converted copy is the one trained and saved
    optimizers = build_optimizers(cfg, model, "stage1")
    opt_encoder, opt_head = optimizers["encoder"], optimizers["head"]
    scaler = make_scaler(env.device, precision)
    loss_fn = CoReLoss(temperature=cfg.temperature, gather_distributed=env.distributed,
                       chunk_size=cfg.loss_chunk_size)

    def step(batch: dict[str, Any]) -> dict[str, float]:
        clips = batch_clips(batch, env.device)  # uint8 in, normalised (and cropped) on the device
        ef = batch["label"].to(env.device, non_blocking=True)
        return stage1_step(encoder, head, clips, ef, loss_fn=loss_fn, opt_encoder=opt_encoder,
                           opt_head=opt_head, autocast=autocast, scaler=scaler,
                           micro_batch=cfg.micro_batch if cfg.cached_batch else None)

    def modes() -> None:
        encoder.train()
        head.train()

    stage = engine.Stage("stage1", model, encoder, head, optimizers,
                         {"encoder": cfg.lr, "head": cfg.head_lr}, step, modes, scaler,
                         run_metadata(cfg, "stage1", env, precision))
    return engine.run(cfg, env, stage, train_set, val_set, resume)


def model_from_checkpoint(ckpt: dict[str, Any]) -> CoReEcho:
    """A model with the architecture recorded in a training checkpoint (weights are loaded by the engine)."""
    return build_model(ModelConfig.from_dict(dict(ckpt["model_config"]), source="checkpoint"), source="checkpoint")
