"""A linear layer and its GELU as one oneDNN call, for bf16 inference on a CPU.

Under CPU bf16 autocast, ``gelu(linear(x))`` is a matrix product that writes its bf16 output, a broadcast of the bias
into it, then a GELU that reads it back and writes another buffer: the MLPs' hidden layers of UniFormer-S are its
largest activations (14 MB per clip in the first stage). :func:`linear_gelu` runs oneDNN's inner product with the
bias and the (erf) GELU fused, the way ``torch.compile`` lowers the pair on CPUs. Measured on the 2-core CPU of
docs/benchmarks.md: a UniFormer-S forward 7 % faster at one clip per pass and 10 % at two.

Only bf16 inference takes the fused path: autocast to bf16 enabled on the CPU, no autograd, the oneDNN op present.
fp32 (exact parity with the official network), training, gradients (Grad-CAM), float64, CUDA and code being traced
by ``torch.compile`` (which fuses on its own) keep the plain ``F.gelu(F.linear(...))``. The fused GELU is computed on the float32 accumulator before the single rounding to bf16,
so it differs from the plain path by at most one bf16 rounding step of the hidden activations.

Each call casts the layer's weights to bf16, unless it runs inside :func:`cached_weights` (one inference run of
:func:`coreecho.engine.stream`): there the cast is kept on the layer until the block ends, keyed by the weights'
storage and version counter. Without the cache, the casts cost 5 % of a forward; outside a run, nothing is kept, so
no later change of the weights (even through ``.data``, which bypasses the version counter) can meet a stale cast.

Example:
    >>> import torch
    >>> fc, x = torch.nn.Linear(8, 16), torch.randn(4, 8)
    >>> with torch.inference_mode():
    ...     fp32 = linear_gelu(fc, x)
    ...     with torch.autocast("cpu", dtype=torch.bfloat16):
    ...         bf16 = linear_gelu(fc, x)
    >>> fp32 is None, bf16 is None or bf16.dtype == torch.bfloat16  # None: the caller runs its plain ops
    (True, True)
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch
from torch import nn

__all__ = ["linear_gelu", "fused_available", "cached_weights"]

_CACHE_ATTR = "_coreecho_bf16_weights"
_scope = threading.local()  # depth of cached_weights blocks and the layers they cached, per thread
_disabled = False  # set if the oneDNN op fails once (another torch build): the plain path from then on
_available: bool | None = None


def fused_available() -> bool:
    """Whether this torch build has oneDNN's fused linear op with bf16 support on this CPU (probed once).

    Example:
        >>> fused_available() in (True, False)
        True
    """
    global _available
    if _available is None:
        try:
            _available = (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
                          and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))
        except (AttributeError, RuntimeError):
            _available = False
    return _available and not _disabled


def _cpu_autocast_is_bf16() -> bool:
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    return torch.is_autocast_cpu_enabled() and torch.get_autocast_cpu_dtype() == torch.bfloat16


def _weight_2d(layer: nn.Module) -> torch.Tensor:
    w = layer.weight
    return w.reshape(w.shape[0], w.shape[1]) if w.ndim > 2 else w  # a 1×1×1 Conv3d as a matrix


def _cast(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    b = layer.bias
    return _weight_2d(layer).detach().to(torch.bfloat16).contiguous(), None if b is None else b.detach().to(
        torch.bfloat16)


def _bf16_weights(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not getattr(_scope, "depth", 0):
        return _cast(layer)
    w, b = layer.weight, layer.bias
    key = (w.data_ptr(), w._version, None if b is None else (b.data_ptr(), b._version))
    cached = getattr(layer, _CACHE_ATTR, None)
    if cached is None or cached[0] != key:
        cached = (key, *_cast(layer))
        object.__setattr__(layer, _CACHE_ATTR, cached)  # a plain attribute: not a buffer, not in the state dict
        _scope.layers.append(layer)
    return cached[1], cached[2]


@contextlib.contextmanager
def cached_weights() -> Iterator[None]:
    """Within the block, fused layers keep their bf16 weights between calls in this thread; dropped at its end.

    Example:
        >>> fc = torch.nn.Linear(8, 16)
        >>> with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), cached_weights():
        ...     _ = linear_gelu(fc, torch.randn(4, 8))
        >>> hasattr(fc, _CACHE_ATTR)  # nothing kept after the block
        False
    """
    depth = getattr(_scope, "depth", 0)
    if not depth:
        _scope.layers = []
    _scope.depth = depth + 1
    try:
        yield
    finally:
        _scope.depth = depth
        if not depth:
            for layer in _scope.layers:
                layer.__dict__.pop(_CACHE_ATTR, None)
            _scope.layers = []


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


def _fusable(x: torch.Tensor, layer: nn.Module) -> bool:
    return (x.device.type == "cpu" and not torch.is_grad_enabled() and not layer.training and not _compiling()
            and _cpu_autocast_is_bf16() and x.dtype in (torch.float32, torch.bfloat16) and layer.weight.dtype == torch.float32
            and fused_available())


def linear_gelu(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """``gelu(layer(x))`` in one oneDNN call, or ``None`` where the fused path does not apply (see the module docs).

    ``layer`` is an ``nn.Linear``, or a 1×1×1 ``nn.Conv3d`` applied to channels-last tokens ``(..., C_in)``; ``x``
    must be contiguous. Callers run their plain ops on ``None``.
    """
    global _disabled
    if not (x.is_contiguous() and _fusable(x, layer)):
        return None
    w, b = _bf16_weights(layer)
    try:
        return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), w, b, "gelu", [], "none")
    except RuntimeError:  # an op with another signature in another torch build: never try again
        _disabled = True
        return None
