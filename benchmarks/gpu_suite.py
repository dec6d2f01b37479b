"""The GPU suite: every GPU number coreecho wants, in one run of under 8 minutes on one H100/H200.

Sections (each with its own time cap; a failing row or section is recorded with its error and the suite goes on;
results are rewritten after every section, so a killed run keeps what it measured):

* ``inference_device``: UniFormer-S inference clips/s at batch 64 and 128 on tensors already on the device, with
  peak ``torch.cuda.max_memory_allocated``: fp32 eager with TF32 off (baseline), tf32, bf16, bf16 +
  channels-last-3d, bf16 + ``torch.compile`` (``_gpu_modes.inference_modes``).
* ``inference_pipeline``: the input pipeline on against off — clips/s of :func:`coreecho.engine.stream` over
  phantom AVIs in EchoNet-Dynamic's format (112 px, 3 clips per video) decoded by loader workers (the engine's
  default count, and one per spare core), against the same forward passes on tensors already on the device.
* ``train_step``: the stage-1 step (16 videos × 2 views, CoReLoss, AdamW, the head's L1 step) eager fp32 / bf16 /
  bf16 + compile against an official-style fp32 step written in the research code's order of operations
  (``_gpu_modes.train_modes``).
* ``ddp``: a 2-process NCCL DistributedDataParallel stage-1 step (``coreecho.train.distributed``, ``CoReLoss``
  gathering across ranks): seconds per step, an ``all_reduce`` check and whether both ranks hold identical weights
  afterwards; skipped with a message on a machine with fewer than 2 GPUs.

``--dry`` runs every section on the CPU in seconds with a micro UniFormer at 8 frames × 32 px and tiny batches:
TF32 flags are no-ops there, channels-last runs as is, ``torch.compile`` is replaced by the eager module
(``--dry-compile``: dynamo's eager backend), and the DDP check runs on gloo. Its numbers mean nothing; it keeps
the suite from rotting (``tests/test_gpu_suite.py`` runs it).

Writes ``gpu_suite.json`` and ``gpu_suite.md`` into ``--out`` (default ``$OUT`` if set, else ``./gpu-results``).
``benchmarks/gpu_suite.sh`` runs this and then ``pytest -m gpu``.

Usage:
    python benchmarks/gpu_suite.py [--out DIR] [--sections inference_device train_step] [--no-compile]
    python benchmarks/gpu_suite.py --dry --out /tmp/suite      # CPU, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import signal
import socket
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _gpu_modes as gm  # noqa: E402
from _timing import machine_note  # noqa: E402

#: Section name → time cap in seconds on a GPU (the suite's part of the 8 minutes; pytest -m gpu gets the rest).
CAPS = {"inference_device": 140, "inference_pipeline": 60, "train_step": 110, "ddp": 60}
SECTIONS = tuple(CAPS)
#: Time cap of every section of a ``--dry`` run.
DRY_CAP = 120


class SectionTimeout(BaseException):
    """The section's time cap is spent (a BaseException, so that the row handlers let it through)."""


@contextlib.contextmanager
def time_cap(seconds: float) -> Any:
    """Raise :class:`SectionTimeout` in this (main) thread after ``seconds``."""
    def expire(_signum: int, _frame: Any) -> None:
        raise SectionTimeout()

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).strip()[:400]}"


