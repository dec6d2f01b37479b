"""Reproduce ``phantom-tiny``, the small model bundled with coreecho, from scratch on a CPU.

It runs ``examples/train_phantom_echonet.py`` (both CoReEcho stages on synthetic phantoms in the EchoNet-Dynamic
layout) with the recorded settings below, measures the result on fresh phantoms with EF 15–80 % (seeds never used
in training), writes the model card, and — with ``--install`` — replaces the copy inside the package
(``coreecho/weights/phantom-tiny``). About 10 minutes on 2 CPU cores.

Usage::

    python examples/train_phantom.py             # train and check, in examples-out/phantom-tiny
    python examples/train_phantom.py --install   # ... and update the bundled copy (maintainers)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
from pathlib import Path

#: The exact arguments of the training run behind the bundled model.
RECIPE = ["--n-train", "480", "--n-val", "60", "--n-test", "100", "--preset", "micro", "--frames", "16",
          "--stride", "4", "--size", "64", "--epochs1", "40", "--epochs2", "15", "--lr", "1e-3", "--head-lr", "1e-3",
          "--batch-size", "8", "--temperature", "1.0", "--seed", "7", "--threads", "1", "--workers", "1"]

HERE = Path(__file__).resolve().parent
BUNDLED = HERE.parent / "coreecho" / "weights" / "phantom-tiny"

DESCRIPTION = ("phantom-tiny: a micro UniFormer (85k parameters, 16 frames at stride 4, 64 px) trained with "
               "coreecho's two CoReEcho stages on SYNTHETIC phantom echoes only. For demos, tests and tutorials; "
               "it has never seen a real echocardiogram. Not for clinical use.")


def _train_module():
    spec = importlib.util.spec_from_file_location("train_phantom_echonet", HERE / "train_phantom_echonet.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def finalize(model_dir: Path, out: Path, summary: dict, command: str, target: Path) -> dict:
    """Benchmark the trained model on fresh phantoms and save it with provenance and a model card."""
    from coreecho import load_model
    from coreecho.data.phantom_benchmark import phantom_benchmark

    model = load_model(model_dir, device="cpu")
    bench = phantom_benchmark(model, n=60)
    model.config.license = "MIT"
    model.config.metadata.update({
        "description": DESCRIPTION,
        "training_data": "synthetic phantoms from coreecho.data.phantom (write_echonet_layout seed 7: 480 train, "
                         "60 val, 100 test videos, EF 10-85 %)",
        "command": command,
        "seed": 7,
        "test_metrics": {k: summary.get(k) for k in ("test_mae", "test_rmse", "test_r2", "mean_predictor_mae")},
        "fresh_phantom_benchmark": {"n": 60, "ef_range": [15, 80], "mae": bench["mae"], "rmse": bench["rmse"],
                                    "max_error": bench["max_error"], "first_seed": bench["seeds"][0]},
    })
    model.save_pretrained(target, title="phantom-tiny (synthetic data only — not for clinical use)",
                          description=DESCRIPTION, training_data=model.config.metadata["training_data"],
                          repo_id="phantom-tiny")
    (out / "phantom_benchmark.json").write_text(json.dumps(bench, indent=2))
    return bench


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="examples-out/phantom-tiny",
                   help="output folder (default: examples-out/phantom-tiny)")
    p.add_argument("--install", action="store_true", help=f"replace the bundled model in {BUNDLED}")
    p.add_argument("--from-run", default=None, help="skip training: finalize an existing run folder")
    args = p.parse_args(argv)
    out = Path(args.from_run or args.out)
    command = "python examples/train_phantom.py  # = train_phantom_echonet.py " + shlex.join(RECIPE)
    if not args.from_run:
        _train_module().main(["--out", str(out), "--no-progress", *RECIPE])
    summary = json.loads((out / "summary.json").read_text())
    target = BUNDLED if args.install else out / "phantom-tiny"
    bench = finalize(Path(summary["model"]), out, summary, command, target)
    print(f"phantom-tiny: test MAE {summary['test_mae']:.2f} (EchoNet-layout test split); fresh phantoms EF 15-80: "
          f"MAE {bench['mae']:.2f}, RMSE {bench['rmse']:.2f}, max error {bench['max_error']:.2f}; saved to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
