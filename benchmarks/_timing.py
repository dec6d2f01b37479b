"""Interleaved timing shared by the benchmark scripts: every run once to warm up, then ``repeats`` rounds in turn.

Interleaving spreads the noise of a shared machine over every run alike; medians are reported.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def interleaved(runs: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """``(median seconds per run, last result per run)``, after one warm-up call of each run."""
    results = {name: fn() for name, fn in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}, results
