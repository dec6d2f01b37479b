"""The engine's policies: clips per forward pass (by activation size on a CPU, by free memory on a GPU) and loader
worker processes, from a model's encoder width and the items' preprocessing.

Example:
    >>> import torch
    >>> from coreecho.models.config import PreprocessConfig
    >>> clips_per_pass(64, PreprocessConfig(), torch.device("cpu"))
    1
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["batch_policy", "clips_per_pass", "forward_bytes", "ACTIVATION_COPIES", "default_workers", "is_compute_bound", "CPU_ACTIVATION_BYTES",
           "GPU_MEMORY_FRACTION", "MAX_BATCH"]

#: Bytes of first-stage activations per forward pass on a CPU: larger batches fall out of the cache and get slower
#: per clip. UniFormer-S at 36×112×112 (3.6 MB of float32 per clip) runs 1 clip per pass in fp32 and 2 in bf16, the
#: fastest on 2 cores (fp32: 0.32 s/clip at 1, 0.33 at 2, 0.34 at 4; bf16: 0.17 at 1, 0.12–0.14 at 2–4).
CPU_ACTIVATION_BYTES = 4 * 2**20
#: Share of the free GPU memory one forward pass may use.
GPU_MEMORY_FRACTION = 0.5
#: Largest number of clips per forward pass.
MAX_BATCH = 256
#: Live float32 tensors of the first stage's size during one forward pass (measured on a CPU in inference mode:
#: UniFormer-S peaks 64 MB above its input for one clip, 18 first-stage maps of 3.6 MB; 24 leaves a margin).
ACTIVATION_COPIES = 24


def default_workers(n_items: int, in_memory: bool = False, *, device: torch.device | None = None,
                    compute_bound: bool = False) -> int:
    """Loader worker processes by default.

    None for one item or in-memory arrays. Otherwise one per core, up to 4, except for a compute-bound model on a
    CPU (:func:`is_compute_bound`, e.g. UniFormer-S): there the cores left to workers are those torch's threads do
    not use, because decoding workers would slow the network more than they save (measured on 2 cores: 9 videos,
    27 clips, 7.2 s with no worker, 8.3 s with 1 or 2).

    Example:
        >>> default_workers(1), default_workers(10, in_memory=True)
        (0, 0)
    """
    if n_items < 2 or in_memory:
        return 0
    cores = os.cpu_count() or 1
    if compute_bound and (device is None or device.type == "cpu"):
        return max(0, min(4, cores - torch.get_num_threads()))
    return max(0, min(4, cores))


def batch_policy(model: torch.nn.Module, device: torch.device | None = None, precision: str = "fp32") -> int:
    """Clips per forward pass for a model (see :func:`clips_per_pass`).

    Example:
        >>> from coreecho import CoReEcho
        >>> batch_policy(CoReEcho(), torch.device("cpu")), batch_policy(CoReEcho(), torch.device("cpu"), "bf16")
        (1, 2)
    """
    device = device if device is not None else next(model.parameters()).device
    return clips_per_pass(model.encoder.embed_dim[0], model.config.preprocessing, device, precision)


def _first_stage_elements(width: int, preprocess: Any) -> int:
    """Activation elements of one clip after the first patch embedding (the largest map of a UniFormer)."""
    return width * max(1, preprocess.frames // 2) * (preprocess.size // 4) ** 2


def is_compute_bound(width: int, preprocess: Any) -> bool:
    """Whether one clip's float32 first stage fills :data:`CPU_ACTIVATION_BYTES` (UniFormer-S: yes; phantom-tiny: no).

    Such a model keeps every core busy on a CPU, so decoding workers only compete with it (:func:`default_workers`).

    Example:
        >>> from coreecho.models.config import PreprocessConfig
        >>> is_compute_bound(64, PreprocessConfig()), is_compute_bound(8, PreprocessConfig(size=64))
        (True, False)
    """
    return 2 * 4 * _first_stage_elements(width, preprocess) > CPU_ACTIVATION_BYTES


def forward_bytes(width: int, preprocess: Any, clips: int) -> int:
    """Host bytes one forward pass of ``clips`` clips holds on a CPU: the float32 input and
    :data:`ACTIVATION_COPIES` first-stage activation maps per clip (the engine's share of the memory budget,
    :mod:`coreecho.video.budget`).

    Example:
        >>> from coreecho.models.config import PreprocessConfig
        >>> forward_bytes(64, PreprocessConfig(), 1) // 2**20
        87
    """
    per_clip = 4 * (ACTIVATION_COPIES * _first_stage_elements(width, preprocess)
                    + 3 * preprocess.frames * preprocess.size ** 2)
    return int(clips) * per_clip


def clips_per_pass(width: int, preprocess: Any, device: torch.device, precision: str = "fp32") -> int:
    """Clips per forward pass, the one policy of every inference path.

    On a CPU: as many clips as fit :data:`CPU_ACTIVATION_BYTES` of first-stage activations, 4 bytes an element in
    fp32 and 2 under bf16/fp16 autocast (the convolutions' and matrix products' outputs), so bf16 runs twice the
    clips in the same cache. The 64-px micro model of ``phantom-tiny`` gets faster up to large batches. On a GPU:
    as many as fit :data:`GPU_MEMORY_FRACTION` of the free memory, estimated from the first stage's float32
    activations (the largest), at most :data:`MAX_BATCH`. ``precision`` is a resolved one (not ``"auto"``).

    Example:
        >>> from coreecho.models.config import PreprocessConfig
        >>> cpu = torch.device("cpu")
        >>> clips_per_pass(64, PreprocessConfig(), cpu), clips_per_pass(64, PreprocessConfig(), cpu, "bf16")
        (1, 2)
    """
    first = _first_stage_elements(width, preprocess)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        per_clip = first * 4 * ACTIVATION_COPIES  # float32 activations of the first stage
        return int(max(1, min(MAX_BATCH, free * GPU_MEMORY_FRACTION // per_clip)))
    per_clip = first * (4 if precision == "fp32" else 2)
    return int(max(1, min(MAX_BATCH, CPU_ACTIVATION_BYTES // per_clip)))
