"""Device, precision and thread policy shared by inference, evaluation, training and the CLI.

* :func:`resolve_device`: ``None``/``"auto"`` → CUDA when present, else CPU; asking for a device that is absent
  raises :class:`~coreecho.errors.DeviceError` (never a late, cryptic CUDA error).
* :func:`resolve_precision`: ``"fp32" | "bf16" | "fp16" | "auto"`` → the mode that will run on that device.
  ``"auto"`` is the fastest mode whose EF deviation from fp32 is documented as negligible
  (``docs/benchmarks.md``, "Precision"): bf16 on CUDA GPUs with native bf16 (else fp16), bf16 on CPUs with
  AVX512-BF16 or AMX, fp32 on other CPUs.
* :func:`autocast_context`: the matching :func:`torch.autocast` context (a no-op for fp32).
* The forward passes themselves run in :mod:`coreecho.engine` (``coreecho.engine.mixed_forward``: the encoder under
  :func:`autocast_context`, the head in its own dtype); ``coreecho.precision.mixed_forward`` is a deprecated alias.
* :func:`set_threads`, :func:`to_device` (pinned memory, non-blocking copy), :func:`maybe_compile`.

Example:
    >>> import torch
    >>> from coreecho.precision import autocast_context, resolve_device, resolve_precision
    >>> dev = resolve_device("cpu")
    >>> resolve_precision("fp32", dev)
    'fp32'
    >>> with torch.inference_mode(), autocast_context("fp32", dev):
    ...     y = torch.ones(2) * 2
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Callable, ContextManager

import torch

from coreecho._deprecation import deprecated_aliases
from coreecho.errors import DeviceError, InputError

__all__ = ["PRECISIONS", "resolve_device", "resolve_precision", "autocast_context", "autocast_for",
           "cpu_supports_bf16", "cpu_supports_fp16", "set_threads", "to_device", "maybe_compile", "AUTO_CPU"]

#: Accepted ``precision=`` values.
PRECISIONS = ("fp32", "bf16", "fp16", "auto")

#: What ``"auto"`` means for inference on a CPU with native bf16 (AVX512-BF16/AMX). Measured on UniFormer-S
#: (docs/benchmarks.md, "Precision"): bf16 autocast 3.0–3.1× faster than fp32 on one thread, EFs within 0.31 points
#: per video (0.36 per clip) on the harshest weights tried, with the head in fp32; fp16 is more exact but only 1.2× faster,
#: so ``auto`` never picks it on a CPU. Set to ``"fp32"`` to make ``auto`` mean fp32 on every CPU.
AUTO_CPU = "bf16"

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """CPU feature flags from ``/proc/cpuinfo`` (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def _torch_cpu_check(name: str) -> bool:
    fn = getattr(torch.cpu, name, None)
    try:
        return bool(fn()) if fn is not None else False
    except Exception:  # noqa: BLE001 - a missing or failing probe means "unknown": fall back to the flags
        return False


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16, Arm BF16).

    Without it CPU bf16 autocast is emulated and slower than fp32. ``COREECHO_CPU_BF16=0/1`` overrides the probe.
    """
    env = os.environ.get("COREECHO_CPU_BF16")
    if env in ("0", "1"):
        return env == "1"
    if _torch_cpu_check("_is_avx512_bf16_supported") or _torch_cpu_check("_is_amx_tile_supported"):
        return True
    flags = _cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def cpu_supports_fp16() -> bool:
    """Whether this CPU computes fp16 natively (AVX512-FP16 or AMX-FP16); ``COREECHO_CPU_FP16=0/1`` overrides."""
    env = os.environ.get("COREECHO_CPU_FP16")
    if env in ("0", "1"):
        return env == "1"
    if _torch_cpu_check("_is_amx_fp16_supported"):
        return True
    return bool(_cpu_flags() & {"avx512_fp16", "amx_fp16"})


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on; ``None`` or ``"auto"``: CUDA when available, else CPU.

    Raises:
        InputError: ``device`` is not a device name.
        DeviceError: CUDA (or a CUDA index, or MPS) is asked for and this machine or this torch build lacks it.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from coreecho.validate import check_device  # noqa: PLC0415 - "meta" and other data-less devices are refused

    check_device(device)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError("device", f"expected 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got {device!r}") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else \
                f"torch (CUDA {torch.version.cuda}) finds no usable GPU or driver"
            raise DeviceError(f"device {str(dev)!r} was asked for but CUDA is not available: {build}. "
                              "Use device='cpu' (--device cpu), or check `nvidia-smi` and "
                              "CUDA_VISIBLE_DEVICES, or install a CUDA build of torch.")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"device {str(dev)!r} was asked for but this machine has {count} CUDA device(s) "
                              f"(cuda:0 to cuda:{count - 1}); pick one of those or set CUDA_VISIBLE_DEVICES.")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError("device 'mps' was asked for but Apple's Metal backend is not available here; "
                              "use device='cpu'.")
    return dev


def resolve_precision(precision: str, device: str | torch.device | None = None, *, training: bool = False) -> str:
    """The precision that will run: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Args:
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``.
        device: where the model runs (see :func:`resolve_device`).
        training: ``"auto"`` for training: fp32 on every CPU (training recipes were validated in fp32 there),
            bf16/fp16 on CUDA as for inference.

    ``"auto"``: on CUDA bf16 where the GPU has native bf16 (Ampere and later), else fp16; on a CPU bf16 where it
    has AVX512-BF16/AMX (:data:`AUTO_CPU`, measured in docs/benchmarks.md), else fp32; fp32 on other devices.

    Raises:
        InputError: an unknown precision, or a half precision this CPU does not compute natively (emulated bf16/fp16
            is several times slower than fp32: the message says to use ``fp32`` or ``auto``).
        DeviceError: ``device`` is a CUDA device this machine lacks.

    Example:
        >>> resolve_precision("auto", "cpu") in ("fp32", "bf16")
        True
    """
    if precision not in PRECISIONS:
        raise InputError("precision", f"expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    dev = torch.device(device) if device is not None else resolve_device(None)
    if dev.type == "cuda":
        resolve_device(dev)  # DeviceError when CUDA is absent, before asking the GPU what it supports
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
        if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
            raise InputError("precision", "bf16 was asked for but this GPU has no native bf16 (it needs "
                                          "compute capability 8.0+); use 'fp16' or 'auto'")
        return precision
    if dev.type != "cpu":
        return "fp32" if precision == "auto" else precision
    if precision == "auto":
        if training:
            return "fp32"
        return AUTO_CPU if AUTO_CPU == "fp32" or cpu_supports_bf16() else "fp32"
    if precision == "bf16" and not cpu_supports_bf16():
        raise InputError("precision", "bf16 was asked for but this CPU has no native bf16 (AVX512-BF16 or AMX); "
                                      "emulated bf16 is slower than fp32. Use 'fp32' or 'auto'")
    if precision == "fp16" and not cpu_supports_fp16():
        raise InputError("precision", "fp16 was asked for but this CPU has no native fp16 (AVX512-FP16 or "
                                      "AMX-FP16); use 'fp32' or 'auto'")
    return precision


def autocast_context(precision: str, device: str | torch.device | None = None, *,
                     training: bool = False) -> ContextManager[Any]:
    """A context manager running the block in ``precision`` on ``device`` (autocast; no-op for fp32).

    Weights stay fp32; matmuls and convolutions run in bf16/fp16, reductions and norms in fp32 (torch's autocast
    lists). Outputs of autocast regions may be bf16/fp16: cast them with ``.float()`` before numpy.

    Example:
        >>> with autocast_context("fp32", "cpu"):
        ...     pass
    """
    dev = torch.device(device) if device is not None else resolve_device(None)
    used = resolve_precision(precision, dev, training=training)
    if used == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=_DTYPES[used])


def autocast_for(device: torch.device, precision: str = "auto") -> tuple[Callable[[], Any], str]:
    """A context-manager factory for training and evaluation on ``device``, and the precision actually used.

    ``"auto"`` follows the training policy: bf16 on CUDA when supported, else fp16 (with loss scaling in the
    trainers); fp32 on a CPU (see :func:`resolve_precision` with ``training=True``).

    Example:
        >>> ctx, used = autocast_for(torch.device("cpu"))
        >>> used
        'fp32'
    """
    dev = torch.device(device)
    used = resolve_precision(precision, dev, training=True)
    if used == "fp32":
        return contextlib.nullcontext, "fp32"
    return (lambda: torch.autocast(device_type=dev.type, dtype=_DTYPES[used])), used


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op CPU threads (``None``: leave as is); returns the number in effect before.

    On a machine whose cores are busy, fewer threads are faster: a 2-core machine with one busy core ran
    UniFormer-S 5× slower with 2 threads than with 1 (OpenMP threads wait for each other).

    Raises:
        InputError: ``threads`` is not a positive integer.

    Example:
        >>> before = set_threads(1); _ = set_threads(before)
    """
    before = torch.get_num_threads()
    if threads is None:
        return before
    from coreecho.validate import check_threads  # noqa: PLC0415 - 1..1024: torch crashes on absurd counts

    threads = check_threads(threads)
    torch.set_num_threads(threads)
    return before


