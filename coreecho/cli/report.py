"""``coreecho report``: a one-page report of one video, a PNG figure and an HTML page with the numbers as text.

The page shows frames of the video with the fan crop, Grad-CAM overlays, the EF of each clip with the calibrated
interval (or "not calibrated"), the distribution-shift verdict in plain words, the model, its licence and "not
for clinical use". It names the video by its file name only. See :mod:`coreecho.analysis.report`.

Example:
    $ coreecho report a4c.avi --model phantom-tiny
    $ coreecho report study.dcm --model phantom-tiny -o reports/
"""

from __future__ import annotations

import argparse

from coreecho.cli import _common as common

__all__ = ["add_report", "run_report", "STAGES"]

#: Grad-CAM stages (repeated from :mod:`coreecho.analysis.gradcam` so that ``coreecho --help`` does not import
#: torch).
STAGES = ("blocks1", "blocks2", "blocks3", "blocks4", "norm")


def add_report(p: argparse.ArgumentParser) -> None:
    """Options of ``coreecho report``."""
    p.add_argument("video", help="video file (AVI/MP4/DICOM/.npy)")
    common.add_model(p)
    common.add_output(p, text="a folder (existing, or ending in /) for VIDEO-report.png and .html, or a file stem "
                              "(out → out.png and out.html); default: coreecho-report/")
    common.add_device(p)
    common.add_precision(p)
    common.add_clips(p, every=False)
    p.add_argument("--stage", default=None, choices=STAGES,
                   help="Grad-CAM stage (default: blocks3, or norm when the blocks3 map is empty)")
    p.epilog = ("examples:\n  coreecho report a4c.avi --model phantom-tiny\n"
                "  coreecho report study.dcm --model phantom-tiny -o reports/")
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def run_report(args: argparse.Namespace) -> int:
    """Run ``coreecho report``."""
    from coreecho.analysis.report import build_report, report_paths, shift_verdict
    from coreecho.cli.output import check_output
    from coreecho.inference import DEFAULT_MODEL
    from coreecho.precision import resolve_device

    png, page = report_paths(args.output, args.video)
    check_output(str(png), [args.video], targets=[str(png), str(page)])
    name = args.model or DEFAULT_MODEL
    r = build_report(args.video, name, args.output, model_name=name, clips=args.clips, precision=args.precision,
                     device=str(resolve_device(args.device)), stage=args.stage)
    pred = r.prediction
    print(f"{r.name}: EF {pred.ef:.2f} % (mean of {len(pred.clip_efs)} clips, SD {pred.ef_std:.2f})")
    if pred.ef_low is not None:
        print(f"{100 * pred.coverage:.0f}% interval [{pred.ef_low:.2f}, {pred.ef_high:.2f}] %")
    else:
        print("interval: not calibrated (this model has no calibration; see `coreecho calibrate --help`)")
    print("distribution shift: " + shift_verdict(pred, r.shift_threshold))
    print(f"model {r.model} (licence {r.license}); Grad-CAM at stage {r.stage}. Not for clinical use.")
    print(f"wrote {r.figure}")
    print(f"wrote {r.html}")
    return 0
