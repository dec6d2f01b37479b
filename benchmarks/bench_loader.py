"""Input pipeline per core: the stage-1 dataset, the inference engine's preparation, and CPU clips/s end to end.

All on phantom AVIs in EchoNet-Dynamic's layout (112×112 MJPEG, 50 fps, 120–200 frames, written by
:func:`coreecho.data.phantom.write_echonet_layout`), one process, ``torch.set_num_threads(threads)`` (default 1:
one core), against the official-style loader of ``_official_loader.py`` on the same files, measured in the same
run. Every table interleaves its runs (each run once to warm up, then ``--repeats`` rounds in turn) and prints
medians and the ratio to the baseline.

1. **Stage-1 dataset, items/s per core**: :class:`coreecho.data.echonet.EchoNetDynamic` (``views=2,
   augment=True``: two random clips of 36 frames, each padded and randomly cropped back to 112 px) as the training
   loop uses it, handing over uint8 clips and the crop offsets it drew (``handover="pixels"``; the step makes the
   model input on the device), also with the CPU's share of the model input (``batch_clips`` on the CPU) and in 0.2's
   format (``handover="tensor"``: float32, normalised in the worker), against the official-style ``EchoNetRNC`` item
   (two full reads of the video, whole-video decode to float32, albumentations-style pad to 124 and random 112 crop
   frame by frame, normalisation on the CPU). It checks that the uint8 items give the float items' tensors exactly.
2. **Inference preparation, CPU ms per clip** (three evenly spaced clips per test video): the parts of coreecho's
   path timed through public calls — decode (``model.pipeline().open(path).read(frames)``: only the frames the
   clips need), transform (``pipeline.transform``: fan crop and resize, a pass-through for 112 px frames, plus
   gathering the clips), handover (moving the item's uint8 clips into shared memory as the engine's loader
   workers do, ``coreecho.engine.items.share_clips``, and reading every page once on the other side; the
   official-style and 0.2 rows move theirs as a DataLoader's pickler does), model input (``to_model_input`` of the handed-over
   uint8 into one preallocated float32 batch, as the engine does where the model runs) — and the whole worker side
   (``coreecho.engine.VideoItems(...)[i]``), with 0.2's float64 normalisation and float32 handover in the same
   rounds, against the official-style test item (whole decode to float32, slice, normalise) and its own handover.
3. **End to end, clips/s on the CPU**: ``coreecho.predict_ef(paths, starts=..., precision=...)`` in fp32 and bf16
   (bf16 only where the CPU has native bf16), ``workers=0`` (one process), UniFormer-S with seeded random weights,
   against ``bench_predict.official_style`` (whole decode, one clip per pass, fp32, the research code's order of
   operations). The two run in one process here, so the baseline also gets the allocator setting the engine makes
   (``coreecho.allocator``): its ratio is, if anything, understated (``bench_predict.py`` separates them).

Usage:
    python benchmarks/bench_loader.py                 # about 1-2 minutes on 2 idle cores
    python benchmarks/bench_loader.py --quick         # smoke run (seconds)
    python benchmarks/bench_loader.py --items 24 --repeats 7 --threads 1
    python benchmarks/bench_loader.py --clock wall      # sections 1-2 in wall time instead of CPU time
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import coreecho
from coreecho.data.echonet import EchoNetDynamic
from coreecho.data.layouts import write_echonet_layout
from coreecho.engine import VideoItems
from coreecho.engine.items import share_clips
from coreecho.data.pipelined import batch_clips
from coreecho.video import test_starts
from coreecho.video.model_input import normalize_reference, to_model_input
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _official_loader import OfficialStage1Dataset, official_test_clips  # noqa: E402
from _timing import interleaved, machine_note  # noqa: E402
from bench_predict import official_style  # noqa: E402


#: Clock of sections 1 and 2 (``--clock``): this process's CPU time, or wall time.
CLOCK = time.process_time


def _table(title: str, unit: str, rows: dict[str, float], base: str, per: float = 1.0) -> None:
    """Print ``rows`` (median seconds for ``per`` units each) with the ratio to ``base`` (higher = faster)."""
    print(f"\n{title}")
    print(f"| run | {unit} | vs baseline |")
    print("|---|---:|---:|")
    for name, seconds in rows.items():
        value = per / seconds if "/s" in unit else 1000.0 * seconds / per
        print(f"| {name} | {value:.2f} | {rows[base] / seconds:.2f}× |")


def stage1_section(root: Path, repeats: int) -> None:
    ds = EchoNetDynamic(root, "train", views=2, augment=True, seed=0)
    pre = ds.preprocess
    padded = pre.size + (pre.pad if pre.pad_style == "coreecho" else 2 * pre.pad)
    official = OfficialStage1Dataset([r.path for r in ds.records], ds.labels, frames=pre.frames,
                                      stride=pre.stride, size=pre.size, padded=padded, mean=pre.mean, std=pre.std)
    n = len(ds)

    def ours(handover: str, on_cpu: bool = False) -> Callable[[], Any]:
        def run() -> Any:
            ds.handover = handover
            items = [ds[i] for i in range(n)]
            if on_cpu:  # each item's share of the step's model input made on the CPU (a CPU-only run's whole cost)
                return [tuple(batch_clips(default_collate([it]), "cpu").shape[1:]) for it in items][0]
            return tuple(items[0]["video" if handover == "tensor" else "pixels"].shape)
        return run

    def theirs() -> Any:
        return [tuple(np.stack([v["image"] for v in official[i]]).shape) for i in range(n)][0]

    runs = {"official-style EchoNetRNC item (baseline)": theirs,
            "coreecho 0.2 item: float32, normalised in the worker (handover='tensor')": ours("tensor"),
            "coreecho training item: uint8 + crop offsets (handover='pixels')": ours("pixels"),
            "coreecho uint8 item + model input made on the CPU (batch_clips)": ours("pixels", True)}
    medians, shapes = interleaved(runs, repeats, CLOCK)
    _table(f"1. Stage-1 dataset, {n} items of 2 views x {pre.frames} frames x {pre.size} px, one core", "items/s",
           medians, "official-style EchoNetRNC item (baseline)", per=n)
    ds.handover = "tensor"
    same = torch.equal(torch.stack([ds[i]["video"] for i in range(2)]),
                       batch_clips(default_collate([_with(ds, "pixels", i) for i in range(2)]), "cpu"))
    print(f"uint8 items give the float items' tensors bit for bit (torch.equal): {same}")
    print("item shapes: " + "; ".join(f"{k}: {v}" for k, v in shapes.items()))


def _with(ds: EchoNetDynamic, handover: str, i: int) -> dict[str, Any]:
    ds.handover = handover
    try:
        return ds[i]
    finally:
        ds.handover = "tensor"


def _torch_share(t: torch.Tensor) -> torch.Tensor:
    """What a DataLoader's pickler does with a tensor: a new shared-memory file, mapped, the tensor copied in."""
    shared = torch.empty_strided(t.size(), t.stride(), dtype=t.dtype).share_memory_()
    return shared.copy_(t)


