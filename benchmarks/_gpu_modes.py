"""The runs the GPU suite times: precision modes of UniFormer-S inference, stage-1 training steps, device timing.

Shared by ``gpu_suite.py`` (and its ``--dry`` CPU mode, which runs the same functions with a micro model, where
TF32 flags are no-ops and ``torch.compile`` is replaced by the eager module unless asked for).

* Inference modes (``torch.inference_mode``, on tensors already on the device): fp32 eager with TF32 off (the
  baseline, the reference setting), tf32 (TF32 matmuls and cuDNN convolutions), bf16 autocast, bf16 +
  channels-last-3d (weights and input), bf16 + ``torch.compile``.
* Stage-1 steps (``B`` videos × 2 views, AdamW): coreecho's :func:`coreecho.train.stage1.stage1_step` with
  :class:`~coreecho.losses.CoReLoss` in fp32 eager, bf16, bf16 + ``torch.compile`` of the encoder; baseline: the
  **official-style step** written here in the research code's order of operations — the two views concatenated on
  the batch axis, the network computed as the research code computes it (``_official.official_forward``), the
  embeddings split and stacked to ``[B, 2, D]``, the official Rank-N-Contrast algorithm (``[n, n, D]`` differences
  and a Python loop over the positive ranks), ``zero_grad``/``backward``/``step``, then the head's L1 step on the
  detached embeddings of both views; fp32 with PyTorch's default TF32 flags (TF32 convolutions on, matmuls off),
  as the research code ran.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from coreecho import CoReEcho
from coreecho.losses import CoReLoss
from coreecho.models.config import ModelConfig, PreprocessConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _official import official_forward  # noqa: E402

__all__ = ["MICRO_ENCODER", "sync", "reset_peak", "peak_gib", "tf32", "torch_default_tf32", "build_model",
           "official_style_rnc", "inference_modes", "train_modes", "warm", "time_rounds"]

#: The micro UniFormer of ``--dry`` runs.
MICRO_ENCODER = {"depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8}


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def peak_gib(dev: torch.device) -> float | None:
    """``torch.cuda.max_memory_allocated`` in GiB since the last :func:`reset_peak`; ``None`` on a CPU."""
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None


@contextlib.contextmanager
def tf32(enabled: bool) -> Any:
    """TF32 for matmuls and cuDNN convolutions inside the block (flags without effect on a CPU)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@contextlib.contextmanager
def torch_default_tf32() -> Any:
    """PyTorch's default flags (TF32 convolutions on, TF32 matmuls off), as the research code ran."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def build_model(dev: torch.device, dry: bool) -> CoReEcho:
    """UniFormer-S with seeded random weights (the micro encoder at 8 frames × 32 px with ``dry``), eval mode."""
    torch.manual_seed(0)
    if dry:
        cfg = ModelConfig(architecture="uniformer_custom", encoder_args=dict(MICRO_ENCODER),
                          preprocessing=PreprocessConfig(frames=8, stride=2, size=32))
        return CoReEcho(cfg).to(dev).eval()
    return CoReEcho().to(dev).eval()


def official_style_rnc(features: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The official Rank-N-Contrast algorithm: ``[n, n, D]`` differences, then a loop over the n-1 positive ranks."""
    views = features.shape[1]
    z = torch.cat(torch.unbind(features, dim=1), dim=0)
    y = labels.reshape(-1, 1).repeat(views, 1).to(z.dtype)
    n = z.shape[0]
    logits = -(z[:, None, :] - z[None, :, :]).norm(2, dim=-1) / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    exp_logits = logits.exp()
    off = ~torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits[off].view(n, n - 1)
    exp_logits = exp_logits[off].view(n, n - 1)
    label_dist = (y - y.T).abs()[off].view(n, n - 1)
    total = logits.new_zeros(())
    for k in range(n - 1):
        neg = (label_dist >= label_dist[:, k:k + 1]).to(logits.dtype)
        total = total - (logits[:, k] - (exp_logits * neg).sum(dim=1).log()).sum() / (n * (n - 1))
    return total


def _compiled(module: torch.nn.Module, dev: torch.device, dry_compile: bool) -> tuple[torch.nn.Module, str]:
    """``torch.compile(module)`` on CUDA; on a CPU (``--dry``) the eager module, or dynamo's eager backend when
    ``dry_compile`` (checks the graph capture without a C++ toolchain)."""
    if dev.type == "cuda":
        return torch.compile(module), ""
    if dry_compile:
        return torch.compile(module, backend="eager"), "dry: torch.compile(backend='eager')"
    return module, "dry: torch.compile replaced by the eager module"


