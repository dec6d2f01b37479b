"""``coreecho explain``: a Grad-CAM heatmap of one clip of a video, as an animated overlay and a PNG montage.

Example:
    $ coreecho explain a4c.avi --model phantom-tiny --output cam.gif --montage cam.png
    $ coreecho explain a4c.avi --model ./my_model --output cam.mp4 --stage blocks3 --start 40
"""

from __future__ import annotations

import argparse
import sys

from coreecho.cli import COMMANDS

__all__: list[str] = []


#: Same as :data:`coreecho.analysis.gradcam.STAGES` (repeated so that ``coreecho --help`` does not import torch).
STAGES = ("blocks1", "blocks2", "blocks3", "blocks4", "norm")


def _add_explain(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="video file (AVI/MP4/DICOM/.npy)")
    p.add_argument("--model", default=None, help="registered name, folder, .pth or Hub repo id "
                   "(default: coreecho-echonet)")
    p.add_argument("--output", "-o", required=True, help="overlay file: .gif, .mp4 or .avi")
    p.add_argument("--montage", default=None, help="also write a PNG montage of a few frames with the heatmap")
    p.add_argument("--stage", default="norm", choices=STAGES, help="encoder stage (default: norm, the end "
                   "of the last stage; blocks3 is finer)")
    p.add_argument("--start", type=int, default=None, help="first frame of the clip (default: the middle clip)")
    p.add_argument("--target", type=int, default=None, help="output index for multi-output heads")
    p.add_argument("--fps", type=float, default=10.0, help="playback rate of the overlay (default 10)")
    p.add_argument("--alpha", type=float, default=0.45, help="strength of the heatmap colour (default 0.45)")
    p.add_argument("--scale", type=int, default=2, help="integer upscaling of the frames (default 2)")
    p.add_argument("--frames", type=int, default=6, help="frames in the montage (default 6)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def _run_explain(args: argparse.Namespace) -> int:
    from coreecho.analysis.gradcam import explain
    from coreecho.inference import get_model

    model = get_model(args.model, args.device)
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


COMMANDS["explain"] = ("Grad-CAM heatmap of one clip: animated overlay (GIF/MP4) and PNG montage",
                       _add_explain, _run_explain)
