"""End to end (decode → EF) on EchoNet-format AVIs with fixed starts: coreecho's entry points vs an official-style loop.

Setting of the issue "A fast inference engine": 9 videos of 112×112 (MJPEG AVI, 50 fps, 120–200 frames) with three
fixed starts each (27 clips, as the official ``test_start_indexes.pkl``), an official-format UniFormer-S (random
but seeded weights: speed does not depend on them).

* **official-style** (the baseline, measured in the same run): for every video decode every frame with PyAV, build
  the clips, normalise, and run one clip per forward pass in fp32 under ``torch.no_grad``, through the network
  computed in the research code's order of operations (``_official.py``: 1×1×1 convolutions as ``Conv3d``, written-out
  softmax attention, contiguous maps between blocks).
* **official-style loop, coreecho 0.1 / current network**: the same loop with coreecho's forward as of 0.1
  (contiguity copies, ``Conv3d`` for 1×1×1, SDPA) and as of now. The 0.1 row calibrates the baseline: the issue
  measured the research code 1.33× slower than coreecho 0.1 at one clip per pass; the current row separates what
  the network saves from what the engine saves.
* **predict_ef fp32 / bf16**: ``coreecho.predict_ef(paths, starts=..., model=model)`` with its defaults (batch
  policy, loader workers), and with ``precision="bf16"`` (skipped where the CPU has no native bf16).
* **CLI evaluate / predict**: ``coreecho evaluate --data ... --starts starts.json`` and ``coreecho predict VIDEOS``
  (three evenly spaced clips per video: the same 27 clips' worth of work, other starts) run in this process with
  their defaults, loading the saved model from disk each time; the bf16 rows add ``--precision bf16``.

Each path runs in a process of its own, started once and timed inside (``_timing.interleaved_processes``), so that
process-wide settings do not leak between paths: the two official-style loops keep glibc's allocator defaults, as the
research code does, while coreecho's paths set :mod:`coreecho.allocator`'s thresholds as the engine always does.
Runs are interleaved and repeated; medians are printed with the ratio to the baseline and the EF deviation of each
mode from the official-style EFs (``-`` where the clips differ).

Usage:
    python benchmarks/bench_predict.py [--repeats 3] [--threads 2] [--videos 9] [--no-cli]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import coreecho
from coreecho.data.layouts import write_echonet_layout
from coreecho.models.uniformer import always_contiguous
from coreecho.video.transforms import normalize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _official import official_forward  # noqa: E402
from _official_loader import read_all_frames  # noqa: E402
from _timing import interleaved_processes, serve  # noqa: E402


def official_style(model: coreecho.CoReEcho, paths: list[Path], starts: list[list[int]],
                   encoder: Callable[[torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
    """Decode every frame, pad, one clip per forward pass, fp32: the research code's evaluation loop.

    ``encoder`` computes the embedding (default: the research code's order of operations).
    """
    encoder = encoder or (lambda x: official_forward(model.encoder, x))
    pre = model.config.preprocessing
    efs = []
    for path, st in zip(paths, starts):
        frames = read_all_frames(path)
        span = pre.frames * pre.stride
        if len(frames) < span:
            frames = np.concatenate([frames, np.zeros((span - len(frames),) + frames.shape[1:], np.uint8)])
        outs = []
        with torch.no_grad():
            for s in st:
                clip = frames[s + pre.stride * np.arange(pre.frames)][None]
                outs.append(model.head(encoder(normalize(clip, pre.mean, pre.std))).item())
        efs.append(float(np.mean(outs)))
    return np.array(efs)


def make_videos(root: Path, n: int, seed: int = 0) -> tuple[list[Path], list[list[int]]]:
    """``n`` phantoms in EchoNet-Dynamic's layout under ``root`` (all TEST, 120–200 frames at 50 fps), three starts
    each, also written to ``root/starts.json``."""
    rows = write_echonet_layout(root, n, seed, splits=(0, 0, n), n_frames=(120, 200), ef_range=(20.0, 75.0), fps=50)
    rng = np.random.default_rng(seed)
    paths, starts = [], []
    for row in rows:
        last = max(int(row["NumberOfFrames"]), 144) - 35 * 4 - 1
        paths.append(Path(row["path"]))
        starts.append(sorted(int(v) for v in rng.integers(0, last + 1, 3)))
    (root / "starts.json").write_text(json.dumps({p.name: st for p, st in zip(paths, starts)}))
    return paths, starts


def cli_run(argv: list[str], csv_out: Path) -> np.ndarray:
    """Run ``coreecho ARGV -o CSV_OUT`` in this process (stdout swallowed); the predicted EFs in input order."""
    from coreecho.cli import main as cli_main

    csv_out.unlink(missing_ok=True)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli_main(argv + ["-o", str(csv_out)])
    if code != 0:
        raise SystemExit(f"coreecho {' '.join(argv)} exited with {code}")
    with open(csv_out, newline="") as f:
        rows = list(csv.DictReader(f))
    key = "ef_pred" if "ef_pred" in rows[0] else "ef"
    return np.array([float(r[key]) for r in rows])


def child(key: str, root: Path, threads: int) -> None:
    """Serve one run of the table (``key``) to the parent, in this process (:func:`_timing.serve`)."""
    warnings.simplefilter("ignore")  # short phantoms warn that they are zero-padded, as the official loop pads them
    torch.set_num_threads(threads)
    model = coreecho.load_model(str(root / "model"))
    names = json.loads((root / "starts.json").read_text())
    paths = [root / "Videos" / name for name in names]
    starts = list(names.values())
    strs = [str(p) for p in paths]

    def v01(x: torch.Tensor) -> torch.Tensor:
        with always_contiguous():
            return model.encoder(x)

    fns: dict[str, Callable[[], Any]] = {
        "official": lambda: official_style(model, paths, starts),
        "official-net": lambda: official_style(model, paths, starts, model.encoder),
        "official-v01": lambda: official_style(model, paths, starts, v01),
    }
    for m in ("fp32", "bf16"):
        extra = ["--threads", str(threads)] + ([] if m == "fp32" else ["--precision", m])
        fns[f"predict_ef-{m}"] = lambda m=m: coreecho.predict_ef(strs, starts=starts, model=model, precision=m)
        fns[f"evaluate-{m}"] = lambda extra=extra: cli_run(
            ["evaluate", "--data", str(root), "--model", str(root / "model"), "--starts", str(root / "starts.json"),
             *extra], root / f"eval-{m}.csv")
        fns[f"predict-{m}"] = lambda extra=extra, m=m: cli_run(
            ["predict", *strs, "--model", str(root / "model"), "--quiet", *extra], root / f"pred-{m}.csv")
    fn = fns[key]
    serve(lambda: [float(v) for v in np.asarray(fn(), dtype=np.float64)])


def main() -> None:
    from coreecho.precision import cpu_supports_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--videos", type=int, default=9)
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI rows")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.root, args.threads)
    torch.manual_seed(0)
    modes = ["fp32"] + (["bf16"] if cpu_supports_bf16() else [])
    labels = {"official": "official-style", "official-v01": "official-style loop, coreecho 0.1 network",
              "official-net": "official-style loop, coreecho network"}
    for m in modes:
        labels[f"predict_ef-{m}"] = f"predict_ef {m}"
    if not args.no_cli:
        for m in modes:
            labels[f"evaluate-{m}"], labels[f"predict-{m}"] = f"CLI evaluate {m}", f"CLI predict {m}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_videos(root, args.videos)
        coreecho.CoReEcho().eval().save_pretrained(root / "model")
        runs = {label: [sys.executable, __file__, "--child", key, "--root", tmp, "--threads", str(args.threads)]
                for key, label in labels.items()}
        # the baselines run with glibc's allocator defaults, as the research code does (coreecho.allocator)
        env = {labels[k]: {"COREECHO_KEEP_FREED_MEMORY": "0"} for k in ("official", "official-v01", "official-net")}
        medians, efs = interleaved_processes(runs, args.repeats, env)
    base = medians["official-style"]
    print(f"{args.videos} videos 112x112, {3 * args.videos} clips of 36x4, UniFormer-S, torch threads={args.threads}, "
          f"repeats={args.repeats} (medians; each path in its own process)")
    print(f"{'path':<40}{'median s':>10}{'speed-up':>10}{'max |dEF|':>11}")
    for k in runs:
        med = medians[k]
        dev = "-" if k.startswith("CLI predict") else \
            f"{float(np.abs(np.array(efs[k]) - np.array(efs['official-style'])).max()):.4f}"
        print(f"{k:<40}{med:>10.2f}{base / med:>9.2f}x{dev:>11}")


if __name__ == "__main__":
    main()
