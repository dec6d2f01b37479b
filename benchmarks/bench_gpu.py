"""GPU throughput of UniFormer-S (clips/s, peak memory) by precision mode, and the stage-1 training step.

Inference, batch 64 and 128 of 3×36×112×112 clips under ``torch.inference_mode``; baseline measured in the same
run: **fp32 eager** with TF32 off (the reference setting). Modes: fp32, tf32 (TF32 matmuls and convolutions),
bf16 autocast, bf16 + channels-last-3d (weights and input), bf16 + ``torch.compile``. Each mode runs its
iterations once per round, rounds are interleaved, the median seconds per batch is reported with the peak
``torch.cuda.max_memory_allocated`` of that mode.

Training, the stage-1 step (16 videos × 2 views = 32 clips, encoder + CoReLoss + AdamW, then the head's L1 step
on detached embeddings, as :func:`coreecho.train.stage1.stage1_step`); baseline: an **official-style fp32 step**
(PyTorch's default TF32 flags, the pre-0.2 forward with contiguity copies, the official Rank-N-Contrast algorithm:
``[n, n, D]`` differences and a Python loop over positive ranks). Reference on an H200 with the official code:
0.31 s per step.

Usage:
    python benchmarks/bench_gpu.py [--batches 64 128] [--rounds 5] [--iters 5] [--no-compile]
    python benchmarks/bench_gpu.py --smoke      # CPU, tiny sizes: checks the script runs, numbers meaningless

Exits with status 2 and a message when no CUDA device is present (unless ``--smoke``).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from typing import Any, Callable

import torch

from coreecho import CoReEcho
from coreecho.losses import CoReLoss
from coreecho.models.config import ModelConfig
from coreecho.models.uniformer import always_contiguous


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_gib(dev: torch.device) -> float:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")


@contextlib.contextmanager
def tf32(enabled: bool) -> Any:
    """TF32 for matmuls and cuDNN convolutions inside the block."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@contextlib.contextmanager
