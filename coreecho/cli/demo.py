"""``coreecho demo``: the whole pipeline on a synthetic echo, offline, in seconds.

It generates a phantom apical-four-chamber cine with a known EF, writes it as an AVI, predicts its EF with the
bundled ``phantom-tiny`` model (trained on phantoms only — not for clinical use), prints true vs predicted EF
with the per-clip values and timings, and saves a PNG figure: a frame with the traced LV outline, the LV area
over time, and the per-clip EFs.

Example:
    $ coreecho demo --ef 35 --seed 7 --output-dir demo-out
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from coreecho.cli import _common as common

__all__ = ["run_demo", "plot_demo", "add_demo", "run_demo_command", "EF_RANGE"]

#: True EF of the phantoms the demo can generate (the phantom's anatomy is built for this range).
EF_RANGE = (10.0, 85.0)


def plot_demo(path: Path, frames: Any, meta: Any, pred: Any, clip_frames: int, stride: int) -> Path:
    """Save the demo figure (needs matplotlib: the ``viz`` or ``dev`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1, 1.6, 1]})
    ed = meta.traced_frames[0]
    axes[0].imshow(frames[ed], cmap="gray")
    for x1, y1, x2, y2 in meta.tracings[ed]:
        axes[0].plot([x1, x2], [y1, y2], color="tab:orange", lw=0.8)
    axes[0].set_title(f"end-diastole (frame {ed}, {ed / meta.fps:.2f} s)\nwith the LV tracing (orange)", fontsize=10)
    axes[0].axis("off")

    t = np.arange(meta.n_frames) / meta.fps
    axes[1].plot(t, meta.lv_area, color="tab:blue", lw=1.5, label="LV area")
    low, high = float(np.min(meta.lv_area)), float(np.max(meta.lv_area))
    step = 0.06 * (high - low)
    for k, s in enumerate(pred.starts):
        sampled = s + stride * np.arange(clip_frames)
        sampled = sampled[sampled < meta.n_frames]
        y = low - (k + 1) * step
        axes[1].plot(sampled / meta.fps, np.full(len(sampled), y), "|", color=f"C{(k + 2) % 10}", ms=6,
                     label=f"frames of clip {k + 1}" if k < 6 else None)
    axes[1].set_xlabel("time (s)")
    axes[1].set_ylabel("LV area (pixels²)")
    axes[1].set_title(f"LV area over time (true EF {meta.ef:.1f}%)\nand the frames each clip samples", fontsize=10)
    # Below the axes: a legend inside would cover a systolic peak or a row of clip ticks.
    axes[1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=4, fontsize=8, frameon=False)

    idx = np.arange(1, len(pred.clip_efs) + 1)
    bars = axes[2].bar(idx, pred.clip_efs, color=[f"C{(k + 2) % 10}" for k in range(len(idx))], width=0.6)
    axes[2].bar_label(bars, labels=[f"{v:.1f}" for v in pred.clip_efs], label_type="center", color="white",
                      fontsize=9, fontweight="bold")
    if getattr(pred, "ef_low", None) is not None:  # the model's calibrated interval, behind the lines
        axes[2].axhspan(pred.ef_low, pred.ef_high, color="0.6", alpha=0.35, zorder=0, lw=0,
                        label=f"{100 * pred.coverage:.0f}% interval {pred.ef_low:.1f}-{pred.ef_high:.1f}%")
    # The predicted (mean) line is drawn first and wide, the true line dashed on top of it, so both stay
    # visible when they coincide.
    axes[2].axhline(pred.ef, color="black", lw=2.2, zorder=3, label=f"predicted (mean) {pred.ef:.1f}%")
    axes[2].axhline(meta.ef, color="tab:orange", ls=(0, (4, 3)), lw=1.8, zorder=4, label=f"true {meta.ef:.1f}%")
    axes[2].set_xticks(idx)
    axes[2].set_xlabel("clip")
    axes[2].set_ylabel("EF (%)")
    axes[2].set_ylim(0, 100)
    axes[2].set_title("EF of each clip and their mean", fontsize=10)
    axes[2].legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2, fontsize=8, frameon=False)
    if getattr(pred, "is_shifted", None) is not None:
        verdict = "OUTSIDE the training distribution" if pred.is_shifted else "inside the training distribution"
        axes[2].text(0.5, 0.97, f"shift score {pred.shift_score:.2f}: {verdict}", transform=axes[2].transAxes,
                     ha="center", va="top", fontsize=8, color="tab:red" if pred.is_shifted else "0.25")
    fig.suptitle("coreecho demo: synthetic phantom, phantom-tiny model (not for clinical use)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(ef: float = 45.0, seed: int = 2024, output_dir: str | Path = "coreecho-demo", model: str = "phantom-tiny",
             clips: int | str | None = None, device: str | None = None, figure: bool = True) -> dict[str, Any]:
    """Run the demo and return its numbers (true/predicted EF, per-clip EFs, timings, files written)."""
    from coreecho.data.phantom import make_phantom
    from coreecho.inference import get_model
    from coreecho.video.io import write_video

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    frames, meta = make_phantom(ef=ef, seed=seed, n_frames=160)
    avi = write_video(out / f"phantom_ef{ef:g}_seed{seed}.avi", frames, fps=meta.fps)
    timings["phantom"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    net = get_model(model, device)
    timings["load_model"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = net.predict_ef(str(avi), clips=clips, return_details=True)
    timings["predict"] = time.perf_counter() - t0
    result: dict[str, Any] = {"video": str(avi), "true_ef": meta.ef, "predicted_ef": pred.ef,
                              "clip_efs": [float(v) for v in pred.clip_efs], "starts": pred.starts,
                              "fps": pred.fps, "n_frames": pred.n_frames, "timings": timings,
                              "ef_low": pred.ef_low, "ef_high": pred.ef_high, "coverage": pred.coverage,
                              "shift_score": pred.shift_score, "is_shifted": pred.is_shifted}
    if figure:
        try:
            pre = net.config.preprocessing
            result["figure"] = str(plot_demo(out / "demo.png", frames, meta, pred, pre.frames, pre.stride))
        except ImportError:
            result["figure"] = None
    return result


def add_demo(p: argparse.ArgumentParser) -> None:
    """Options of ``coreecho demo``."""
    p.add_argument("--ef", type=common.bounded_float(*EF_RANGE), default=45.0,
                   help="true EF of the phantom (%%, 10-85; default 45)")
    p.add_argument("--seed", type=common.bounded_int(0, 2**32 - 1), default=2024, help="phantom seed (default 2024)")
    p.add_argument("--output-dir", default="coreecho-demo", help="where the AVI and PNG go (default ./coreecho-demo)")
    common.add_model(p, default="phantom-tiny")
    common.add_clips(p, every=False)
    common.add_device(p)
    p.add_argument("--no-figure", action="store_true", help="skip the PNG figure")


def run_demo_command(args: argparse.Namespace) -> int:
    """Run ``coreecho demo``."""
    from coreecho.cli.output import check_output

    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise common.UsageError(f"--output-dir {out} is a file; give a folder name")
    check_output(str(out / "demo.png"), [])
    t0 = time.perf_counter()
    r = run_demo(args.ef, args.seed, args.output_dir, args.model, args.clips, args.device, not args.no_figure)
    print(f"phantom echo: {r['video']} ({r['n_frames']} frames at {r['fps']:g} fps)")
    print(f"true EF       {r['true_ef']:6.2f} %")
    print(f"predicted EF  {r['predicted_ef']:6.2f} %   (error {r['predicted_ef'] - r['true_ef']:+.2f})")
    if r.get("ef_low") is not None:
        print(f"{100 * r['coverage']:.0f}% interval [{r['ef_low']:.2f}, {r['ef_high']:.2f}] %   (calibrated on held-out "
              "phantoms; see docs/calibration.md)")
    if r.get("is_shifted") is not None:
        verdict = "OUTSIDE the training distribution: do not trust this EF" if r["is_shifted"] else \
            "inside the training distribution"
        print(f"shift score   {r['shift_score']:6.2f}     {verdict}")
    for k, (s, v) in enumerate(zip(r["starts"], r["clip_efs"]), 1):
        print(f"  clip {k}: frames from {s:3d}  EF {v:6.2f} %")
    t = r["timings"]
    print(f"time: phantom {t['phantom']:.2f} s, load model {t['load_model']:.2f} s, predict {t['predict']:.2f} s, "
          f"total {time.perf_counter() - t0:.2f} s")
    if r.get("figure"):
        print(f"figure: {r['figure']}")
    elif not args.no_figure:
        print("figure skipped: matplotlib is not installed (pip install matplotlib; it comes with the \"viz\" and \"dev\" extras)")
    print("phantom-tiny is trained on synthetic phantoms only: not for clinical use. Real weights: `coreecho models`.")
    return 0


