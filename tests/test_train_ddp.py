"""One stage-1 step under 2-process DDP (gloo, CPU) equals the single-process step on the concatenated batch.

BatchNorm is what makes this subtle: in train mode each rank normalises with the statistics of its own half of the
batch, so a DDP step is *not* the step of one process on the whole batch (whose statistics cover both halves),
whatever the loss does. SyncBatchNorm would fix that, but PyTorch implements it for GPUs only. The test therefore
runs the encoder and the head with BatchNorm in eval mode (running statistics: every sample is normalised by the
same numbers in both runs) and without dropout (different random masks per rank), i.e. ``model.eval()`` while
still taking gradients. What is then tested is the rest of the distributed step: the autograd-aware gather of
:class:`~coreecho.losses.CoReLoss` (``gather_distributed=True``, each rank's anchors against the global batch),
DDP's gradient averaging of the encoder and of the head (L1 on detached embeddings, equal per-rank batches), and
the AdamW updates, all in float64, to 1e-6 relative.
"""

from __future__ import annotations

import gc
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2
ENCODER = {"depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8, "drop_rate": 0.0}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model():
    from coreecho import CoReEcho
    from coreecho.models.config import ModelConfig

    torch.manual_seed(0)
    model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args=dict(ENCODER))).double()
    with torch.no_grad():  # non-trivial running statistics, so that eval-mode BatchNorm does something
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn_like(buf) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand_like(buf) + 0.5)
    return model.eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    clips = torch.randn(6, 2, 3, 4, 32, 32, generator=g, dtype=torch.float64)  # 6 videos x 2 views
    ef = torch.tensor([20.0, 35.5, 35.5, 50.0, 61.0, 72.0], dtype=torch.float64)  # a tie across ranks
    return clips, ef


def _step(model, encoder, head, clips, ef, loss_fn) -> dict:
    from coreecho.train.stage1 import stage1_step

    opt_e = torch.optim.AdamW(model.encoder.parameters(), lr=1e-3, weight_decay=1e-4)
    opt_h = torch.optim.AdamW(model.head.parameters(), lr=1e-3, weight_decay=1e-4)
    out = stage1_step(encoder, head, clips, ef, loss_fn=loss_fn, opt_encoder=opt_e, opt_head=opt_h)
    return {"scalars": out, "grads": {k: p.grad.detach().clone() for k, p in model.named_parameters()},
            "params": {k: p.detach().clone() for k, p in model.named_parameters()}}


def _worker(rank: int, port: int, out_dir: str) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    from coreecho.losses import CoReLoss

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        model = _model()
        encoder, head = DDP(model.encoder), DDP(model.head)
        clips, ef = _batch()
        half = clips.shape[0] // WORLD
        part = slice(rank * half, (rank + 1) * half)
        result = _step(model, encoder, head, clips[part], ef[part], CoReLoss(temperature=1.0, gather_distributed=True))
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
        del encoder, head  # a DDP reducer alive when the group goes can abort the process at exit (torch 2.14)
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_ddp_stage1_step_equals_single_process_step(tmp_path: Path) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    from coreecho.losses import CoReLoss

    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]

    model = _model()
    clips, ef = _batch()
    ref = _step(model, model.encoder, model.head, clips, ef, CoReLoss(temperature=1.0))
    before = {k: p.detach() for k, p in _model().named_parameters()}
    updates = {name: p - before[name] for name, p in ref["params"].items()}
    # Some gradients are analytically zero (the loss sees only distances between embeddings, so a bias that shifts
    # every embedding equally gets none) and hold rounding noise (~1e-17); their relative error is meaningless, so
    # gradients are compared relative to max(the tensor's scale, 1e-9 x the largest gradient of the model). Adam
    # divides such noise by eps (1e-8), so updates are compared relative to the largest update of the model (~lr).
    g_floor = 1e-9 * max(float(g.abs().max()) for g in ref["grads"].values())
    u_floor = max(float(u.abs().max()) for u in updates.values())
    for r in ranks:
        assert r["scalars"]["loss"] == pytest.approx(ref["scalars"]["loss"], rel=1e-9)  # global loss on every rank
        for name, g in ref["grads"].items():
            scale = max(float(g.abs().max()), g_floor)
            assert float((r["grads"][name] - g).abs().max()) <= 1e-6 * scale, name
        for name, p in ref["params"].items():
            scale = max(float(updates[name].abs().max()), u_floor)
            assert float((r["params"][name] - p).abs().max()) <= 1e-6 * scale, name
    # the head's L1: mean of the two ranks' L1 equals the global L1 (equal per-rank batches)
    assert sum(r["scalars"]["l1"] for r in ranks) / WORLD == pytest.approx(ref["scalars"]["l1"], rel=1e-9)
    # both ranks hold identical weights after the step
    for name in ref["params"]:
        assert torch.equal(ranks[0]["params"][name], ranks[1]["params"][name]), name


def _train_worker(rank: int, port: int, data: str, out: str, extra: dict) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from coreecho.train import TrainConfig, TrainingInterrupted, train_stage1

    cfg = TrainConfig(data=data, out=out, preset="micro", init="none", frames=4, stride=4, size=32, batch_size=2,
                      epochs=2, num_workers=0, progress=False, tensorboard=False, device="cpu", seed=1,
                      encoder_args={"drop_rate": 0.1}, save_every_steps=1, **extra)
    try:
        train_stage1(cfg)
    except TrainingInterrupted:
        pass


@pytest.mark.ddp
@pytest.mark.slow
def test_ddp_training_resumes_exactly(tmp_path: Path) -> None:
    """Two processes as torchrun starts them (env://): stage 1 killed mid-epoch and resumed equals a full run."""
    import json

    from coreecho.data.phantom import write_echonet_layout

    data = tmp_path / "data"
    write_echonet_layout(data, 12, seed=2, n_frames=(24, 32), splits=(8, 2, 2), progress=False)
    runs = [("full", {}), ("killed", {"stop_after_steps": 3}), ("killed", {"resume": True})]
    for name, extra in runs:
        mp.spawn(_train_worker, args=(_free_port(), str(data), str(tmp_path / name), extra), nprocs=WORLD, join=True)

    def history(name: str) -> list[dict]:
        rows = json.loads((tmp_path / name / "result.json").read_text())["history"]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert history("killed") == history("full")
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "last_model" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "last_model" / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
