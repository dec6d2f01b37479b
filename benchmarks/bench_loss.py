"""Benchmark of CoReLoss against the loop-per-positive algorithm of the official Rank-N-Contrast code.

All compute the same loss (checked below). Two baselines, both written here, follow the official algorithm: for
each of the ``n - 1`` positive ranks, a Python-level iteration masks and reduces the whole ``[n, n - 1]`` matrix
(``O(n^3)`` work; autograd keeps one mask per iteration):

* ``official-style``: as the official code also computes its distances, from the ``[n, n, D]`` tensor of
  pairwise differences (``O(n^2 D)`` memory), and shifts by the row maximum including the diagonal (a no-op);
* ``loop+cdist``: the same loop with cheap ``torch.cdist`` distances and a per-anchor shift, to isolate the cost
  of the loop itself.

Forward + backward, V = 2 views, D = 512, float32, CPU; the implementations alternate within each repeat and the
medians are reported. Then the chunked mode at large N, each size in a fresh subprocess so that its peak resident
memory (``ru_maxrss``) is its own.

Run: ``python benchmarks/bench_loss.py`` (``--quick`` for a short run, ``--help`` for options).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from coreecho.losses import CoReLoss


def official_style_rnc(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """The official algorithm with its own distance computation: [n, n, D] differences, then the loop."""
    views = features.shape[1]
    z = torch.cat(torch.unbind(features, dim=1), dim=0)
    y = labels.reshape(-1, 1).repeat(views, 1)
    n = z.shape[0]
    logits = -(z[:, None, :] - z[None, :, :]).norm(2, dim=-1) / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()  # the diagonal (0) is the max
    exp_logits = logits.exp()
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    logits = logits[off_diagonal].view(n, n - 1)
    exp_logits = exp_logits[off_diagonal].view(n, n - 1)
    label_dist = (y - y.T).abs()[off_diagonal].view(n, n - 1)
    total = logits.new_zeros(())
    for k in range(n - 1):
        negatives = (label_dist >= label_dist[:, k : k + 1]).to(logits.dtype)
        total = total - (logits[:, k] - (exp_logits * negatives).sum(dim=1).log()).sum() / (n * (n - 1))
    return total


def loop_per_positive_rnc(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """The official algorithm's cost: one masked [n, n-1] reduction per positive rank (O(n^3))."""
    views = features.shape[1]
    z = torch.cat(torch.unbind(features, dim=1), dim=0)
    y = labels.reshape(-1, 1).repeat(views, 1)
    n = z.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    logits = (-torch.cdist(z, z) / temperature)[off_diagonal].view(n, n - 1)
    label_dist = (y - y.T).abs()[off_diagonal].view(n, n - 1)
    shift = logits.max(dim=1, keepdim=True).values.detach()
    exp_logits = (logits - shift).exp()
    total = logits.new_zeros(())
    for k in range(n - 1):
        negatives = (label_dist >= label_dist[:, k : k + 1]).to(logits.dtype)
        log_denominator = (exp_logits * negatives).sum(dim=1).log() + shift[:, 0]
        total = total - (logits[:, k] - log_denominator).sum()
    return total / (n * (n - 1))


def _inputs(batch: int, views: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, views, dim, generator=g)
    labels = torch.rand(batch, generator=g) * 70 + 10
    return features, labels


CLOCK = time.perf_counter