def torch_default_tf32() -> Any:
    """PyTorch's default flags (TF32 convolutions on, TF32 matmuls off), as the official code ran."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


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


def build_model(dev: torch.device, smoke: bool) -> CoReEcho:
    torch.manual_seed(0)
    if smoke:
        cfg = ModelConfig(architecture="uniformer_custom",
                          encoder_args={"depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8})
        return CoReEcho(cfg).to(dev)
    return CoReEcho().to(dev)


def time_rounds(fns: dict[str, Callable[[], Any]], dev: torch.device, rounds: int, iters: int,
                warmup: int) -> dict[str, tuple[float, float]]:
    """name → (median seconds per call, peak GiB); every function warmed up, then rounds interleaved."""
    peaks: dict[str, float] = {}
    for name, fn in fns.items():
        _reset_peak(dev)
        for _ in range(warmup):
            fn()
        _sync(dev)
        peaks[name] = _peak_gib(dev)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            _sync(dev)
            times[name].append((time.perf_counter() - t0) / iters)
    return {name: (statistics.median(ts), peaks[name]) for name, ts in times.items()}


def inference_modes(model: CoReEcho, x: torch.Tensor, compile_: bool) -> dict[str, Callable[[], Any]]:
    enc = model.encoder.eval()
    x_cl = x.contiguous(memory_format=torch.channels_last_3d)

    def run(module: torch.nn.Module, inp: torch.Tensor, dtype: torch.dtype | None, allow_tf32: bool) -> Callable:
        def fn() -> Any:
            with torch.inference_mode(), tf32(allow_tf32):
                if dtype is None:
                    return module(inp)
                with torch.autocast("cuda" if inp.is_cuda else "cpu", dtype=dtype):
                    return module(inp)
        return fn

    import copy

    enc_cl = copy.deepcopy(enc).to(memory_format=torch.channels_last_3d)
    modes = {
        "fp32 eager (baseline)": run(enc, x, None, False),
        "tf32": run(enc, x, None, True),
        "bf16": run(enc, x, torch.bfloat16, False),
        "bf16 + channels-last-3d": run(enc_cl, x_cl, torch.bfloat16, False),
    }
    if compile_:
        modes["bf16 + torch.compile"] = run(torch.compile(enc), x, torch.bfloat16, False)
    return modes


def train_modes(model: CoReEcho, clips: torch.Tensor, ef: torch.Tensor) -> dict[str, Callable[[], Any]]:
    import copy

    from coreecho.train.stage1 import stage1_step

    dev = clips.device

    def make(precision: str, official: bool, channels_last: bool) -> Callable[[], Any]:
        m = copy.deepcopy(model).train()
        if channels_last:
            m = m.to(memory_format=torch.channels_last_3d)
        opt_e = torch.optim.AdamW(m.encoder.parameters(), lr=1e-4, weight_decay=1e-4)
        opt_h = torch.optim.AdamW(m.head.parameters(), lr=1e-4, weight_decay=1e-4)
        loss_fn: Callable = official_style_rnc if official else CoReLoss(temperature=1.0)
        dtype = {"bf16": torch.bfloat16}.get(precision)
        autocast = (lambda: torch.autocast(dev.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
        flags = torch_default_tf32 if official else (lambda: tf32(precision == "tf32"))
        copies = always_contiguous if official else contextlib.nullcontext
        inp = clips.contiguous(memory_format=torch.channels_last_3d) if channels_last and clips.ndim == 5 else clips

        def step() -> Any:
            with flags(), copies():
                return stage1_step(m.encoder, m.head, inp, ef, loss_fn=loss_fn, opt_encoder=opt_e, opt_head=opt_h,
                                   autocast=autocast)
        return step

    return {
        "official-style fp32 (baseline)": make("fp32", True, False),
        "coreecho fp32 (TF32 off)": make("fp32", False, False),
        "coreecho tf32": make("tf32", False, False),
        "coreecho bf16": make("bf16", False, False),
    }


def print_table(title: str, unit: str, per_call: int, res: dict[str, tuple[float, float]], base_name: str) -> None:
    base = res[base_name][0]
    print(f"\n{title}")
    print(f"| mode | s / {unit} | clips / s | peak GiB | vs baseline |")
    print("|---|---:|---:|---:|---:|")
    for name, (t, peak) in res.items():
        print(f"| {name} | {t:.4f} | {per_call / t:.1f} | {peak:.2f} | {base / t:.2f}× |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5, help="calls per mode per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--videos", type=int, default=16, help="videos per training step (2 views each)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile row")
    parser.add_argument("--no-train", action="store_true", help="inference only")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model and sizes: only checks the script")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")  # float(loss) in the step
    if args.smoke:
        dev, frames, size = torch.device("cpu"), 8, 32
        args.batches, args.rounds, args.iters, args.warmup, args.videos = [2], 1, 1, 1, 4
    else:
        if not torch.cuda.is_available():
            print("bench_gpu.py needs a CUDA GPU, and torch.cuda.is_available() is False on this machine "
                  f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). Run it on a GPU machine; "
                  "CPU numbers come from benchmarks/bench_forward.py. (--smoke checks the script on a CPU.)",
                  file=sys.stderr)
            raise SystemExit(2)
        dev, frames, size = torch.device("cuda"), 36, 112
    model = build_model(dev, args.smoke)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        print(f"{props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, "
              f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    print(f"clips 3x{frames}x{size}x{size}; {args.rounds} interleaved rounds x {args.iters} calls, medians")
    for b in args.batches:
        x = torch.randn(b, 3, frames, size, size, device=dev)
        res = time_rounds(inference_modes(model, x, not args.no_compile and not args.smoke), dev, args.rounds,
                          args.iters, args.warmup)
        print_table(f"Inference, batch {b}", "batch", b, res, "fp32 eager (baseline)")
        del x
    if not args.no_train:
        g = torch.Generator(device="cpu").manual_seed(0)
        clips = torch.randn(args.videos, 2, 3, frames, size, size, generator=g).to(dev)
        ef = (torch.rand(args.videos, generator=g) * 60 + 20).to(dev)
        res = time_rounds(train_modes(model, clips, ef), dev, args.rounds, max(1, args.iters // 2), args.warmup)
        print_table(f"Stage-1 training step, {args.videos} videos x 2 views (reference: official code 0.31 s "
                    "on an H200)", "step", 2 * args.videos, res, "official-style fp32 (baseline)")


if __name__ == "__main__":
    main()
