"""Where a batch command runs under ``torchrun``: this process's rank, barriers, gathering, and the device.

One process (no ``WORLD_SIZE``): rank 0 of 1, nothing started. Used by ``coreecho predict``/``embed``
(:mod:`coreecho.cli.predict`).
"""

from __future__ import annotations

import argparse
from typing import Any

from coreecho.cli._common import UsageError

__all__ = ["World", "start_world"]


class World:
    """This process's place under torchrun (one process: rank 0 of 1, nothing started)."""

    def __init__(self, env: Any = None):
        self.env = env
        self.rank = env.rank if env is not None else 0
        self.size = env.world_size if env is not None else 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            from coreecho.train.distributed import barrier

            barrier()

    def gather(self, obj: Any) -> list[Any]:
        if self.size == 1:
            return [obj]
        from coreecho.train.distributed import all_gather_objects

        return all_gather_objects(obj)

    def agree(self, error: BaseException | None) -> None:
        """Every rank raises if any rank failed to set up (no rank waits forever at a later barrier)."""
        if self.size == 1:
            if error is not None:
                raise error
            return
        errors = self.gather(None if error is None else (type(error).__name__, str(error)))
        if error is not None:
            raise error
        for rank, e in enumerate(errors):
            if e is not None:
                raise UsageError(f"rank {rank} could not start ({e[0]}: {e[1]})")

    def close(self) -> None:
        if self.env is not None:
            from coreecho.train.distributed import cleanup_distributed

            cleanup_distributed(self.env)


def start_world(args: argparse.Namespace) -> tuple[World, Any]:
    """The world and the device (``cuda:LOCAL_RANK`` under torchrun with CUDA)."""
    from coreecho.precision import resolve_device

    device = None if args.device in (None, "auto") else args.device
    resolved = resolve_device(device)  # DeviceError now, before any process group or model
    from coreecho.train.distributed import distributed_env, init_distributed

    if distributed_env()[0] <= 1:  # garbage WORLD_SIZE/RANK: a typed DistributedSetupError, not a ValueError
        return World(), resolved

    env = init_distributed(None if device is None else str(resolved))
    return World(env), env.device
