"""End to end (decode → EF) on EchoNet-format AVIs with fixed starts: coreecho's engine vs an official-style loop.

Setting of the issue "A fast inference engine": 9 videos of 112×112 (MJPEG AVI, 50 fps, 120–200 frames) with three
fixed starts each (27 clips, as the official ``test_start_indexes.pkl``), an official-format UniFormer-S (random
but seeded weights: speed does not depend on them).

* **official-style** (the baseline, measured in the same run): for every video decode every frame with PyAV, build
  the clips, normalise, and run one clip per forward pass in fp32 under ``torch.no_grad``.
* **official-style, 0.1 fwd**: the same loop with the forward of coreecho 0.1 (contiguity copies after every
  stage), for reference: closer to what the research code costs, but not its code.
* **coreecho fp32 / bf16**: ``coreecho.predict_ef(paths, starts=..., model=model)`` with its defaults (batch policy,
  loader workers), and with ``precision="bf16"`` (skipped where the CPU has no native bf16).

Runs are interleaved and repeated; medians are printed with the ratio to the baseline and the EF deviation of each
mode from the official-style EFs.

Usage:
    python benchmarks/bench_predict.py [--repeats 3] [--threads 2] [--videos 9]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import coreecho
from coreecho.data.phantom import make_phantom
from coreecho.video.io import write_video
from coreecho.video.transforms import normalize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved  # noqa: E402


def official_style(model: coreecho.CoReEcho, paths: list[Path], starts: list[list[int]]) -> np.ndarray:
    """Decode every frame, pad, one clip per forward pass, fp32: the research code's evaluation loop."""
    import av

    pre = model.config.preprocessing
    efs = []
    for path, st in zip(paths, starts):
        with av.open(str(path)) as container:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        span = pre.frames * pre.stride
        if len(frames) < span:
            frames = np.concatenate([frames, np.zeros((span - len(frames),) + frames.shape[1:], np.uint8)])
        outs = []
        with torch.no_grad():
            for s in st:
                clip = frames[s + pre.stride * np.arange(pre.frames)][None]
                outs.append(model(normalize(clip, pre.mean, pre.std)).item())
        efs.append(float(np.mean(outs)))
    return np.array(efs)


def make_videos(root: Path, n: int, seed: int = 0) -> tuple[list[Path], list[list[int]]]:
    rng = np.random.default_rng(seed)
    paths, starts = [], []
    for i in range(n):
        length = int(rng.integers(120, 201))
        frames, meta = make_phantom(ef=float(rng.uniform(20, 75)), seed=seed * 1000 + i, n_frames=length, fps=50)
        paths.append(write_video(root / f"v{i}.avi", frames, fps=50))
        last = max(length, 144) - 35 * 4 - 1
        starts.append(sorted(int(v) for v in rng.integers(0, last + 1, 3)))
    return paths, starts


def main() -> None:
    from coreecho.precision import cpu_supports_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--videos", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = coreecho.CoReEcho().eval()
    modes = ["fp32"] + (["bf16"] if cpu_supports_bf16() else [])
    with tempfile.TemporaryDirectory() as tmp:
        paths, starts = make_videos(Path(tmp), args.videos)
        strs = [str(p) for p in paths]
        ours = {m: lambda m=m: coreecho.predict_ef(strs, starts=starts, model=model, precision=m) for m in modes}
        from coreecho.models.uniformer import always_contiguous

        def official_v01() -> np.ndarray:
            with always_contiguous():
                return official_style(model, paths, starts)

        runs = {"official-style": lambda: official_style(model, paths, starts), "official-style, 0.1 fwd": official_v01,
                **ours}
        medians, efs = interleaved(runs, args.repeats)
    base = medians["official-style"]
    print(f"{args.videos} videos 112x112, {3 * args.videos} clips of 36x4, UniFormer-S, torch threads={args.threads}, "
          f"repeats={args.repeats} (medians)")
    print(f"{'path':<22}{'median s':>10}{'speed-up':>10}{'max |dEF|':>11}")
    for k in runs:
        med = medians[k]
        dev = float(np.abs(efs[k] - efs["official-style"]).max())
        print(f"{k:<22}{med:>10.2f}{base / med:>9.2f}x{dev:>11.4f}")


if __name__ == "__main__":
    main()
