"""UniFormer-S forward with glibc's default allocator settings vs :func:`coreecho.allocator.keep_freed_memory`.

The setting is process-wide, so each measurement is its own subprocess: the baseline runs with
``COREECHO_KEEP_FREED_MEMORY=0`` (glibc's defaults), the other calls ``keep_freed_memory()`` first, as
:func:`coreecho.engine.stream` does. Subprocesses alternate; each times ``--passes`` forwards of one 36×112×112 clip
(after one warm-up) and reports its median. The script prints the median over rounds and the ratio.

Usage:
    python benchmarks/bench_allocator.py [--rounds 3] [--passes 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CHILD = r"""
import statistics, sys, time
import torch
from coreecho.allocator import keep_freed_memory
from coreecho.models.uniformer import uniformer_small
from coreecho.precision import autocast_context
print(keep_freed_memory(), file=sys.stderr)
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
enc, x = uniformer_small().eval(), torch.randn(1, 3, 36, 112, 112)
times = []
with torch.inference_mode(), autocast_context(sys.argv[1], "cpu"):
    for i in range(int(sys.argv[3]) + 1):
        t0 = time.perf_counter()
        enc(x)
        times.append(time.perf_counter() - t0)
print(statistics.median(times[1:]))
"""


def child(precision: str, keep: bool, threads: int, passes: int) -> float:
    env = {**os.environ, "COREECHO_KEEP_FREED_MEMORY": "1" if keep else "0"}
    out = subprocess.run([sys.executable, "-c", CHILD, precision, str(threads), str(passes)], env=env,
                         capture_output=True, text=True, check=True)
    applied = out.stderr.strip().splitlines()[-1] == "True"
    if applied != keep:
        raise SystemExit(f"keep_freed_memory() returned {applied} with keep={keep}: glibc not found?")
    return float(out.stdout.strip())


def main() -> None:
    from coreecho.precision import cpu_supports_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    modes = ["fp32"] + (["bf16"] if cpu_supports_bf16() else [])
    times: dict[tuple[str, bool], list[float]] = {(m, k): [] for m in modes for k in (False, True)}
    for _ in range(args.rounds):
        for key in times:
            times[key].append(child(key[0], key[1], args.threads, args.passes))
    print(f"UniFormer-S, one 36x112x112 clip per forward, torch threads={args.threads}, {args.rounds} rounds of "
          f"{args.passes} passes (medians)")
    print(f"{'precision':<10}{'glibc defaults s':>18}{'keep_freed_memory s':>21}{'speed-up':>10}")
    for m in modes:
        base, ours = statistics.median(times[(m, False)]), statistics.median(times[(m, True)])
        print(f"{m:<10}{base:>18.4f}{ours:>21.4f}{base / ours:>9.2f}x")


if __name__ == "__main__":
    main()
