"""Benchmark: the official three 36x4 test clips of EchoNet-style AVIs.

ours     : ``coreecho.video.clips.read_clips`` - probe the packet index, decode only the frames the three clips
           need (PyAV, packet-level selection for intra-only MJPEG), assemble the clips.
naive    : decode every frame with the usual PyAV idiom (``frame.to_ndarray(format="rgb24")``), stack,
           zero-pad to 144 frames if shorter, then slice the clips.
full-ours: our PyAV reader decoding every frame, then slicing (isolates the selective-decoding gain).
naive-dc : the same naive approach with decord (``get_batch`` of every frame, then slice).
ours-dc  : ``read_clips(..., backend="decord")``.

Videos are phantoms (``coreecho.data.phantom``) of ~200 frames written as MJPEG AVIs at 112x112, like
EchoNet-Dynamic's. Methods run interleaved (rotating order), several repeats; medians are reported.

Run: ``PYTHONPATH=. python3 benchmarks/bench_io.py [--videos 6] [--frames 200] [--repeats 9]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from coreecho.data.phantom import make_phantom
from coreecho.video import test_starts, write_video
from coreecho.video.clips import read_clips

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _official_loader import read_all_frames  # noqa: E402

FRAMES, STRIDE = 36, 4


def naive_pyav(path: str, starts: list[int]) -> np.ndarray:
    """Decode everything with PyAV, then slice."""
    return _slice(read_all_frames(path), starts)


def naive_decord(path: str, starts: list[int]) -> np.ndarray:
    """Decode everything with decord, then slice."""
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    video = vr.get_batch(list(range(len(vr)))).asnumpy()
    return _slice(video, starts)


def _slice(video: np.ndarray, starts: list[int]) -> np.ndarray:
    if len(video) < FRAMES * STRIDE:
        pad = np.zeros((FRAMES * STRIDE - len(video),) + video.shape[1:], video.dtype)
        video = np.concatenate([video, pad])
    return np.stack([video[s + STRIDE * np.arange(FRAMES)] for s in starts])


def ours(path: str, starts: list[int]) -> np.ndarray:
    return read_clips(path, starts, frames=FRAMES, stride=STRIDE)[0]


def full_ours(path: str, starts: list[int]) -> np.ndarray:
    """Our reader decoding every frame, then slicing: isolates the gain of decoding only needed frames."""
    from coreecho.video import read_video
    from coreecho.video.clips import extract_clips

    return extract_clips(read_video(path).frames, starts, FRAMES, STRIDE)


def ours_decord(path: str, starts: list[int]) -> np.ndarray:
    return read_clips(path, starts, frames=FRAMES, stride=STRIDE, backend="decord")[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()

    methods = {"ours": ours, "naive": naive_pyav, "full-ours": full_ours}
    try:
        import decord  # noqa: F401

        methods.update({"ours-dc": ours_decord, "naive-dc": naive_decord})
    except ImportError:
        print("decord not installed: decord rows skipped")

    with tempfile.TemporaryDirectory() as tmp:
        videos = []
        for i in range(args.videos):
            frames, meta = make_phantom(ef=20 + 10 * i, seed=i, n_frames=args.frames)
            path = str(write_video(Path(tmp) / f"v{i}.avi", frames, fps=meta.fps))
            videos.append((path, test_starts(meta.n_frames, FRAMES, STRIDE, clips=3)))
        # same output from every method
        for path, starts in videos:
            ref = methods["naive"](path, starts)
            for name, fn in methods.items():
                out = fn(path, starts)
                assert out.shape == ref.shape, (name, out.shape, ref.shape)
                assert np.abs(out.astype(int) - ref).max() <= 1, name
        for fn in methods.values():  # warm-up
            fn(*videos[0])
        times: dict[str, list[float]] = {k: [] for k in methods}
        names = list(methods)
        for rep in range(args.repeats):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                t0 = time.perf_counter()
                for path, starts in videos:
                    methods[name](path, starts)
                times[name].append((time.perf_counter() - t0) / len(videos))

    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    needed = len(set(np.concatenate([s + STRIDE * np.arange(FRAMES) for s in videos[0][1]]).tolist()))
    print(f"{args.videos} phantom AVIs, {args.frames} frames, 112x112 MJPEG; 3 clips x {FRAMES} frames at stride "
          f"{STRIDE} ({needed} unique frames needed); {args.repeats} interleaved repeats, median ms per video")
    for k in names:
        print(f"  {k:9s} {med[k]:8.2f} ms")
    print(f"ratio naive / ours (PyAV): {med['naive'] / med['ours']:.2f}x")
    print(f"ratio full-ours / ours (selective decoding alone): {med['full-ours'] / med['ours']:.2f}x")
    if "naive-dc" in med:
        print(f"ratio naive-dc / ours (decord naive vs our default): {med['naive-dc'] / med['ours']:.2f}x")
        print(f"ratio naive-dc / ours-dc (both decord): {med['naive-dc'] / med['ours-dc']:.2f}x")


if __name__ == "__main__":
    main()
