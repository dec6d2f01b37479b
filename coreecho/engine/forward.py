"""The one precision path of every forward pass over data: :func:`encode` (the encoder under autocast), then
:func:`apply_head` (the head in its own dtype); :func:`mixed_forward` is both at once.

:func:`coreecho.engine.stream` runs :func:`encode` pass by pass and :func:`apply_head` once over the passes of a
stretch of items; training steps and Grad-CAM run their own forward (they need gradients), nothing else calls the
encoder on data.

Example:
    >>> from coreecho.engine import stream
    >>> sorted(__all__)
    ['apply_head', 'encode', 'mixed_forward']
"""

from __future__ import annotations

import torch

from coreecho.precision import autocast_context

__all__ = ["encode", "apply_head", "mixed_forward"]


def encode(model: torch.nn.Module, x: torch.Tensor, precision: str = "fp32",
           device: str | torch.device | None = None) -> torch.Tensor:
    """Float32 embeddings of clips: ``x`` in the encoder's dtype, the encoder under ``precision`` autocast.

    The first half of the one precision path (see the module docstring).

    Args:
        model: anything with ``.encoder``.
        x: clips ``(B, 3, T, S, S)`` on ``device``.
        precision: see :func:`resolve_precision`.
        device: defaults to ``x.device``.

    Example:
        >>> from coreecho import CoReEcho
        >>> from coreecho.models.config import ModelConfig
        >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
        ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8})).eval()
        >>> with torch.inference_mode():
        ...     encode(model, torch.zeros(2, 3, 8, 64, 64)).dtype
        torch.float32
    """
    dev = x.device if device is None else torch.device(device)
    dtype = next(model.encoder.parameters()).dtype
    with autocast_context(precision, dev):
        emb = model.encoder(x.to(dtype))
    return emb.float()


def apply_head(model: torch.nn.Module, emb: torch.Tensor) -> torch.Tensor:
    """The head's float32 outputs for embeddings, run in the head's own dtype and never under autocast.

    The head is a few small matrix products, so full precision costs nothing there, while a bf16 head output is
    rounded to bf16's spacing (0.25 between 32 and 64 EF points). Measured on UniFormer-S with random weights: max
    per-clip |ΔEF| 0.22 with the whole model under bf16 autocast, 0.002 with the head apart (docs/benchmarks.md).

    Example:
        >>> from coreecho.models.head import RegressionHead
        >>> m = torch.nn.Module(); m.head = RegressionHead(4).eval()
        >>> apply_head(m, torch.zeros(3, 4)).shape
        torch.Size([3])
    """
    dtype = next(model.head.parameters()).dtype
    return model.head(emb.to(dtype)).float()


def mixed_forward(model: torch.nn.Module, x: torch.Tensor, precision: str = "fp32",
                  device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(embedding, head output)`` of a CoReEcho model, both float32: :func:`encode`, then :func:`apply_head`.

    The one precision path (:func:`coreecho.engine.stream` runs the same two functions). Call it under
    ``torch.inference_mode()`` for inference.

    Args:
        model: anything with ``.encoder`` and ``.head`` (a :class:`~coreecho.CoReEcho`).
        x: clips ``(B, 3, T, S, S)`` on ``device``.
        precision: see :func:`resolve_precision`.
        device: defaults to ``x.device``.

    Example:
        >>> import torch
        >>> from coreecho import CoReEcho
        >>> from coreecho.models.config import ModelConfig
        >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
        ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8})).eval()
        >>> with torch.inference_mode():
        ...     emb, ef = mixed_forward(model, torch.zeros(2, 3, 8, 64, 64), "fp32")
        >>> emb.shape, ef.shape
        (torch.Size([2, 64]), torch.Size([2]))
    """
    emb = encode(model, x, precision, device)
    return emb, apply_head(model, emb)
