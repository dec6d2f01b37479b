"""CPU forward of UniFormer-S on one clip: the copy-free forward and autocast against the old always-copy forward.

Baseline, measured in the same run: the pre-0.2 forward, which copied every stage output to contiguous memory
(``coreecho.models.uniformer.always_contiguous()``), fp32. Rows: the current fp32 forward (copies only where
torch's CPU BatchNorm backward needs them, never in inference), the same with a channels-last-3d input, and
bf16/fp16 autocast where this CPU computes them natively. Every mode runs once per round, rounds are repeated,
medians reported, for each thread count. All under ``torch.inference_mode``.

Usage:
    python benchmarks/bench_forward.py [--repeats 7] [--threads 1 2] [--batch 1] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from coreecho import CoReEcho
from coreecho.models.uniformer import always_contiguous
from coreecho.precision import autocast_context, cpu_supports_bf16, cpu_supports_fp16


def modes() -> dict[str, tuple[str, bool, bool]]:
    """name → (precision, old always-copy forward, channels-last input)."""
    out = {"fp32, always copy (baseline)": ("fp32", True, False),
           "fp32": ("fp32", False, False),
           "fp32, channels-last input": ("fp32", False, True)}
    if cpu_supports_bf16():
        out["bf16 autocast"] = ("bf16", False, False)
    if cpu_supports_fp16():
        out["fp16 autocast"] = ("fp16", False, False)
    return out


def run(model: torch.nn.Module, x: torch.Tensor, precision: str, old: bool, cl: bool) -> float:
    if cl:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    copy = always_contiguous() if old else contextlib.nullcontext()
    t0 = time.perf_counter()
    with torch.inference_mode(), copy, autocast_context(precision, "cpu"):
        model(x)
    return time.perf_counter() - t0


def profile(model: torch.nn.Module, x: torch.Tensor) -> None:
    from torch.profiler import ProfilerActivity, profile as prof

    for name, old in (("always copy", True), ("current", False)):
        copy = always_contiguous() if old else contextlib.nullcontext()
        with torch.inference_mode(), copy, prof(activities=[ProfilerActivity.CPU]) as p:
            model(x)
        total = sum(e.self_cpu_time_total for e in p.key_averages())
        copies = sum(e.self_cpu_time_total for e in p.key_averages() if e.key == "aten::copy_")
        print(f"profile {name:<12} aten::copy_ {100 * copies / total:5.1f} % of self CPU time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--profile", action="store_true", help="also print the share of aten::copy_")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = CoReEcho().eval()
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size)
    table = modes()
    print(f"UniFormer-S, {args.batch} clip(s) of 3x{args.frames}x{args.size}x{args.size}, "
          f"{args.repeats} interleaved rounds, medians; torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {name: [] for name in table}
        for name, spec in table.items():  # warm-up (oneDNN primitive caches)
            run(model, x, *spec)
        for _ in range(args.repeats):
            for name, spec in table.items():
                times[name].append(run(model, x, *spec))
        base = statistics.median(times["fp32, always copy (baseline)"])
        print(f"\nthreads={threads}")
        print(f"{'mode':<32}{'median s':>10}{'min s':>8}{'speed-up':>10}")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"{name:<32}{med:>10.3f}{min(ts):>8.3f}{base / med:>9.2f}x")
        if args.profile:
            profile(model, x)


if __name__ == "__main__":
    main()
