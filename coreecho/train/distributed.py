"""Multi-process training helpers: torchrun initialisation, DDP wrapping, a resumable sampler, rank-0 output.

Under ``torchrun`` the environment holds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_distributed`
starts the process group (NCCL on CUDA, gloo on CPU) and picks the device. Without those variables everything
runs in one process and the helpers are no-ops.

:class:`ResumableSampler` is a :class:`~torch.utils.data.distributed.DistributedSampler` whose permutation is a pure
function of ``(seed, epoch)`` and that can skip the samples already consumed in an epoch, so a run resumed
mid-epoch sees exactly the batches it would have seen.

Example:
    >>> sampler = ResumableSampler(10, num_replicas=1, rank=0, seed=0, shuffle=True)
    >>> sampler.set_epoch(1)
    >>> first = list(sampler)
    >>> sampler.skip = 4
    >>> list(sampler) == first[4:]
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler

__all__ = ["DistEnv", "init_distributed", "cleanup_distributed", "wrap_ddp", "ResumableSampler", "is_main",
           "barrier", "all_gather_objects", "print0", "unwrap"]


@dataclass
class DistEnv:
    """Where this process stands.

    Attributes:
        rank: global rank (0 in a single process).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        device: the device this process trains on.
        initialised_here: whether :func:`init_distributed` started the process group (and should destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False

    @property
    def distributed(self) -> bool:
        """True with more than one process."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """True on rank 0 (the process that writes files and logs)."""
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistEnv:
    """Start (or join) the process group described by torchrun's environment, and choose the device.

    Args:
        device: ``None`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else CPU; an explicit device is used
            as given (``"cuda"`` becomes ``cuda:LOCAL_RANK`` under torchrun).

    Example:
        >>> env = init_distributed("cpu")
        >>> env.world_size, env.device.type
        (1, 'cpu')
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device(f"cuda:{local}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    started = False
    if world > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        started = True
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev, initialised_here=started)


def cleanup_distributed(env: DistEnv) -> None:
    """Destroy the process group if :func:`init_distributed` created it (after a barrier, so that no rank tears
    the transport down while a peer still finishes a collective)."""
    if env.initialised_here and dist.is_initialized():
        import gc  # noqa: PLC0415

        gc.collect()  # free DDP reducers first: one alive at teardown can abort the process (torch 2.14, gloo)
        dist.barrier()
        dist.destroy_process_group()


def wrap_ddp(module: nn.Module, env: DistEnv, *, sync_bn: bool = False) -> nn.Module:
    """``DistributedDataParallel(module)`` with more than one process (optionally with SyncBatchNorm), else the
    module itself."""
    if not env.distributed:
        return module
    if sync_bn:
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


class ResumableSampler(DistributedSampler):
    """A DistributedSampler that can skip the first ``skip`` indices of its (per-rank) epoch order.

    The order of an epoch depends only on ``(seed, epoch)`` (and rank/world size), as in
    :class:`~torch.utils.data.distributed.DistributedSampler`. ``skip`` is cleared by :meth:`set_epoch`.

    Args:
        dataset_or_len: a dataset or its length.
        num_replicas, rank: default to the process group's (1 and 0 without one).
        shuffle: shuffle each epoch.
        seed: seed of the permutations.
        drop_last: drop the tail so that every rank gets the same number of samples.
    """

    def __init__(self, dataset_or_len: Any, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        data = range(dataset_or_len) if isinstance(dataset_or_len, int) else dataset_or_len
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        super().__init__(data, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:  # noqa: D102
        super().set_epoch(epoch)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


def is_main() -> bool:
    """True on rank 0 or without a process group."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (``[obj]`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def print0(*args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only."""
    if is_main():
        print(*args, **kwargs, flush=True)
