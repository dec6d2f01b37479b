"""Keep freed activation memory in the process (glibc): large CPU tensors stop costing page faults on every forward.

A UniFormer-S forward on a CPU allocates and frees activation buffers of up to 14 MB per clip. With glibc's default
settings large buffers are mapped fresh from the kernel (``mmap``) and unmapped when freed, and the top of the heap
is handed back to the kernel as soon as it is free, so every forward pass touches much of its activation memory for
the first time again: one page fault per 4 KiB page, about 21 000 per forward. Measured on the 2-core CPU of
docs/benchmarks.md (``benchmarks/bench_allocator.py``): fp32 0.276 → 0.252 s per clip (1.09×), bf16 0.121 → 0.113
(1.07×).

:func:`keep_freed_memory` raises glibc's two thresholds (``mallopt``): buffers up to 32 MiB come from the heap, and
up to 1 GiB of free heap stays with the process. The process keeps, after a run, about the memory that the run
needed at its peak; nothing else changes. :func:`coreecho.engine.stream` calls it once before the first forward
on a CPU. Set ``COREECHO_KEEP_FREED_MEMORY=0`` to leave the allocator alone. Other C libraries (macOS, Windows,
musl) are left as they are.

Example:
    >>> from coreecho.allocator import keep_freed_memory
    >>> keep_freed_memory() in (True, False)
    True
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

#: Allocations up to this size come from the heap (glibc's largest allowed value on 64-bit systems).
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the top of the heap kept by the process before glibc returns it to the kernel.
TRIM_THRESHOLD = 2**30

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process; whether they are in effect.

    False on other C libraries, when ``COREECHO_KEEP_FREED_MEMORY=0``, or when glibc refuses a value.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("COREECHO_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        _applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        _applied = False
    return _applied
