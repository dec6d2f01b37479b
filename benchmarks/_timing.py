"""Interleaved timing shared by the benchmark scripts: every run once to warm up, then ``repeats`` rounds in turn.

Interleaving spreads the noise of a shared machine over every run alike; medians are reported.

:func:`interleaved` times functions of this process. :func:`interleaved_processes` gives each run a process of its
own, for runs that must not share process-wide state (glibc's allocator settings, thread pools, caches): each child
runs :func:`serve` on its function and times it there, so process start-up and imports are not in the timings.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Sequence


def _rounds(runs: dict[str, Callable[[], tuple[float, Any]]], repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Each run once to warm up, then ``repeats`` rounds in turn; a run returns ``(seconds, result)``."""
    results = {name: fn()[1] for name, fn in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            seconds, results[name] = fn()
            times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}, results


def _timed(fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter) -> tuple[float, Any]:
    t0 = clock()
    result = fn()
    return clock() - t0, result


def interleaved(runs: dict[str, Callable[[], Any]], repeats: int,
                clock: Callable[[], float] = time.perf_counter) -> tuple[dict[str, float], dict[str, Any]]:
    """``(median seconds per run, last result per run)``, after one warm-up call of each run.

    ``clock``: wall time by default; ``time.process_time`` gives this process's CPU seconds (user + system, all its
    threads), which other processes competing for the cores do not inflate as much.
    """
    return _rounds({name: (lambda fn=fn: _timed(fn, clock)) for name, fn in runs.items()}, repeats)


def machine_note() -> str:
    """What else the machine is doing: load averages and the busiest other processes (``ps``'s %CPU, an average
    over each process's lifetime), to print next to timings taken on a shared machine."""
    one, five, fifteen = os.getloadavg()
    note = f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on {os.cpu_count()} cores"
    try:
        out = subprocess.run(["ps", "-eo", "pid=,pcpu=,comm=", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=5).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return note
    mine = {os.getpid(), os.getppid()}
    busy = []
    for line in out:
        parts = line.split(None, 2)
        if len(parts) == 3 and int(parts[0]) not in mine and float(parts[1]) >= 5.0:
            busy.append(f"{parts[2]} {parts[1]}%")
    return note + ("; busiest other processes: " + ", ".join(busy[:4]) if busy else "; no other busy process")


def serve(fn: Callable[[], Any]) -> None:
    """Child side of :func:`interleaved_processes`: for each ``run`` line on stdin, call ``fn`` and print one JSON line
    ``{"seconds": ..., "result": ...}`` (``result`` must be JSON-able); stop at end of input."""
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever fn prints must not break the protocol
    for line in sys.stdin:
        if line.strip() != "run":
            continue
        seconds, result = _timed(fn)
        out.write(json.dumps({"seconds": seconds, "result": result}) + "\n")
        out.flush()


def interleaved_processes(runs: dict[str, Sequence[str]], repeats: int, env: dict[str, dict[str, str]] | None = None,
                          ) -> tuple[dict[str, float], dict[str, Any]]:
    """Like :func:`interleaved`, each run being a command line of a child that calls :func:`serve`.

    ``env`` adds environment variables per run. Children start together (and idle until asked), run one at a time.
    """
    procs = {}
    for name, argv in runs.items():
        procs[name] = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       env={**os.environ, **(env or {}).get(name, {})})

    def ask(name: str) -> tuple[float, Any]:
        proc = procs[name]
        proc.stdin.write("run\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"benchmark child {name!r} exited with {proc.wait()}")
        answer = json.loads(line)
        return answer["seconds"], answer["result"]

    try:
        return _rounds({name: (lambda name=name: ask(name)) for name in runs}, repeats)
    finally:
        for proc in procs.values():
            proc.stdin.close()
            proc.wait()
