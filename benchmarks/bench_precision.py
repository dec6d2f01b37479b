"""EF deviation of bf16/fp16 autocast from fp32, per video, on phantoms (and the time of each mode).

Baseline, measured in the same run: the fp32 forward. For each model, each phantom video goes through the model's
own pipeline (``model.pipeline()(video).x``, the default test clips) and :func:`coreecho.engine.mixed_forward`
(the encoder under autocast, the head in fp32: the recommended way); rows ``bf16-all``/``fp16-all`` run the whole
``model(x)`` under :func:`coreecho.precision.autocast_context` for contrast (the head's output is then rounded to
bf16, whose spacing is 0.25 between 32 and 64). A video's EF is the mean over its clips, as in ``predict_ef``.
Models:

* ``phantom-tiny``: the bundled model (64 px, 16 frames), trained on phantoms;
* ``uniformer-s-random``: an official-format UniFormer-S + head, random weights from ``torch.manual_seed(seed)``;
* ``uniformer-s-sinfill``: the official UniFormer-S with the deterministic "sinfill" weights of the test fixtures
  (``tests/fixtures``; larger activations than a fresh init, so a harsher test of half precision) and the
  fixtures' official regressor; skipped when the fixtures are absent.

Usage:
    python benchmarks/bench_precision.py [--videos 20] [--models phantom-tiny uniformer-s-random] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import coreecho
from coreecho import CoReEcho
from coreecho.data.phantom import make_phantom
from coreecho.engine import mixed_forward
from coreecho.precision import autocast_context, cpu_supports_bf16, cpu_supports_fp16


def build(name: str, seed: int) -> CoReEcho | None:
    if name == "phantom-tiny":
        return coreecho.load_model("phantom-tiny").eval()
    torch.manual_seed(seed)
    model = CoReEcho().eval()
    if name == "uniformer-s-random":
        return model
    if name == "uniformer-s-sinfill":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        try:
            from official import FIXTURES, official_encoder_state, official_regressor_state
        except ImportError:
            return None
        if not FIXTURES.exists():
            return None
        enc = {k: v for k, v in official_encoder_state().items() if not k.startswith("head.")}
        model.encoder.load_state_dict(enc, strict=True)
        model.head.load_state_dict(official_regressor_state(), strict=True)
        return model
    raise SystemExit(f"unknown model {name!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["phantom-tiny", "uniformer-s-random", "uniformer-s-sinfill"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    modes = ["fp32"] + (["bf16", "bf16-all"] if cpu_supports_bf16() else []) + \
        (["fp16", "fp16-all"] if cpu_supports_fp16() else [])
    print(f"{args.videos} phantoms (seeds 0..{args.videos - 1}, EF drawn 10-85), {args.threads} thread(s), "
          f"torch {torch.__version__}; modes {modes}")
    print(f"{'model':<22}{'mode':<9}{'max |dEF|':>10}{'mean |dEF|':>11}{'max |dclip|':>12}"
          f"{'EF range (fp32)':>18}{'s/clip':>8}{'speed-up':>9}")
    for name in args.models:
        model = build(name, args.seed)
        if model is None:
            print(f"{name:<22}skipped (fixtures not found)")
            continue
        pipe = model.pipeline()
        clips = [pipe(make_phantom(seed=i, size=112)[0]).x for i in range(args.videos)]
        with torch.inference_mode():
            model(clips[0][:1])  # warm-up
        efs: dict[str, list[np.ndarray]] = {m: [] for m in modes}
        times: dict[str, list[float]] = {m: [] for m in modes}
        for x in clips:  # modes interleaved per video
            for mode in modes:
                t0 = time.perf_counter()
                with torch.inference_mode():
                    if mode.endswith("-all"):
                        with autocast_context(mode[:4], "cpu"):
                            out = model(x).float()
                    else:
                        out = mixed_forward(model, x, mode, "cpu")[1]
                times[mode].append((time.perf_counter() - t0) / len(x))
                efs[mode].append(out.double().numpy())
        ref_clip = np.concatenate(efs["fp32"])
        ref = np.array([e.mean() for e in efs["fp32"]])
        t_ref = statistics.median(times["fp32"])
        for mode in modes:
            clip = np.concatenate(efs[mode])
            video = np.array([e.mean() for e in efs[mode]])
            d = np.abs(video - ref)
            t = statistics.median(times[mode])
            print(f"{name:<22}{mode:<9}{d.max():>10.3f}{d.mean():>11.3f}{np.abs(clip - ref_clip).max():>12.3f}"
                  f"{f'{ref.min():.1f}-{ref.max():.1f}':>18}{t:>8.3f}{t_ref / t:>8.2f}x")


if __name__ == "__main__":
    main()