def inference_modes(model: CoReEcho, x: torch.Tensor, with_compile: bool = True, dry_compile: bool = False,
                    ) -> dict[str, tuple[Callable[[], Any], str]]:
    """name → (one forward pass of the batch ``x``, note); the first is the baseline."""
    enc = model.encoder.eval()
    dev = x.device

    def run(module: torch.nn.Module, inp: torch.Tensor, dtype: torch.dtype | None, allow_tf32: bool) -> Callable:
        def fn() -> Any:
            with torch.inference_mode(), tf32(allow_tf32):
                if dtype is None:
                    return module(inp)
                with torch.autocast(dev.type, dtype=dtype):
                    return module(inp)
        return fn

    cpu_note = "dry: TF32 flags have no effect on a CPU" if dev.type == "cpu" else ""
    enc_cl = copy.deepcopy(enc).to(memory_format=torch.channels_last_3d)
    modes = {
        "fp32 eager, TF32 off (baseline)": (run(enc, x, None, False), ""),
        "tf32": (run(enc, x, None, True), cpu_note),
        "bf16": (run(enc, x, torch.bfloat16, False), ""),
        "bf16 + channels-last-3d": (run(enc_cl, x.contiguous(memory_format=torch.channels_last_3d), torch.bfloat16,
                                        False), ""),
    }
    if with_compile:
        compiled, note = _compiled(enc, dev, dry_compile)
        modes["bf16 + torch.compile"] = (run(compiled, x, torch.bfloat16, False), note)
    return modes


def official_step(encoder: torch.nn.Module, head: torch.nn.Module, views: tuple[torch.Tensor, torch.Tensor],
                  labels: torch.Tensor, opt_encoder: torch.optim.Optimizer, opt_head: torch.optim.Optimizer) -> Any:
    """One stage-1 step in the research code's order of operations (see the module docstring)."""
    b = labels.shape[0]
    images = torch.cat(list(views), dim=0)
    features = official_forward(encoder, images)
    f1, f2 = torch.split(features, [b, b], dim=0)
    features = torch.cat([f1.unsqueeze(1), f2.unsqueeze(1)], dim=1)
    loss = official_style_rnc(features, labels)
    opt_encoder.zero_grad()
    loss.backward()
    opt_encoder.step()
    features = features.detach()
    preds = head(torch.cat((features[:, 0], features[:, 1]), dim=0))
    loss_reg = F.l1_loss(preds.reshape(-1, 1), labels.reshape(-1, 1).repeat(2, 1))
    opt_head.zero_grad()
    loss_reg.backward()
    opt_head.step()
    return loss.detach()


def train_modes(model: CoReEcho, clips: torch.Tensor, ef: torch.Tensor, with_compile: bool = True,
                dry_compile: bool = False) -> dict[str, tuple[Callable[[], Any], str]]:
    """name → (one stage-1 step on ``clips`` ``[B, 2, 3, T, S, S]``, note); the first is the baseline."""
    from coreecho.train.stage1 import stage1_step

    dev = clips.device

    def fresh() -> tuple[CoReEcho, torch.optim.Optimizer, torch.optim.Optimizer]:
        m = copy.deepcopy(model).train()
        return (m, torch.optim.AdamW(m.encoder.parameters(), lr=1e-4, weight_decay=1e-4),
                torch.optim.AdamW(m.head.parameters(), lr=1e-4, weight_decay=1e-4))

    def official() -> Callable[[], Any]:
        m, opt_e, opt_h = fresh()
        views = (clips[:, 0].contiguous(), clips[:, 1].contiguous())  # as the loader delivers them

        def step() -> Any:
            with torch_default_tf32():
                return official_step(m.encoder, m.head, views, ef, opt_e, opt_h)
        return step

    def ours(dtype: torch.dtype | None, compiled: bool) -> tuple[Callable[[], Any], str]:
        m, opt_e, opt_h = fresh()
        encoder, note = _compiled(m.encoder, dev, dry_compile) if compiled else (m.encoder, "")
        autocast = (lambda: torch.autocast(dev.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
        loss_fn = CoReLoss(temperature=1.0)

        def step() -> Any:
            with tf32(False):
                return stage1_step(encoder, m.head, clips, ef, loss_fn=loss_fn, opt_encoder=opt_e, opt_head=opt_h,
                                   autocast=autocast)
        return step, note

    modes = {"official-style fp32 eager (baseline)": (official(), ""),
             "coreecho fp32 eager, TF32 off": ours(None, False),
             "coreecho bf16": ours(torch.bfloat16, False)}
    if with_compile:
        modes["coreecho bf16 + torch.compile"] = ours(torch.bfloat16, True)
    return modes


def warm(fn: Callable[[], Any], dev: torch.device, calls: int) -> tuple[float, float | None]:
    """Call ``fn`` ``calls`` times (compilation, cuDNN autotuning, allocator growth); (seconds, peak GiB)."""
    reset_peak(dev)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(dev)
    return time.perf_counter() - t0, peak_gib(dev)


def time_rounds(fns: dict[str, Callable[[], Any]], dev: torch.device, rounds: int, iters: int,
                left: Callable[[], float]) -> dict[str, float]:
    """name → median seconds per call over interleaved rounds of ``iters`` calls; stops starting rounds when the
    last round would not fit in ``left()`` seconds (at least one round runs)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        t_round = time.perf_counter()
        for name, fn in fns.items():
            sync(dev)
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            sync(dev)
            times[name].append((time.perf_counter() - t0) / iters)
        if r + 1 < rounds and time.perf_counter() - t_round > left():
            break
    return {name: statistics.median(ts) for name, ts in times.items()}
