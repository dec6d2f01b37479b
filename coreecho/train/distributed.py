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

import datetime
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from coreecho.errors import ConfigError

__all__ = ["DistEnv", "DistributedSetupError", "distributed_env", "rendezvous_timeout", "init_distributed",
           "cleanup_distributed", "wrap_ddp", "ResumableSampler", "is_main",
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


class DistributedSetupError(ConfigError):
    """The multi-process environment cannot be used: a ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` that is not a
    number or out of range, a missing ``MASTER_ADDR``/``MASTER_PORT``, or a rendezvous that did not complete
    within :func:`rendezvous_timeout` (another process never joined). The message names the variable or the
    address, and what to do."""


#: Seconds a process waits for the others to join (``COREECHO_DIST_TIMEOUT`` overrides it).
DEFAULT_RENDEZVOUS_TIMEOUT_S = 60.0


def rendezvous_timeout() -> float:
    """Seconds to wait for every process to join: ``COREECHO_DIST_TIMEOUT`` or :data:`DEFAULT_RENDEZVOUS_TIMEOUT_S`.

    Raises:
        DistributedSetupError: ``COREECHO_DIST_TIMEOUT`` is not a positive number.
    """
    text = os.environ.get("COREECHO_DIST_TIMEOUT")
    if text is None or text == "":
        return DEFAULT_RENDEZVOUS_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e7:
        raise DistributedSetupError(f"COREECHO_DIST_TIMEOUT={text!r}: expected a positive number of seconds")
    return value


def _env_int(name: str, default: int, low: int, high: int | None = None) -> int:
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise DistributedSetupError(f"environment variable {name}={text!r}: expected an integer in {span}; it is "
                                    "set by torchrun (unset it to run one process, or launch with torchrun)")
    return value


def distributed_env() -> tuple[int, int, int]:
    """``(world_size, rank, local_rank)`` from torchrun's environment variables, checked.

    Raises:
        DistributedSetupError: a variable is not an integer, or ``RANK``/``LOCAL_RANK`` is not below
            ``WORLD_SIZE``.

    Example:
        >>> import os
        >>> os.environ.pop("WORLD_SIZE", None) and None
        >>> distributed_env()[0] >= 1
        True
    """
    world = _env_int("WORLD_SIZE", 1, 1, 1 << 20)
    rank = _env_int("RANK", 0, 0, world - 1)
    local = _env_int("LOCAL_RANK", 0, 0, world - 1)
    return world, rank, local


def _rendezvous(backend: str, world: int, rank: int) -> None:
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise DistributedSetupError(f"WORLD_SIZE={world} but {' and '.join(missing)} {verb} not set: launch with "
                                    "torchrun (which sets them), or unset WORLD_SIZE to run one process")
    port = _env_int("MASTER_PORT", 0, 1, 65535)
    where = f"{os.environ['MASTER_ADDR']}:{port}"
    timeout = rendezvous_timeout()
    if rank == 0:
        print(f"{_rank_tag(rank, world)}waiting up to {timeout:g} s for {world} processes at {where} "
              "(COREECHO_DIST_TIMEOUT changes it)", file=sys.stderr, flush=True)
    try:
        dist.init_process_group(backend=backend, init_method="env://", world_size=world, rank=rank,
                                timeout=datetime.timedelta(seconds=timeout))
        _restore_collective_timeout(backend)
    except Exception as err:  # noqa: BLE001 - torch raises DistStoreError, RuntimeError, ValueError...
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - tearing down a failed group
                pass
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise DistributedSetupError(f"rank {rank} of {world}: the process group at {where} did not form within "
                                    f"{timeout:g} s ({type(err).__name__}: {first}); start every process (torchrun "
                                    "--nproc-per-node N), check MASTER_ADDR/MASTER_PORT, or raise "
                                    "COREECHO_DIST_TIMEOUT") from None


def _restore_collective_timeout(backend: str) -> None:
    """Give the formed group torch's default collective timeout back: the short rendezvous timeout must not apply
    to the run's collectives (a barrier while rank 0 writes a checkpoint may well wait longer)."""
    from torch.distributed import constants

    default = getattr(constants, "default_pg_nccl_timeout", None) if backend == "nccl" else None
    default = default or constants.default_pg_timeout
    setter = getattr(dist, "set_timeout", None) or getattr(dist.distributed_c10d, "_set_pg_timeout", None)
    if setter is not None:
        setter(default)


def _rank_tag(rank: int, world: int) -> str:
    return f"[rank {rank}] " if world > 1 else ""


def init_distributed(device: str | None = None) -> DistEnv:
    """Start (or join) the process group described by torchrun's environment, and choose the device.

    Args:
        device: ``None`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else CPU; an explicit device is used
            as given (``"cuda"`` becomes ``cuda:LOCAL_RANK`` under torchrun).

    Raises:
        DistributedSetupError: bad ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``/``MASTER_*`` variables, or the other
            processes did not join within :func:`rendezvous_timeout` seconds.
        DeviceError: CUDA is asked for and this machine or torch build has none (or not that index).

    Example:
        >>> env = init_distributed("cpu")
        >>> env.world_size, env.device.type
        (1, 'cpu')
    """
    from coreecho.precision import resolve_device

    world, rank, local = distributed_env()
    if device is None:
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = resolve_device(device)  # DeviceError when CUDA (or that GPU) is absent
        if dev.type == "cuda" and dev.index is None:
            dev = resolve_device(f"cuda:{local}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    started = False
    if world > 1 and dist.is_available() and not dist.is_initialized():
        _rendezvous("nccl" if dev.type == "cuda" else "gloo", world, rank)
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
