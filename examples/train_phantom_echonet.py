"""Train CoReEcho's two stages on synthetic phantoms in the EchoNet-Dynamic layout, on a CPU, then evaluate.

Writes ``N`` phantom echo videos with known EF (``coreecho.data.layouts.write_echonet_layout``), trains stage 1
(Rank-N-Contrast + head on detached embeddings) and stage 2 (frozen encoder, head only) with a small UniFormer,
evaluates on the test split with 3 evenly spaced clips per video, and prints MAE / RMSE / R² next to the MAE of
predicting the training mean. The defaults take about 7 minutes on 2 CPU cores (see docs/training.md).

Usage::

    python examples/train_phantom_echonet.py --out runs/phantom
    python examples/train_phantom_echonet.py --out /tmp/quick --n-train 24 --n-val 8 --n-test 8 \\
        --epochs1 1 --epochs2 1       # a smoke run of a minute or two

Example:
    >>> import subprocess, sys
    >>> subprocess.run([sys.executable, "examples/train_phantom_echonet.py", "--help"]).returncode  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="examples-out/phantom_echonet",
                   help="output folder: data, both stages, results (default: examples-out/phantom_echonet)")
    p.add_argument("--data", default=None, help="phantom dataset folder (default: OUT/data; reused if present)")
    p.add_argument("--n-train", type=int, default=240)
    p.add_argument("--n-val", type=int, default=60)
    p.add_argument("--n-test", type=int, default=60)
    p.add_argument("--preset", default="micro", help="encoder preset: micro, tiny, small, base")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--size", type=int, default=64, help="input side (phantoms are 112 px and are resized)")
    p.add_argument("--epochs1", type=int, default=40, help="stage-1 epochs")
    p.add_argument("--epochs2", type=int, default=15, help="stage-2 epochs")
    p.add_argument("--lr", type=float, default=1e-3, help="encoder learning rate (stage 1)")
    p.add_argument("--head-lr", type=float, default=1e-3, help="head learning rate (both stages)")
    p.add_argument("--decay-epoch", type=int, default=None,
                   help="lr x0.1 from this epoch in both stages (default: 3/4 of each stage's epochs)")
    p.add_argument("--batch-size", type=int, default=8, help="videos per step (stage 1: x2 views)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1 + 1 data worker suits 2 cores; more threads on a busy machine "
                        "slow small convolutions down)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the whole pipeline; returns (and prints) the summary."""
    args = parse_args(argv)
    import numpy as np
    import torch

    from coreecho.data.layouts import write_echonet_layout
    from coreecho.train import TrainConfig, evaluate, train_stage1, train_stage2

    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    began = time.perf_counter()
    n = args.n_train + args.n_val + args.n_test
    if not (data / "FileList.csv").is_file():
        write_echonet_layout(data, n, seed=args.seed, splits=(args.n_train, args.n_val, args.n_test),
                             progress=not args.no_progress)
    data_s = time.perf_counter() - began

    common = dict(data=str(data), preset=args.preset, encoder_args={"drop_rate": 0.0}, frames=args.frames,
                  stride=args.stride, size=args.size, batch_size=args.batch_size, head_lr=args.head_lr,
                  seed=args.seed, num_workers=args.workers, progress=not args.no_progress, device="cpu",
                  temperature=args.temperature, command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
    decay1 = args.decay_epoch if args.decay_epoch is not None else max(1, (3 * args.epochs1) // 4)
    decay2 = args.decay_epoch if args.decay_epoch is not None else max(1, (3 * args.epochs2) // 4)
    torch.set_num_threads(max(1, args.threads))
    t = time.perf_counter()
    s1 = train_stage1(TrainConfig(out=str(out / "stage1"), init="none", epochs=args.epochs1, lr=args.lr,
                                  lr_decay_epochs=(decay1,), **common))
    s1_s = time.perf_counter() - t
    t = time.perf_counter()
    s2 = train_stage2(TrainConfig(out=str(out / "stage2"), init=str(out / "stage1"), epochs=args.epochs2,
                                  lr_decay_epochs=(decay2,), **common))
    s2_s = time.perf_counter() - t

    from coreecho.data.echonet import EchoNetDynamic

    train_mean = float(EchoNetDynamic(data, "train").labels.mean())
    result = evaluate(s2.final_model, data, split="test", clips=3, device="cpu", baseline=train_mean,
                      output=out / "test_per_video.csv", num_workers=args.workers)
    m = result.metrics
    summary = {
        "test_mae": m["mae"], "test_rmse": m["rmse"], "test_r2": m["r2"],
        "test_mae_ci": m["mae_ci"], "test_rmse_ci": m["rmse_ci"], "test_r2_ci": m["r2_ci"], "n_test": m["n"],
        "mean_predictor_mae": result.mean_predictor_mae,
        "improvement_over_mean": result.mean_predictor_mae / m["mae"] if m["mae"] > 0 else float("inf"),
        "stage1_best_val_mae": s1.best_val_mae, "stage1_best_epoch": s1.best_epoch,
        "stage2_best_val_mae": s2.best_val_mae, "stage2_best_epoch": s2.best_epoch,
        "seconds": {"data": round(data_s, 1), "stage1": round(s1_s, 1), "stage2": round(s2_s, 1),
                    "total": round(time.perf_counter() - began, 1)},
        "config": {k: v for k, v in vars(args).items()},
        "model": str(s2.final_model), "torch_threads": torch.get_num_threads(),
        "ef_range_test": [float(np.min([r["ef_true"] for r in result.rows])),
                          float(np.max([r["ef_true"] for r in result.rows]))],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(result.summary())
    print(f"improvement over the mean predictor: {summary['improvement_over_mean']:.2f}x")
    print(f"wall time: {summary['seconds']}")
    print(f"model: {s2.final_model}; summary: {out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main()
