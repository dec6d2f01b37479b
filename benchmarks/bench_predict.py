"""CPU cost of ``predict_ef`` on one EchoNet-format video (UniFormer-S, 3 clips), and clips/s by batch size.

Baseline, measured in the same run: the official evaluation's path — decode every frame of the file, build the
three 36×4 clips, and run them through the network one clip per forward pass under ``torch.no_grad``.
Ours: ``model.predict_ef(path)`` — decode only the needed frames, one batched forward under
``torch.inference_mode``. Both are interleaved and repeated; medians are reported.

Usage:
    python benchmarks/bench_predict.py [--repeats 3] [--threads 2] [--batches 1 4 16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from coreecho import CoReEcho
from coreecho.data.phantom import make_phantom
from coreecho.video.io import write_video
from coreecho.video.transforms import normalize


def naive_predict(model: CoReEcho, path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    pre = model.config.preprocessing
    span = pre.frames * pre.stride
    if len(frames) < span:
        frames = np.concatenate([frames, np.zeros((span - len(frames),) + frames.shape[1:], np.uint8)])
    last = len(frames) - (pre.frames - 1) * pre.stride - 1
    starts = np.linspace(0, last, 3).round().astype(int)
    outs = []
    with torch.no_grad():
        for s in starts:
            clip = frames[s + pre.stride * np.arange(pre.frames)][None]
            outs.append(model(normalize(clip, pre.mean, pre.std)).item())
    return float(np.mean(outs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CoReEcho().eval().to(args.device)
    frames, meta = make_phantom(ef=55, seed=0, n_frames=180)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(Path(tmp) / "video.avi", frames, fps=meta.fps)
        model.predict_ef(str(path))  # warm-up
        naive_predict(model, path)
        t_ours, t_naive = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ours = model.predict_ef(str(path))
            t_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            base = naive_predict(model, path)
            t_naive.append(time.perf_counter() - t0)
        m_ours, m_naive = statistics.median(t_ours), statistics.median(t_naive)
        print(f"device={args.device} threads={args.threads} video={len(frames)} frames 112x112, 3 clips of 36x4")
        print(f"{'path':<34}{'median s':>10}")
        print(f"{'naive (decode all, 1 clip/pass)':<34}{m_naive:>10.3f}")
        print(f"{'coreecho predict_ef':<34}{m_ours:>10.3f}")
        print(f"speed-up: {m_naive / m_ours:.2f}x   (EF ours {ours:.3f}, naive {base:.3f})")

        print(f"\n{'batch':>6}{'clips/s':>10}{'s/batch':>10}")
        for b in args.batches:
            x = torch.randn(b, 3, 36, 112, 112, device=args.device)
            with torch.inference_mode():
                model.encoder(x)
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    model.encoder(x)
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            print(f"{b:>6}{b / med:>10.2f}{med:>10.3f}")


if __name__ == "__main__":
    main()