def handover(tensors: list[torch.Tensor], share: Callable[[torch.Tensor], torch.Tensor] = _torch_share) -> int:
    """Copy ``tensors`` into new shared memory and read every page of it once: the handover of a DataLoader worker
    (its pickler or collate writes the item into shared memory, in the item's own memory layout; the main process
    then touches it). ``share``: torch's way (the default), or coreecho's loader workers'
    (:func:`coreecho.engine.items.share_clips`, written into the file, then mapped: the read here takes the page
    faults the other process would). Returns the bytes handed over."""
    total = 0
    for t in tensors:
        shared = share(t)
        flat = torch.empty(0, dtype=t.dtype).set_(shared.untyped_storage())
        float(flat[:: max(1, 4096 // t.element_size())].sum())
        total += shared.untyped_storage().nbytes()
    return total


def prep_section(model: coreecho.CoReEcho, paths: list[str], n_frames: list[int], repeats: int) -> None:
    pipe = model.pipeline()
    pre = model.config.preprocessing
    starts = [test_starts(n, pre.frames, pre.stride, clips=3) for n in n_frames]
    clips = sum(len(s) for s in starts)
    items = VideoItems(paths, pipe, starts=starts)

    def needed(n: int, st: list[int]) -> np.ndarray:
        idx = np.unique(np.concatenate([s + pre.stride * np.arange(pre.frames) for s in st]))
        return idx[idx < n]

    def decode() -> list[np.ndarray]:
        out = []
        for path, n, st in zip(paths, n_frames, starts):
            reader = pipe.open(path)
            try:
                out.append(reader.read(needed(n, st)))
            finally:
                reader.close()
        return out

    decoded = decode()

    def transform() -> list[np.ndarray]:
        out = []
        for frames, n, st in zip(decoded, n_frames, starts):
            frames = pipe.transform(frames)
            rows = np.searchsorted(needed(n, st), [s + pre.stride * np.arange(pre.frames) for s in st])
            padded = np.concatenate([frames, np.zeros((1,) + frames.shape[1:], frames.dtype)])  # end padding
            out.append(padded[rows])  # frames past the end (rows == len(frames)) read the zero frame
        return out

    pixels = transform()
    same = all(np.array_equal(px, pipe(p, st).pixels) for px, p, st in zip(pixels, paths, starts))
    worker_items = [items[i] for i in range(len(items))]
    floats = [normalize_reference(p, pre.mean, pre.std) for p in pixels]
    batch = torch.empty((clips, 3, pre.frames, pre.size, pre.size))

    def model_input() -> torch.Tensor:  # what the engine does with the uint8 items: one pass into its batch
        row = 0
        for it in worker_items:
            to_model_input(it.x, *it.norm, out=batch[row:row + len(it.x)])
            row += len(it.x)
        return batch

    exact = torch.equal(model_input(), torch.cat(floats))

    def official() -> list[np.ndarray]:
        return [official_test_clips(p, st, frames=pre.frames, stride=pre.stride, mean=pre.mean, std=pre.std)
                for p, st in zip(paths, starts)]

    official_items = [torch.from_numpy(c) for c in official()]
    runs: dict[str, Callable[[], Any]] = {
        "official-style: whole decode to float32, slice, normalise (baseline)": official,
        "official-style handover (float32 into shared memory)": lambda: handover(official_items),
        "coreecho 0.2 normalise (float64 arithmetic in the worker)": lambda: [
            normalize_reference(p, pre.mean, pre.std) for p in pixels],
        "coreecho 0.2 handover (float32 clips into shared memory)": lambda: handover(floats),
        "coreecho decode (only the needed frames)": decode,
        "coreecho transform (fan crop/resize, gather clips)": transform,
        "coreecho handover (the item's uint8 clips into shared memory)": lambda: handover(
            [it.x for it in worker_items], share_clips),
        "coreecho model input (uint8 -> normalised float32 batch, where the model runs)": model_input,
        "coreecho worker side, whole (VideoItems[i])": lambda: [items[i] for i in range(len(items))],
    }
    medians, results = interleaved(runs, repeats, CLOCK)
    base = "official-style: whole decode to float32, slice, normalise (baseline)"
    _table(f"2. Inference preparation, {len(paths)} videos x 3 clips of {pre.frames} frames, {pre.size} px, one "
           "core", "ms / clip", medians, base, per=clips)
    parts = sum(medians[k] for k in runs if k.startswith("coreecho") and "whole" not in k and "0.2" not in k)
    whole = sum(medians[k] for k in runs if k.startswith("coreecho") and ("whole" in k or "uint8 clips" in k
                                                                          or "model input" in k))
    print(f"coreecho parts together: {1000 * parts / clips:.2f} ms / clip (decode + transform + handover + model "
          f"input); worker side + handover + model input: {1000 * whole / clips:.2f} ms / clip; "
          f"model input bit-identical to the 0.2 float path: {exact}; baseline with its handover: "
          f"{1000 * (medians[base] + medians['official-style handover (float32 into shared memory)']) / clips:.2f}"
          " ms / clip")
    ours_bytes = results["coreecho handover (the item's uint8 clips into shared memory)"] / clips
    theirs_bytes = results["official-style handover (float32 into shared memory)"] / clips
    print(f"decode + transform reproduce the pipeline's uint8 clips: {same}")
    print(f"bytes handed over per clip: coreecho {ours_bytes / 2**20:.2f} MiB "
          f"({worker_items[0].x.dtype}), official-style {theirs_bytes / 2**20:.2f} MiB (float32)")


def _float_items(call: Callable[[], Any]) -> Any:
    """Run ``call`` with the engine's items in 0.2's format: normalised to float32 where they are decoded (the
    float64 arithmetic of ``normalize_reference``), the engine copying them in as they are."""
    real = VideoItems.__getitem__

    def float_item(self: VideoItems, index: int) -> Any:
        item = real(self, index)
        if item.x is not None and item.norm is not None:
            item.x, item.norm = normalize_reference(item.x, *item.norm), None
        return item

    VideoItems.__getitem__ = float_item
    try:
        return call()
    finally:
        VideoItems.__getitem__ = real


def end_to_end_section(model: coreecho.CoReEcho, paths: list[str], n_frames: list[int], repeats: int) -> None:
    from coreecho.precision import cpu_supports_bf16

    pre = model.config.preprocessing
    starts = [test_starts(n, pre.frames, pre.stride, clips=3) for n in n_frames]
    clips = sum(len(s) for s in starts)
    base = "official-style loop, fp32 (baseline)"
    runs: dict[str, Callable[[], Any]] = {base: lambda: official_style(model, [Path(p) for p in paths], starts)}
    for precision in ["fp32"] + (["bf16"] if cpu_supports_bf16() else []):
        runs[f"coreecho.predict_ef {precision}, workers=0"] = lambda p=precision: coreecho.predict_ef(
            paths, starts=starts, model=model, precision=p, workers=0)
    if cpu_supports_bf16():  # the same call with 0.2's item format, in the same rounds: before/after in one run
        runs["coreecho.predict_ef bf16, workers=0, 0.2 float items"] = lambda: _float_items(
            lambda: coreecho.predict_ef(paths, starts=starts, model=model, precision="bf16", workers=0))
    medians, efs = interleaved(runs, repeats)
    _table(f"3. End to end on the CPU, {len(paths)} videos x 3 clips, UniFormer-S (random weights)", "clips/s",
           medians, base, per=clips)
    for name, ef in efs.items():
        print(f"max |EF - baseline EF| {name}: {float(np.max(np.abs(np.asarray(ef) - np.asarray(efs[base])))):.4f}")
    if "coreecho.predict_ef bf16, workers=0" not in runs:
        print("bf16 row skipped: this CPU has no native bf16 (coreecho.precision.cpu_supports_bf16)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16, help="stage-1 items (training videos)")
    parser.add_argument("--videos", type=int, default=4, help="test videos for sections 2 and 3 (3 clips each)")
    parser.add_argument("--e2e-videos", type=int, default=2, help="test videos of section 3 (a subset)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--e2e-repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: per core, as a loader worker)")
    parser.add_argument("--sections", default="123", help="which sections to run, e.g. 12")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts, one round")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="sections 1-2: this process's CPU time (default; less inflated by other processes on "
                             "the cores) or wall time; section 3 is always wall time")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.quick:
        args.items, args.videos, args.e2e_videos, args.repeats, args.e2e_repeats = 3, 1, 1, 1, 1
    warnings.simplefilter("ignore")  # short phantoms warn that they are zero-padded, as the official code pads them
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} torch thread(s); sections 1-2 timed in {args.clock} time; "
          f"before: {machine_note()}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = write_echonet_layout(root, args.items + args.videos, seed=0, splits=(args.items, 0, args.videos),
                                    n_frames=(120, 200), fps=50, progress=False)
        test = [r for r in rows if r["Split"] == "TEST"]
        paths, n_frames = [r["path"] for r in test], [int(r["NumberOfFrames"]) for r in test]
        if "1" in args.sections:
            stage1_section(root, args.repeats)
        if "2" in args.sections or "3" in args.sections:
            model = coreecho.CoReEcho().eval()
            if "2" in args.sections:
                prep_section(model, paths, n_frames, args.repeats)
            if "3" in args.sections:
                k = min(args.e2e_videos, len(paths))
                end_to_end_section(model, paths[:k], n_frames[:k], args.e2e_repeats)
    print(f"\nafter: {machine_note()}; whole run {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
