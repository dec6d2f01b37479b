"""``coreecho explain``: a Grad-CAM heatmap of one clip of a video, as an animated overlay and a PNG montage.

Example:
    $ coreecho explain a4c.avi --model phantom-tiny --output cam.gif --montage cam.png
    $ coreecho explain a4c.avi --model ./my_model --output cam.mp4 --stage blocks3 --start 40
"""

from __future__ import annotations

import argparse
import sys

from coreecho.cli import _common as common

__all__ = ["STAGES", "add_explain", "run_explain"]


#: Same as :data:`coreecho.analysis.gradcam.STAGES` (repeated so that ``coreecho --help`` does not import torch).
STAGES = ("blocks1", "blocks2", "blocks3", "blocks4", "norm")


def add_explain(p: argparse.ArgumentParser) -> None:
    """Options of ``coreecho explain``."""
    p.add_argument("video", help="video file (AVI/MP4/DICOM/.npy)")
    common.add_model(p)
    common.add_output(p, required=True, text="overlay file: .gif, .mp4 or .avi (folders are created)")
    p.add_argument("--montage", default=None, help="also write a PNG montage of a few frames with the heatmap")
    p.add_argument("--stage", default="norm", choices=STAGES, help="encoder stage (default: norm, the end "
                   "of the last stage; blocks3 is finer)")
    p.add_argument("--start", type=common.bounded_int(0), default=None,
                   help="first frame of the clip (default: the middle clip)")
    p.add_argument("--target", type=common.bounded_int(0, 4096), default=None,
                   help="output index for multi-output heads")
    p.add_argument("--fps", type=common.bounded_float(0.1, 240.0), default=10.0,
                   help="playback rate of the overlay (default 10)")
    p.add_argument("--alpha", type=common.bounded_float(0.0, 1.0), default=0.45,
                   help="strength of the heatmap colour, 0..1 (default 0.45)")
    p.add_argument("--scale", type=common.bounded_int(1, common.LIMITS["scale"]), default=2,
                   help=f"integer upscaling of the frames, 1..{common.LIMITS['scale']} (default 2)")
    p.add_argument("--frames", type=common.bounded_int(1, common.LIMITS["frames"]), default=6,
                   help="frames in the montage (default 6)")
    common.add_device(p)


_OVERLAY_SUFFIXES = (".gif", ".mp4", ".avi")


def run_explain(args: argparse.Namespace) -> int:
    """Run ``coreecho explain``."""
    from pathlib import Path

    from coreecho.analysis.gradcam import explain
    from coreecho.cli.output import check_output
    from coreecho.inference import get_model
    from coreecho.precision import resolve_device

    if Path(args.output).suffix.lower() not in _OVERLAY_SUFFIXES:
        raise common.UsageError(f"--output {args.output}: the overlay is written as .gif, .mp4 or .avi")
    check_output(args.output, [args.video])
    if args.montage:
        if Path(args.montage).suffix.lower() != ".png":
            raise common.UsageError(f"--montage {args.montage}: the montage is a .png file")
        check_output(args.montage, [args.video, args.output], option="--montage")
    model = get_model(args.model, resolve_device(args.device))
    ex = explain(model, args.video, stage=args.stage, target=args.target, start=args.start)
    written = [ex.save(args.output, fps=args.fps, alpha=args.alpha, scale=args.scale)]
    if args.montage:
        written.append(ex.save_montage(args.montage, n=args.frames, alpha=args.alpha, scale=args.scale,
                                       model=args.model or "coreecho-echonet"))
    padded = int((ex.frame_indices < 0).sum())
    print(f"{args.video}: output {ex.output:.2f} on the clip starting at frame {ex.start} "
          f"({len(ex.frame_indices)} frames{f', {padded} zero-padded' if padded else ''}), stage {ex.stage}")
    if ex.empty:
        print("note: the heatmap is empty (no region pushes the output up at this stage); try another --stage",
              file=sys.stderr)
    for path in written:
        print(f"wrote {path}")
    return 0