class Suite:
    """Runs the sections and keeps the results (written as JSON and markdown after every section)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.dev = torch.device("cpu") if args.dry else torch.device("cuda")
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.caps = {name: DRY_CAP for name in CAPS} if args.dry else dict(CAPS)
        self.results: dict[str, Any] = {"suite": "coreecho gpu_suite", "format": 1, "meta": self.meta(),
                                        "sections": {}}

    def meta(self) -> dict[str, Any]:
        m: dict[str, Any] = {"dry": self.args.dry, "started_utc": datetime.datetime.now(datetime.timezone.utc)
                             .isoformat(timespec="seconds"), "torch": torch.__version__, "cuda": torch.version.cuda,
                             "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
                             "cpu_cores": os.cpu_count(), "machine": machine_note(), "caps_s": self.caps}
        if self.dev.type == "cuda":
            props = torch.cuda.get_device_properties(self.dev)
            m.update(device=props.name, device_memory_gib=round(props.total_memory / 2**30, 1),
                     cudnn=torch.backends.cudnn.version())
        else:
            m["device"] = "cpu (dry run: numbers are meaningless)"
        return m

    # ------------------------------------------------------------------ running and recording
    def section(self, name: str, fn: Callable[[dict[str, Any], Callable[[], float]], str | None]) -> None:
        cap = self.caps[name]
        entry: dict[str, Any] = {"status": "running", "cap_s": cap, "rows": []}
        self.results["sections"][name] = entry
        t0 = time.monotonic()
        left = lambda: cap - (time.monotonic() - t0)  # noqa: E731
        print(f"[gpu_suite] {name} (cap {cap} s)", flush=True)
        try:
            with time_cap(cap):
                reason = fn(entry, left)
            if reason:
                entry.update(status="skipped", reason=reason)
            else:
                bad = [r for r in entry["rows"] if "error" in r]
                entry["status"] = "ok" if not bad else ("partial" if len(bad) < len(entry["rows"]) else "failed")
                if bad:
                    entry["reason"] = f"{len(bad)} row(s) failed"
        except SectionTimeout:
            entry.update(status="partial" if any("value" in r for r in entry["rows"]) else "failed",
                         reason=f"time cap of {cap} s reached")
        except Exception as err:  # noqa: BLE001 - recorded, and the suite goes on
            entry.update(status="failed", reason=_error(err), traceback=traceback.format_exc()[-2000:])
        finally:
            entry["seconds"] = round(time.monotonic() - t0, 2)
            if self.dev.type == "cuda":
                gc.collect()
                torch.cuda.empty_cache()
            self.write()
        print(f"[gpu_suite] {name}: {entry['status']} in {entry['seconds']} s"
              + (f" ({entry['reason']})" if entry.get("reason") else ""), flush=True)

    def skip(self, name: str, reason: str) -> None:
        self.results["sections"][name] = {"status": "skipped", "reason": reason, "rows": [], "seconds": 0.0}
        self.write()

    def timed(self, entry: dict[str, Any], modes: dict[str, tuple[Callable[[], Any], str]], per_call: int,
              unit: str, extra: dict[str, Any], left: Callable[[], float], base_s: float | str | None = "first",
              warmup: int | None = None, iters: int | None = None) -> dict[str, float]:
        """Warm every mode up (a failing one becomes an error row), then interleaved rounds; rows go into
        ``entry`` as they are known. The ratio is against the first mode (``base_s="first"``), or ``base_s``
        seconds per call (a baseline timed earlier; ``None``: no ratio). Returns the median seconds per call of
        each mode that ran."""
        a = self.args
        live: dict[str, Callable[[], Any]] = {}
        rows: dict[str, dict[str, Any]] = {}
        for name, (fn, note) in modes.items():
            row = rows[name] = {"row": name, **extra, **({"note": note} if note else {})}
            entry["rows"].append(row)
            try:
                row["warmup_s"], row["peak_gib"] = gm.warm(fn, self.dev, a.warmup if warmup is None else warmup)
                live[name] = fn
            except SectionTimeout:
                row["error"] = "the section's time cap was reached during the warm-up"
                raise
            except Exception as err:  # noqa: BLE001 - one failing row must not kill the suite
                row["error"] = _error(err)
                if self.dev.type == "cuda":
                    torch.cuda.empty_cache()
        if not live:
            return {}
        medians = gm.time_rounds(live, self.dev, a.rounds, a.iters if iters is None else iters, left)
        base = medians.get(next(iter(modes))) if base_s == "first" else base_s
        for name, seconds in medians.items():
            rows[name].update(value=round(per_call / seconds, 2), unit=unit, s_per_call=round(seconds, 5))
            if base is not None:
                rows[name]["vs_baseline"] = round(base / seconds, 3)
        return medians

    def write(self) -> None:
        (self.out / "gpu_suite.json").write_text(json.dumps(self.results, indent=1, default=str))
        (self.out / "gpu_suite.md").write_text(markdown(self.results))

    # ------------------------------------------------------------------ sections
    def inference_device(self, entry: dict[str, Any], left: Callable[[], float]) -> str | None:
        model = gm.build_model(self.dev, self.args.dry)
        pre = model.config.preprocessing
        base: dict[int, float | None] = {}
        # the eager modes of every batch first, the compiled ones last: a compilation that outlasts the cap
        # costs only its own rows
        for late in (False, True):
            if late and self.args.no_compile:
                break
            for b in self.args.batches:
                x = torch.randn(b, 3, pre.frames, pre.size, pre.size, device=self.dev)
                modes = gm.inference_modes(model, x, True, self.args.dry_compile)
                modes = {k: v for k, v in modes.items() if ("compile" in k) == late}
                medians = self.timed(entry, modes, b, "clips/s", {"batch": b}, left,
                                     base_s=base.get(b) if late else "first")
                if not late:
                    base[b] = medians.get(next(iter(modes)))
                del x, modes
        return None

    def inference_pipeline(self, entry: dict[str, Any], left: Callable[[], float]) -> str | None:
        from coreecho.data.layouts import write_echonet_layout
        from coreecho.engine import VideoItems, default_workers, stream

        model = gm.build_model(self.dev, self.args.dry)
        pre = model.config.preprocessing
        b = self.args.batches[0]
        with tempfile.TemporaryDirectory() as tmp:
            files = write_echonet_layout(tmp, self.args.pipeline_files, seed=0, splits=(0, 0, self.args.pipeline_files),
                                         n_frames=(120, 200) if not self.args.dry else 40, size=pre.size, fps=50,
                                         progress=False)
            paths = [r["path"] for r in files] * self.args.pipeline_repeat
            items = VideoItems(paths, model.pipeline(), clips=3)
            clips = 3 * len(paths)
            spare = max(1, (os.cpu_count() or 2) - 1)
            default = default_workers(len(paths), device=self.dev, compute_bound=True)
            counts = [1] if self.args.dry else sorted({default, min(spare, 15)})
            modes: dict[str, tuple[Callable[[], Any], str]] = {}
            for precision in ("fp32", "bf16"):
                dtype = torch.bfloat16 if precision == "bf16" else None
                x = torch.randn(b, 3, pre.frames, pre.size, pre.size, device=self.dev)

                def off(x: torch.Tensor = x, dtype: torch.dtype | None = dtype) -> Any:
                    with torch.inference_mode(), gm.tf32(False):
                        for _ in range(-(-clips // b)):  # the same number of passes as the stream
                            if dtype is None:
                                model.encoder(x)
                            else:
                                with torch.autocast(self.dev.type, dtype=dtype):
                                    model.encoder(x)
                modes[f"off: {precision}, tensors on the device"] = (off, "")
                for w in counts:
                    def on(w: int = w, precision: str = precision) -> Any:
                        with gm.tf32(False):
                            for _ in stream(items, model, batch_size=b, precision=precision, workers=w,
                                            progress=False):
                                pass
                    note = "engine default" if w == default else "one per spare core"
                    modes[f"on: {precision}, {w} loader worker(s) decoding AVIs"] = (on, note)
            # one call each round: every call is a whole stream (workers started, the videos decoded)
            self.timed(entry, modes, clips, "clips/s", {"batch": b, "videos": len(paths)}, left, warmup=1, iters=1)
        return None

    def train_step(self, entry: dict[str, Any], left: Callable[[], float]) -> str | None:
        model = gm.build_model(self.dev, self.args.dry)
        pre = model.config.preprocessing
        g = torch.Generator().manual_seed(0)
        v = self.args.videos
        clips = torch.randn(v, 2, 3, pre.frames, pre.size, pre.size, generator=g).to(self.dev)
        ef = (torch.rand(v, generator=g) * 60 + 20).to(self.dev)
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
        modes = gm.train_modes(model, clips, ef, not self.args.no_compile, self.args.dry_compile)
        eager = {k: m for k, m in modes.items() if "compile" not in k}
        medians = self.timed(entry, eager, 2 * v, "clips/s", {"videos": v, "views": 2}, left)
        compiled = {k: m for k, m in modes.items() if "compile" in k}
        if compiled:  # alone and last: a compilation that outlasts the cap costs only its own row
            self.timed(entry, compiled, 2 * v, "clips/s", {"videos": v, "views": 2}, left,
                       base_s=medians.get(next(iter(modes))))
        return None

    def ddp(self, entry: dict[str, Any], left: Callable[[], float]) -> str | None:
        import torch.multiprocessing as mp

        import torch.distributed as dist

        world = 2
        if not dist.is_available():
            return "torch.distributed is not available in this build of torch"
        if not self.args.dry and torch.cuda.device_count() < world:
            return (f"needs 2 GPUs, this machine has {torch.cuda.device_count()}: the 2-process NCCL DDP check "
                    "did not run")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with tempfile.TemporaryDirectory() as tmp:
            # fork on a CPU (fast, nothing to inherit); CUDA cannot be forked into
            ctx = mp.start_processes(ddp_worker, args=(world, port, tmp, self.args.dry, max(2, self.args.iters),
                                                       max(1, self.args.videos // world)), nprocs=world, join=False,
                                     start_method="fork" if self.args.dry else "spawn")
            try:
                while not ctx.join(timeout=1.0):
                    if left() < 2:
                        raise SectionTimeout()
            finally:
                for p in ctx.processes:
                    if p.is_alive():
                        p.terminate()
            result = json.loads((Path(tmp) / "rank0.json").read_text())
        entry["rows"].append({"row": f"2-process DDP stage-1 step ({result['backend']})", "unit": "s/step",
                              "value": result["s_per_step"], **result})
        if not (result["params_identical"] and result["all_reduce_ok"]):
            entry["rows"][-1]["error"] = "ranks disagree after the step (see params_max_diff / all_reduce_ok)"
        return None


def ddp_worker(rank: int, world: int, port: int, out: str, dry: bool, steps: int, videos: int) -> None:
    """One rank of the DDP check (``mp.spawn`` target): stage-1 steps under DDP with CoReLoss gathering across
    ranks; rank 0 writes ``rank0.json``."""
    import torch.distributed as dist

    from coreecho.losses import CoReLoss
    from coreecho.train.distributed import cleanup_distributed, init_distributed, wrap_ddp
    from coreecho.train.stage1 import stage1_step

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    if dry:
        torch.set_num_threads(1)
    env = init_distributed("cpu" if dry else None)
    try:
        model = gm.build_model(env.device, dry).train()  # same seed: identical weights on both ranks
        encoder, head = wrap_ddp(model.encoder, env), wrap_ddp(model.head, env)
        pre = model.config.preprocessing
        g = torch.Generator().manual_seed(rank)
        clips = torch.randn(videos, 2, 3, pre.frames, pre.size, pre.size, generator=g).to(env.device)
        ef = (torch.rand(videos, generator=g) * 60 + 20).to(env.device)
        opt_e = torch.optim.AdamW(model.encoder.parameters(), lr=1e-4)
        opt_h = torch.optim.AdamW(model.head.parameters(), lr=1e-4)
        loss_fn = CoReLoss(temperature=1.0, gather_distributed=True)
        dtype = None if dry else torch.bfloat16
        autocast = (lambda: torch.autocast(env.device.type, dtype=dtype)) if dtype else contextlib.nullcontext

        def step() -> dict[str, float]:
            return stage1_step(encoder, head, clips, ef, loss_fn=loss_fn, opt_encoder=opt_e, opt_head=opt_h,
                               autocast=autocast)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
            gm.sync(env.device)
            t0 = time.perf_counter()
            for _ in range(steps):
                last = step()
            gm.sync(env.device)
            seconds = (time.perf_counter() - t0) / steps
        notes = sorted({str(w.message).splitlines()[0][:200] for w in caught})
        flat = torch.cat([p.detach().float().reshape(-1) for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        diff = max(float((t - gathered[0]).abs().max()) for t in gathered)
        ones = torch.full((1024,), float(rank + 1), device=env.device)
        dist.all_reduce(ones)
        if rank == 0:
            Path(out, "rank0.json").write_text(json.dumps({
                "backend": dist.get_backend(), "world": world, "videos_per_rank": videos, "views": 2,
                "precision": "bf16" if dtype else "fp32", "s_per_step": round(seconds, 5), "loss": last["loss"],
                "params_max_diff": diff, "params_identical": diff == 0.0,
                "all_reduce_ok": bool((ones == world * (world + 1) / 2).all()), "warnings": notes}))
        del encoder, head  # a DDP reducer alive when the group goes can abort the process at exit
    finally:
        cleanup_distributed(env)


def markdown(results: dict[str, Any]) -> str:
    """The results as markdown tables (one per section)."""
    m = results["meta"]
    lines = [f"# coreecho GPU suite — {m.get('device')}", "",
             f"torch {m['torch']}, CUDA {m['cuda']}, {m['gpus']} GPU(s), {m['cpu_cores']} CPU cores, started "
             f"{m['started_utc']}; {m['machine']}", ""]
    for name, sec in results["sections"].items():
        lines += [f"## {name}: {sec['status']} ({sec.get('seconds', 0)} s" + (f" of {sec['cap_s']} s cap)"
                  if "cap_s" in sec else ")"), ""]
        if sec.get("reason"):
            lines += [f"{sec['reason']}", ""]
        if sec["rows"]:
            lines += ["| row | value | unit | s / call | peak GiB | vs baseline | note |",
                      "|---|---:|---|---:|---:|---:|---|"]
            for r in sec["rows"]:
                peak = r.get("peak_gib")
                lines.append(f"| {r['row']}" + (f" (batch {r['batch']})" if "batch" in r else "") +
                             f" | {r.get('value', '-')} | {r.get('unit', '')} | {r.get('s_per_call', '-')} | "
                             f"{'-' if peak is None else round(peak, 2)} | {r.get('vs_baseline', '-')} | "
                             f"{r.get('error') or r.get('note', '')} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu-results", help="results folder")
    parser.add_argument("--dry", action="store_true", help="CPU, micro model, tiny sizes: checks the suite runs")
    parser.add_argument("--dry-compile", action="store_true", help="with --dry: dynamo's eager backend for compile")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=3, help="calls per mode per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--videos", type=int, default=16, help="videos per training step (2 views each)")
    parser.add_argument("--pipeline-files", type=int, default=16, help="phantom AVIs of inference_pipeline")
    parser.add_argument("--pipeline-repeat", type=int, default=8, help="times each AVI is listed")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    args = parser.parse_args(argv)
    if args.dry:
        args.batches, args.rounds, args.iters, args.warmup, args.videos = [2, 4], 1, 1, 1, 4
        args.pipeline_files, args.pipeline_repeat = 2, 2
        torch.set_num_threads(1)
    suite = Suite(args) if args.dry or torch.cuda.is_available() else None
    if suite is None:
        args.dry = True  # for the meta block only: no CUDA device to describe
        suite = Suite(args)
        suite.results["meta"].update(dry=False, device="none")
        for name in args.sections:
            suite.skip(name, "no CUDA device (torch.cuda.is_available() is False); use --dry for a CPU check")
        print(f"gpu_suite.py needs a CUDA GPU (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              f"wrote skips to {suite.out}. --dry checks the suite on a CPU.", file=sys.stderr)
        return 2
    if suite.dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the research code sets it
    for name in args.sections:
        suite.section(name, getattr(suite, name))
    print(f"[gpu_suite] wrote {suite.out / 'gpu_suite.json'} and {suite.out / 'gpu_suite.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
