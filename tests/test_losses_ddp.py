"""CoReLoss(gather_distributed=True) under DDP (2 processes, gloo, CPU) equals the loss on the whole batch."""

from __future__ import annotations

import gc
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from coreecho.losses import CoReLoss

WORLD = 2
IN_DIM, EMB_DIM, VIEWS, TEMPERATURE = 6, 8, 2, 2.0
# rank-asymmetric data: different batch sizes and different input / label distributions per rank
BATCH = (5, 3)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(IN_DIM, 16), nn.GELU(), nn.Linear(16, EMB_DIM)).double()


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1234)
    x0 = torch.randn(BATCH[0], VIEWS, IN_DIM, generator=g, dtype=torch.float64)
    y0 = torch.rand(BATCH[0], generator=g, dtype=torch.float64) * 30 + 20
    x1 = torch.randn(BATCH[1], VIEWS, IN_DIM, generator=g, dtype=torch.float64) * 3 + 2
    y1 = torch.round(torch.rand(BATCH[1], 1, generator=g, dtype=torch.float64) * 4 + 45)  # ties, [B, 1]
    y1[0] = 30.0  # a label that also falls inside rank 0's range
    return [(x0, y0), (x1, y1)]


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        model = nn.parallel.DistributedDataParallel(_model())
        x, y = _data()[rank]
        results = {}
        for chunk in (None, 3):
            model.zero_grad(set_to_none=True)
            loss_fn = CoReLoss(temperature=TEMPERATURE, gather_distributed=True, chunk_size=chunk)
            loss = loss_fn(model(x), y)
            loss.backward()
            results[chunk] = {
                "loss": loss.detach(),
                "global": loss_fn.last_global_loss,
                "grads": [p.grad.detach().clone() for p in model.parameters()],
            }
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        del model  # a DDP reducer alive when the group goes can abort the process at exit (torch 2.14, gloo)
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_ddp_gradients_equal_single_process_on_global_batch(tmp_path: Path) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    # single process on the concatenated batch
    model = _model()
    (x0, y0), (x1, y1) = _data()
    x = torch.cat([x0, x1])
    y = torch.cat([y0, y1.view(-1)])
    ref_loss = CoReLoss(temperature=TEMPERATURE)(model(x), y)
    ref_loss.backward()
    ref_grads = [p.grad for p in model.parameters()]

    for chunk in (None, 3):
        res = [r[chunk] for r in per_rank]
        # DDP averages the gradients: identical on both ranks and equal to the global-batch gradient
        # (the last bias gets an exactly-zero gradient by translation invariance: rounding noise only, hence atol)
        for rank_res in res:
            for g, ref in zip(rank_res["grads"], ref_grads):
                assert (g - ref).abs().max().item() <= 1e-6 * ref.abs().max().item() + 1e-14
        # the returned values average to the global loss; last_global_loss is that value on every rank
        mean_loss = sum(r["loss"] for r in res) / WORLD
        assert mean_loss.item() == pytest.approx(ref_loss.item(), rel=1e-12)
        for rank_res in res:
            assert rank_res["global"].item() == pytest.approx(ref_loss.item(), rel=1e-12)
        # and each rank's own value is not the global loss (it is its anchors' share, times the world size)
        assert res[0]["loss"].item() != pytest.approx(res[1]["loss"].item(), rel=1e-6)
