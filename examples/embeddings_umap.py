"""Embeddings of synthetic echo phantoms, mapped to 2-D and coloured by their ejection fraction.

With a CoReEcho model, embeddings of videos ordered by EF lie along a continuous path; the plot shows that
as a colour gradient. The script also prints continuity scores (see
:func:`coreecho.analysis.plots.continuity_scores`) and saves the embeddings (``.npz``, plus Parquet when
pyarrow is installed).

Model: ``--model NAME_OR_PATH``; without it the bundled ``phantom-tiny`` model when this coreecho has it,
else a tiny randomly initialised model (with a warning: its map shows image similarity, not EF).

Usage:
    python examples/embeddings_umap.py --n 60 --output examples-out/embeddings_umap.png

UMAP needs umap-learn (``pip install -e ".[viz]"`` in a clone, ``pip install "coreecho[viz]"`` from PyPI);
without it the script says so and draws a t-SNE map instead.
    python examples/embeddings_umap.py --model ./my_model --method tsne
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def load_or_fallback(name: str | None):
    """The requested model, else ``phantom-tiny``, else a tiny random model (with a printed warning)."""
    import coreecho
    from coreecho.errors import CoReEchoError

    if name:
        return coreecho.load_model(name), name
    try:
        return coreecho.load_model("phantom-tiny"), "phantom-tiny"
    except (CoReEchoError, OSError) as err:
        import torch

        from coreecho import CoReEcho
        from coreecho.models.config import ModelConfig, PreprocessConfig

        print(f"WARNING: the bundled model 'phantom-tiny' is not available ({str(err).splitlines()[0]}); using a "
              "tiny RANDOMLY INITIALISED model. Its embeddings reflect image similarity, not EF. Pass --model "
              "PATH for a trained one.", file=sys.stderr)
        torch.manual_seed(0)
        cfg = ModelConfig(architecture="uniformer_custom",
                          encoder_args={"depth": [1, 1, 1, 1], "embed_dim": [16, 32, 64, 128], "head_dim": 16},
                          preprocessing=PreprocessConfig(frames=16, stride=4))
        return CoReEcho(cfg).eval(), "tiny-random"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or folder (default: phantom-tiny, else random)")
    parser.add_argument("--n", type=int, default=60, help="number of phantoms (default 60)")
    parser.add_argument("--method", default=None, choices=["umap", "tsne", "pca"],
                        help="2-D map (default: umap when umap-learn is installed, else tsne)")
    parser.add_argument("--clips", type=int, default=1, help="clips averaged per video (default 1)")
    parser.add_argument("--output", default="examples-out/embeddings_umap.png",
                        help="PNG to write (default: examples-out/embeddings_umap.png, ignored by git)")
    parser.add_argument("--save", default=None, help="also save the embeddings (stem, .npz or .parquet)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)

    import torch

    from coreecho.analysis.plots import continuity_scores, default_method, plot_embeddings, save_embeddings
    from coreecho.data.phantom import make_phantom

    if args.threads:
        torch.set_num_threads(args.threads)
    method = default_method(args.method, announce=True)
    model, name = load_or_fallback(args.model)
    pre = model.config.preprocessing
    span = (pre.frames - 1) * pre.stride + 1
    rng = np.random.default_rng(args.seed)
    efs = rng.uniform(10, 85, args.n)
    t0 = time.time()
    videos, names = [], []
    for i, ef in enumerate(efs):
        frames, meta = make_phantom(float(ef), seed=args.seed * 100_003 + i, n_frames=(span, span + 40))
        videos.append(frames)
        names.append(f"phantom_{i:04d}")
    print(f"{args.n} phantoms in {time.time() - t0:.1f} s; embedding with {name} "
          f"({pre.frames} frames x stride {pre.stride}, {args.clips} clip(s) per video)")
    t0 = time.time()
    emb = model.embed(videos, clips=args.clips)
    print(f"embeddings {emb.shape} in {time.time() - t0:.1f} s")
    scores = continuity_scores(emb, efs, k=5)
    print(f"continuity: Spearman(embedding distance, |EF difference|) = {scores['spearman']:.3f}; "
          f"5-NN EF MAE = {scores['knn_mae']:.2f} (a constant guess: {np.abs(efs - efs.mean()).mean():.2f})")
    plot_embeddings(emb, efs, method=method, path=args.output, seed=args.seed,
                    title=f"{method.upper() if method != 'tsne' else 't-SNE'} of {name} embeddings "
                          f"({args.n} phantoms)")
    fell_back = args.method is None and method != "umap"
    print(f"wrote {args.output} ({method} map" + ("; UMAP was asked for by default but umap-learn is not "
                                                   "installed, see the note above)" if fell_back else ")"))
    if args.save:
        for path in save_embeddings(args.save, names, emb, ef=efs, model=name, clips=args.clips):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
