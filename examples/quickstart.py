"""Quick start: load a model, predict EF, look at per-clip details, extract embeddings — offline.

Uses the bundled ``phantom-tiny`` model and synthetic phantom echoes, so it runs anywhere in seconds. With the
official weights (``coreecho convert best.pth --install coreecho-echonet``) replace the model name and pass your
own AVI/MP4/DICOM files.

Usage::

    python examples/quickstart.py [--model phantom-tiny] [--out examples-out/quickstart]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import coreecho
from coreecho.data.phantom import make_phantom
from coreecho.video.io import write_video


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="phantom-tiny")
    p.add_argument("--out", default="examples-out/quickstart", help="output folder (default: "
                   "examples-out/quickstart, ignored by git)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = coreecho.load_model(args.model)                      # a name, a folder, a Hub repo or best.pth
    print(f"model: {args.model} ({model.config.architecture}, {model.embed_dim}-d embeddings, "
          f"{model.config.preprocessing.frames} frames at stride {model.config.preprocessing.stride})")

    # Three synthetic echoes with known EF: one as an AVI file, two as in-memory arrays.
    videos, truths = [], []
    for i, ef in enumerate((30.0, 55.0, 70.0)):
        frames, meta = make_phantom(ef=ef, seed=100 + i)
        truths.append(meta.ef)
        videos.append(str(write_video(out / f"echo_{i}.avi", frames, fps=meta.fps)) if i == 0 else frames)

    # One call for a list: an array of EFs (clips of all videos are batched together).
    efs = model.predict_ef(videos)
    for truth, ef in zip(truths, efs):
        print(f"true EF {truth:5.1f} %   predicted {ef:5.1f} %")

    # Per-clip details for one video.
    details = model.predict_ef(videos[0], return_details=True)
    print(f"{details.source}: EF {details.ef:.1f} ± {details.ef_std:.1f} over clips starting at {details.starts} "
          f"({details.n_frames} frames at {details.fps:g} fps)")

    # Embeddings for UMAP, kNN, shift detection...
    emb = coreecho.embed(videos, model=model)
    print(f"embeddings: {emb.shape}; cosine similarity of the first two: "
          f"{float(emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1])):.3f}")
    np.save(out / "embeddings.npy", emb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