def _fwd_bwd(fn, features: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    x = features.clone().requires_grad_(True)
    start = CLOCK()
    loss = fn(x, labels)
    loss.backward()
    elapsed = CLOCK() - start
    return elapsed, loss.item(), x.grad


def compare(batches: list[int], repeats: int, dim: int, temperature: float) -> list[dict]:
    ours = CoReLoss(temperature=temperature)
    impls = {
        "official": lambda x, y: official_style_rnc(x, y, temperature),
        "loop": lambda x, y: loop_per_positive_rnc(x, y, temperature),
        "ours": ours,
    }
    rows = []
    for batch in batches:
        features, labels = _inputs(batch, 2, dim, seed=batch)
        # warm-up and sanity: same loss, same gradient
        ref = {name: _fwd_bwd(fn, features, labels) for name, fn in impls.items()}
        _, loss_o, grad_o = ref["ours"]
        rel_loss = max(abs(ref[k][1] - loss_o) / abs(loss_o) for k in ("official", "loop"))
        rel_grad = max(((ref[k][2] - grad_o).abs().max() / grad_o.abs().max()).item() for k in ("official", "loop"))
        assert rel_loss < 1e-5 and rel_grad < 1e-3, (batch, rel_loss, rel_grad)
        times: dict[str, list[float]] = {name: [] for name in impls}
        for _ in range(repeats):  # interleaved
            for name, fn in impls.items():
                times[name].append(_fwd_bwd(fn, features, labels)[0])
        med = {name: statistics.median(t) for name, t in times.items()}
        rows.append(
            {
                "batch": batch,
                "n": 2 * batch,
                "official_ms": 1e3 * med["official"],
                "loop_ms": 1e3 * med["loop"],
                "coreloss_ms": 1e3 * med["ours"],
                "speedup_official": med["official"] / med["ours"],
                "speedup_loop": med["loop"] / med["ours"],
                "loss_rel_diff": rel_loss,
                "grad_rel_diff": rel_grad,
            }
        )
    return rows


def _memory_mib(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (current) resident memory of this process, in MiB (Linux); falls back to
    ``ru_maxrss``, which after fork + exec may still report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _one_large(n: int, dim: int, chunk: int | None, temperature: float) -> dict:
    """Runs in a subprocess: one forward+backward at n samples; peak RSS of this process."""
    features, labels = _inputs(n // 2, 2, dim, seed=n)
    x = features.requires_grad_(True)
    before = _memory_mib("VmRSS")
    start = CLOCK()
    loss = CoReLoss(temperature=temperature, chunk_size=chunk)(x, labels)
    loss.backward()
    elapsed = CLOCK() - start
    ok = bool(torch.isfinite(loss)) and bool(torch.isfinite(x.grad).all())
    return {
        "n": n,
        "chunk": chunk,
        "seconds": elapsed,
        "peak_rss_mib": _memory_mib("VmHWM"),
        "rss_before_mib": before,
        "finite": ok,
        "loss": loss.item(),
    }


def large(sizes: list[int], chunk: int, dim: int, temperature: float, unchunked: list[int], clock: str) -> list[dict]:
    rows = []
    runs = [(n, None) for n in unchunked] + [(n, chunk) for n in sizes]
    for n, c in runs:
        cmd = [
            sys.executable,
            __file__,
            "--_one",
            str(n),
            "--dim",
            str(dim),
            "--temperature",
            str(temperature),
            "--threads",
            str(torch.get_num_threads()),
            "--clock",
            clock,
        ]
        if c is not None:
            cmd += ["--chunk", str(c)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            rows.append({"n": n, "chunk": c, "error": out.stderr.strip().splitlines()[-1:]})
        else:
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def _print_large(args: argparse.Namespace) -> None:
    print(f"{'N':>7} {'chunk':>6} {'seconds':>8} {'peak RSS MiB':>13} {'RSS before MiB':>15} {'finite':>7}")
    rows = large(args.large, args.chunk, args.dim, args.temperature, args.unchunked, args.clock)
    for r in rows:
        chunk = r["chunk"] if r["chunk"] is not None else "-"
        if "error" in r:
            print(f"{r['n']:>7} {chunk:>6} failed: {r['error']}")
            continue
        print(
            f"{r['n']:>7} {chunk:>6} {r['seconds']:>8.1f} {r['peak_rss_mib']:>13.0f} {r['rss_before_mib']:>15.0f} "
            f"{r['finite']!s:>7}"
        )
    fits = [r["n"] for r in rows if "error" not in r and r["peak_rss_mib"] <= args.budget_gib * 1024]
    if fits:
        print(f"largest N run within {args.budget_gib:g} GiB peak RSS: {max(fits)}")


def _print_compare(args: argparse.Namespace) -> None:
    print(
        f"{'batch':>6} {'n':>5} {'official-style ms':>18} {'loop+cdist ms':>14} {'CoReLoss ms':>12} "
        f"{'vs official':>12} {'vs loop':>8} {'loss rel diff':>14} {'grad rel diff':>14}"
    )
    for r in compare(args.batches, args.repeats, args.dim, args.temperature):
        print(
            f"{r['batch']:>6} {r['n']:>5} {r['official_ms']:>18.2f} {r['loop_ms']:>14.2f} {r['coreloss_ms']:>12.2f} "
            f"{r['speedup_official']:>11.1f}x {r['speedup_loop']:>7.1f}x {r['loss_rel_diff']:>14.1e} "
            f"{r['grad_rel_diff']:>14.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--large", type=int, nargs="*", default=[8192, 16384], help="N for the chunked mode")
    parser.add_argument("--unchunked", type=int, nargs="*", default=[8192], help="N for one unchunked pass")
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--budget-gib", type=float, default=4.0, help="memory budget for the 'largest N' line")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time, robust to other load on a shared machine (meaningful with --threads 1)",
    )
    parser.add_argument("--quick", action="store_true", help="batches 16 64, 3 repeats, N = 4096 only")
    parser.add_argument("--_one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    global CLOCK
    if args.clock == "cpu":
        CLOCK = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._one is not None:
        chunk = args.chunk if "--chunk" in sys.argv else None
        print(json.dumps(_one_large(args._one, args.dim, chunk, args.temperature)))
        return
    if args.quick:
        args.batches, args.repeats, args.large, args.unchunked = [16, 64], 3, [4096], []

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, D = {args.dim}, V = 2, "
        f"tau = {args.temperature}, float32, CPU, forward + backward, {args.clock} clock"
    )
    # large N first, in fresh subprocesses, before this process grows
    if args.large or args.unchunked:
        print()
        _print_large(args)
    print()
    print(f"median of {args.repeats} interleaved runs")
    _print_compare(args)


if __name__ == "__main__":
    main()