def to_device(x: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """Move a CPU tensor to ``device``: to CUDA through pinned memory with a non-blocking copy.

    The copy overlaps with work already queued on the GPU; kernels queued after it on the same stream see the
    data (stream order). Tensors already on ``device`` come back unchanged.

    Example:
        >>> to_device(torch.zeros(2), "cpu").device
        device(type='cpu')
    """
    dev = torch.device(device)
    if x.device == dev or (dev.type == x.device.type and dev.index is None):
        return x
    if dev.type == "cuda" and x.device.type == "cpu":
        if not x.is_pinned():
            x = x.pin_memory()
        return x.to(dev, non_blocking=True)
    return x.to(dev)


def maybe_compile(model: torch.nn.Module, compile: bool = True, **kwargs: Any) -> torch.nn.Module:  # noqa: A002
    """``torch.compile(model, **kwargs)`` when ``compile`` is true, else ``model`` unchanged.

    The compiled module shares the parameters of ``model``. Compilation happens at the first call (tens of
    seconds for UniFormer-S; a C compiler is needed on CPU) and again for each new input shape unless
    ``dynamic=True``; it pays off for long runs of same-shaped batches (GPU serving, training).

    Example:
        >>> m = torch.nn.Linear(2, 2)
        >>> maybe_compile(m, compile=False) is m
        True
    """
    if not compile:
        return model
    return torch.compile(model, **kwargs)


# moved to the engine, the one place that runs models on data (0.3); the old name works for one release
__getattr__ = deprecated_aliases(__name__, {"mixed_forward": "coreecho.engine"})
