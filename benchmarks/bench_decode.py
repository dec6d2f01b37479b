"""Decode overlap: videos/s of ``predict_ef`` with loader workers vs the serial loop, on a near-free model.

With ``phantom-tiny`` (85k parameters, 16×64×64 clips) the forward pass costs almost nothing, so the run measures
the input path: opening, probing, decoding only the needed frames, the fan crop and resize, and normalisation.
Baseline, measured in the same run: ``workers=0`` (everything in the caller's process, one video after another).
Runs are interleaved and repeated; medians are printed.

Usage:
    python benchmarks/bench_decode.py [--videos 24] [--workers 2] [--repeats 3] [--size 300]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=300, help="frame side of the phantom AVIs (cropped + resized)")
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = coreecho.load_model("phantom-tiny")
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.videos):
            frames, _ = make_phantom(ef=30 + i % 40, seed=i, n_frames=args.frames, size=args.size, fps=50)
            paths.append(str(write_video(Path(tmp) / f"v{i}.avi", frames, fps=50)))
        runs = {name: (lambda w=w: model.predict_ef(paths, workers=w))
                for name, w in {"serial (workers=0)": 0, f"workers={args.workers}": args.workers}.items()}
        medians, out = interleaved(runs, args.repeats)
    base = medians["serial (workers=0)"]
    print(f"phantom-tiny, {args.videos} AVIs of {args.frames} frames {args.size}x{args.size}, 3 clips each, "
          f"repeats={args.repeats} (medians)")
    print(f"{'loop':<22}{'median s':>10}{'videos/s':>10}{'ratio':>8}")
    for k in runs:
        med = medians[k]
        print(f"{k:<22}{med:>10.2f}{args.videos / med:>10.1f}{base / med:>7.2f}x")
    same = all(np.array_equal(out[k], out["serial (workers=0)"]) for k in runs)
    print(f"identical EFs across loops: {same}")


if __name__ == "__main__":
    main()
