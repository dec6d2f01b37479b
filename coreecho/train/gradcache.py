"""Large contrastive batches on one device: gradient caching (GradCache, Gao et al., 2021).

A contrastive loss such as Rank-N-Contrast couples every sample of the batch, so the batch cannot simply be split
into independent gradient-accumulation steps. Gradient caching keeps the loss exact and bounds the encoder's
activation memory by one micro-batch:

1. embed the whole batch micro-batch by micro-batch **without** an autograd graph, saving the CPU and CUDA random
   number generator states before each micro-batch;
2. compute the loss on all embeddings and its gradient with respect to the embeddings only (cheap: ``[n, D]``);
3. replay each micro-batch **with** a graph, from the saved RNG state (so dropout draws the same masks), and
   backpropagate the cached embedding gradient of that micro-batch; parameter gradients accumulate.

The result equals an ordinary (uncached) forward of the same micro-batches in the same order followed by the same
loss, at the price of a second encoder forward. It does not equal one forward over the full batch wherever the
encoder mixes samples of a batch, which in practice means **BatchNorm in train mode**: its batch statistics are
those of each micro-batch. The cached result therefore equals a single full-batch forward only when
``micro_batch`` covers the whole batch, or when BatchNorm uses running statistics (``eval()`` mode or frozen
BN layers). Running statistics would also be updated twice (in the no-graph pass and in the replay); this helper
saves every BatchNorm layer's ``running_mean``, ``running_var`` and ``num_batches_tracked`` before the no-graph
pass and restores them afterwards (``restore_bn_stats=True``), so they are updated once per micro-batch exactly as
an uncached micro-batched forward would update them. Dropout draws different masks than a single full-batch
forward would (a different stream of the same distribution), but exactly the masks of the uncached micro-batched
forward.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from coreecho.losses import CoReLoss
    >>> from coreecho.train.gradcache import cached_contrastive_step
    >>> encoder = nn.Sequential(nn.Linear(12, 32), nn.Dropout(0.1), nn.GELU(), nn.Linear(32, 16))
    >>> clips = torch.randn(64, 2, 12)          # 64 videos x 2 views (a real encoder sees [C, T, H, W])
    >>> ef = torch.rand(64) * 70 + 10
    >>> loss = cached_contrastive_step(encoder, clips, ef, CoReLoss(temperature=2.0), micro_batch=16)
    >>> encoder[0].weight.grad.shape            # gradients accumulated, ready for optimizer.step()
    torch.Size([32, 12])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from coreecho.errors import InputError

__all__ = ["cached_contrastive_step"]


def _rng_state() -> tuple[Tensor, list[Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Tensor, list[Tensor] | None]) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _bn_snapshot(encoder: object) -> list[tuple[nn.Module, dict[str, Tensor]]]:
    if not isinstance(encoder, nn.Module):
        return []
    saved = []
    for module in encoder.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            buffers = {
                name: buf.detach().clone()
                for name in ("running_mean", "running_var", "num_batches_tracked")
                if (buf := getattr(module, name, None)) is not None
            }
            saved.append((module, buffers))
    return saved


def _bn_restore(saved: list[tuple[nn.Module, dict[str, Tensor]]]) -> None:
    with torch.no_grad():
        for module, buffers in saved:
            for name, value in buffers.items():
                getattr(module, name).copy_(value)


def _embed(encoder: Callable[..., Any], chunk: Tensor, select: Callable[[Any], Tensor] | None) -> Tensor:
    out = encoder(chunk)
    if select is not None:
        out = select(out)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != chunk.shape[0]:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise InputError(
            "encoder",
            f"must return embeddings [micro_batch, D] = [{chunk.shape[0]}, D], got {shape}; "
            "pass select=... to pick the embedding from a tuple or dict output",
        )
    return out


def cached_contrastive_step(
    encoder: Callable[..., Any],
    inputs: Tensor,
    labels: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    micro_batch: int = 16,
    *,
    views: bool = True,
    select: Callable[[Any], Tensor] | None = None,
    restore_bn_stats: bool = True,
    return_embeddings: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """One forward/backward of a contrastive loss over a large batch with micro-batch activation memory.

    Parameter gradients are **accumulated** into ``.grad`` (call ``optimizer.zero_grad()`` before, and
    ``optimizer.step()`` after, as with a plain ``loss.backward()``).

    Args:
        encoder: a module (or callable) mapping ``[m, ...]`` inputs to ``[m, D]`` embeddings. A
            ``DistributedDataParallel`` module is replayed under ``no_sync()`` except for the last micro-batch,
            so its gradients are all-reduced once.
        inputs: ``[B, V, ...]`` (``V`` views per video, the default) or, with ``views=False``, ``[N, ...]``.
            The ``B * V`` clips are embedded in micro-batches of ``micro_batch`` clips, video by video
            (``inputs.flatten(0, 1)``), and the embeddings are given to ``loss_fn`` as ``[B, V, D]``, exactly as
            ``loss_fn(encoder(inputs.flatten(0, 1)).view(B, V, -1), labels)`` would.
        labels: passed unchanged to ``loss_fn``.
        loss_fn: ``loss_fn(embeddings, labels) -> scalar``, e.g. :class:`coreecho.losses.CoReLoss` (with
            ``gather_distributed=True`` it still works: the gather happens once, on the cached embeddings).
        micro_batch: clips per encoder call; the memory knob.
        views: whether ``inputs`` has a view dimension after the batch dimension.
        select: picks the embedding from the encoder output (e.g. ``lambda out: out[1]`` for the official
            UniFormer, which returns ``(head, embedding)``).
        restore_bn_stats: save BatchNorm running statistics before the no-graph pass and restore them after it,
            so that they are updated once per micro-batch (by the replay), not twice.
        return_embeddings: also return the detached embeddings (``[B, V, D]`` or ``[N, D]``).

    Returns:
        The detached loss (and the detached embeddings if ``return_embeddings``).

    Raises:
        InputError: ``inputs`` is not a tensor or has too few dimensions, ``micro_batch < 1``, the encoder does
            not return ``[m, D]`` embeddings, or the loss is not a scalar.

    Note:
        CPU and CUDA random number generators are saved and restored; other generators (or randomness drawn from
        Python's ``random`` / numpy inside the encoder) are not, and would break the equality with the uncached
        computation. With BatchNorm in train mode, see the module docstring: statistics are per micro-batch.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from coreecho.losses import CoReLoss
        >>> enc = nn.Linear(5, 8)
        >>> x, y = torch.randn(10, 2, 5), torch.rand(10)
        >>> loss = cached_contrastive_step(enc, x, y, CoReLoss(), micro_batch=4)
        >>> loss.requires_grad, enc.weight.grad is not None
        (False, True)
    """
    if not isinstance(inputs, Tensor):
        raise InputError("inputs", f"expected a torch.Tensor, got {type(inputs).__name__}")
    if isinstance(micro_batch, bool) or not isinstance(micro_batch, int) or micro_batch < 1:
        raise InputError("micro_batch", f"must be a positive int (clips per encoder call), got {micro_batch!r}")
    if views:
        if inputs.dim() < 3:
            raise InputError(
                "inputs",
                f"expected [B, V, ...] (views=True), got shape {tuple(inputs.shape)}; use views=False for [N, ...]",
            )
        lead = tuple(inputs.shape[:2])
        flat = inputs.flatten(0, 1)
    else:
        if inputs.dim() < 2:
            raise InputError("inputs", f"expected [N, ...], got shape {tuple(inputs.shape)}")
        lead = (inputs.shape[0],)
        flat = inputs
    if flat.shape[0] == 0:
        raise InputError("inputs", "the batch is empty")
    chunks = flat.split(micro_batch)

    # 1. embeddings without graph; one RNG state per micro-batch
    bn_saved = _bn_snapshot(encoder) if restore_bn_stats else []
    states, parts = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_rng_state())
            parts.append(_embed(encoder, chunk, select))
    end_state = _rng_state()
    _bn_restore(bn_saved)

    # 2. loss and its gradient w.r.t. the embeddings
    emb = torch.cat(parts).detach().requires_grad_(True)
    del parts
    with torch.enable_grad():
        loss = loss_fn(emb.view(*lead, emb.shape[-1]), labels)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise InputError("loss_fn", f"must return a scalar tensor, got {type(loss).__name__}")
        (emb_grad,) = torch.autograd.grad(loss, emb)

    # 3. replay with graph from the same RNG states, backpropagate the cached gradients
    no_sync = getattr(encoder, "no_sync", None)
    offset = 0
    for index, (chunk, state) in enumerate(zip(chunks, states)):
        last = index == len(chunks) - 1
        context = no_sync() if (no_sync is not None and not last) else contextlib.nullcontext()
        _set_rng_state(state)
        with context, torch.enable_grad():
            out = _embed(encoder, chunk, select)
            out.backward(emb_grad[offset : offset + out.shape[0]].to(out.dtype))
        offset += out.shape[0]
    _set_rng_state(end_state)

    loss = loss.detach()
    if return_embeddings:
        return loss, emb.detach().view(*lead, emb.shape[-1])
    return loss
