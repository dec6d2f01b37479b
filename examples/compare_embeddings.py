"""CoReEcho-style (Rank-N-Contrast, then a regression head) vs L1-only training of the same tiny encoder.

Both runs start from the same initial weights and see the same phantom clips:

* **CoReEcho-style**: stage 1 trains the encoder with :class:`coreecho.losses.CoReLoss` (Rank-N-Contrast) on
  two clips of each video (two random temporal crops, two views); stage 2 freezes the encoder and fits the
  head with L1 on its embeddings (as CoReEcho's second stage does, minus its fine-tuning);
* **L1-only**: encoder and head trained end to end with the L1 loss on EF, the same number of steps.

Then held-out phantoms are embedded with each encoder, the two 2-D maps are drawn side by side, coloured by EF,
and continuity scores are printed: the Spearman correlation between embedding distance and EF distance, the
leave-one-out 5-NN EF error from embeddings, and the head's EF error. A tiny model trained for a few hundred
steps is far from the paper's numbers; the comparison is about the *shape* of the embedding space.

Usage (a few minutes on a laptop CPU):
    python examples/compare_embeddings.py          # writes examples-out/compare_embeddings.png
    python examples/compare_embeddings.py --train 32 --test 16 --steps 5 --head-steps 5   # smoke test
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def make_set(n: int, seed: int, size: int, n_frames: tuple[int, int]):
    """``n`` phantoms (uint8 ``[T, size, size, 3]``) with EF uniform in 10..85."""
    from coreecho.data.phantom import make_phantom

    rng = np.random.default_rng(seed)
    videos, efs = [], []
    for i in range(n):
        frames, meta = make_phantom(float(rng.uniform(10, 85)), seed=seed * 1_000_003 + i, n_frames=n_frames,
                                    size=size)
        videos.append(frames)
        efs.append(meta.ef)
    return videos, np.array(efs)


def build(args):
    import torch

    from coreecho import CoReEcho
    from coreecho.models.config import ModelConfig, PreprocessConfig

    torch.manual_seed(args.seed)  # same initial weights for both runs
    cfg = ModelConfig(architecture="uniformer_custom",
                      encoder_args={"depth": [1, 1, 1, 1], "embed_dim": [16, 32, 64, 128], "head_dim": 16,
                                    "drop_rate": 0.0},
                      head_args={"dropout": 0.1},
                      preprocessing=PreprocessConfig(frames=args.frames, stride=args.stride, size=args.size))
    return CoReEcho(cfg)


def sample_clips(videos, idx, rng, pipeline):
    """One random clip (random start, no augmentation) per listed video, through the model's pipeline."""
    import torch

    return torch.cat([pipeline(videos[i], "random", rng=rng).x for i in idx])


def train_rnc(model, videos, efs, args, rng):
    """Stage 1 (Rank-N-Contrast on two views) then stage 2 (head with L1 on the frozen encoder)."""
    import torch

    from coreecho.losses import CoReLoss

    pipeline = model.pipeline()
    loss_fn = CoReLoss(temperature=args.temperature)
    opt = torch.optim.AdamW(model.encoder.parameters(), lr=args.lr, weight_decay=1e-4)
    model.train()
    for step in range(args.steps):
        idx = rng.choice(len(videos), args.batch, replace=False)
        x = torch.cat([sample_clips(videos, idx, rng, pipeline), sample_clips(videos, idx, rng, pipeline)])
        z = model.encoder(x)
        feats = torch.stack([z[:args.batch], z[args.batch:]], dim=1)  # [B, 2 views, D]
        loss = loss_fn(feats, torch.as_tensor(efs[idx], dtype=torch.float32))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, args.steps // 5) == 0 or step == args.steps - 1:
            print(f"  RnC step {step:4d}  loss {loss.item():.3f}")
    # stage 2: frozen encoder, head fitted on embeddings of random clips
    model.eval()
    with torch.no_grad():
        reps = max(1, args.head_views)
        idx = np.tile(np.arange(len(videos)), reps)
        emb = torch.cat([model.encoder(sample_clips(videos, idx[i:i + 32], rng, pipeline)) for i in range(0, len(idx), 32)])
    y = torch.as_tensor(efs[idx], dtype=torch.float32)
    head_opt = torch.optim.AdamW(model.head.parameters(), lr=args.head_lr, weight_decay=1e-4)
    model.head.train()
    for _ in range(args.head_steps):
        j = torch.as_tensor(rng.choice(len(idx), min(64, len(idx)), replace=False))
        loss = (model.head(emb[j]) - y[j]).abs().mean()
        head_opt.zero_grad()
        loss.backward()
        head_opt.step()
    print(f"  head (L1 on frozen embeddings) final loss {loss.item():.2f}")
    return model.eval()


def train_l1(model, videos, efs, args, rng):
    """Encoder and head end to end with L1 on EF; each step sees as many clips as an RnC step (2 per video)."""
    import torch

    pipeline = model.pipeline()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    model.train()
    for step in range(args.steps):
        idx = rng.choice(len(videos), args.batch, replace=False)
        x = torch.cat([sample_clips(videos, idx, rng, pipeline), sample_clips(videos, idx, rng, pipeline)])
        y = torch.as_tensor(np.concatenate([efs[idx], efs[idx]]), dtype=torch.float32)
        loss = (model(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, args.steps // 5) == 0 or step == args.steps - 1:
            print(f"  L1  step {step:4d}  loss {loss.item():.3f}")
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=96, help="training phantoms (default 96)")
    parser.add_argument("--test", type=int, default=64, help="held-out phantoms (default 64)")
    parser.add_argument("--steps", type=int, default=300, help="training steps of each run (default 300)")
    parser.add_argument("--batch", type=int, default=16, help="videos per step (two clips each; default 16)")
    parser.add_argument("--head-steps", type=int, default=300, help="stage-2 head steps (default 300)")
    parser.add_argument("--head-views", type=int, default=4, help="clips per video for stage 2 (default 4)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--head-lr", type=float, default=1e-2)
    parser.add_argument("--temperature", type=float, default=2.0, help="Rank-N-Contrast temperature")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="phantom and model input size (default 64)")
    parser.add_argument("--method", default=None, choices=["umap", "tsne", "pca"],
                        help="2-D map (default: umap when installed, else tsne)")
    parser.add_argument("--output", default="examples-out/compare_embeddings.png",
                        help="PNG to write (default: examples-out/compare_embeddings.png, ignored by git)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: fastest for "
                        "tiny 3-D convolutions; 0 = torch's default)")
    args = parser.parse_args(argv)
    if args.batch > args.train:
        parser.error("--batch must not exceed --train")

    import torch

    from coreecho.analysis.plots import continuity_scores, default_method, plot_embeddings

    if args.threads:
        torch.set_num_threads(args.threads)
    method = default_method(args.method)
    span = (args.frames - 1) * args.stride + 1
    t0 = time.time()
    train_videos, train_efs = make_set(args.train, args.seed + 1, args.size, (span, span + 30))
    test_videos, test_efs = make_set(args.test, args.seed + 2, args.size, (span, span + 30))
    print(f"{args.train} training and {args.test} held-out phantoms in {time.time() - t0:.1f} s")

    results = {}
    for name, trainer in (("CoReEcho-style (RnC + head)", train_rnc), ("L1 only", train_l1)):
        print(f"{name}:")
        t0 = time.time()
        model = trainer(build(args), train_videos, train_efs, args, np.random.default_rng(args.seed))
        preds = model.predict_ef(test_videos, clips=3)
        emb = model.embed(test_videos, clips=3)
        scores = continuity_scores(emb, test_efs, k=5)
        scores["head_mae"] = float(np.abs(preds - test_efs).mean())
        results[name] = (emb, scores)
        print(f"  trained in {time.time() - t0:.0f} s")

    baseline = np.abs(test_efs - train_efs.mean()).mean()
    print(f"\nheld-out phantoms (n={args.test}); predicting the training mean gives MAE {baseline:.2f}")
    print(f"{'':30s} {'Spearman(dist, |dEF|)':>22s} {'5-NN EF MAE':>12s} {'head EF MAE':>12s}")
    for name, (_, s) in results.items():
        print(f"{name:30s} {s['spearman']:22.3f} {s['knn_mae']:12.2f} {s['head_mae']:12.2f}")

    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6), dpi=120)
    axes = fig.subplots(1, 2)
    for ax, (name, (emb, s)) in zip(axes, results.items()):
        plot_embeddings(emb, test_efs, method=method, ax=ax, seed=args.seed, standardize=True,
                        title=f"{name}\nSpearman {s['spearman']:.2f}, 5-NN MAE {s['knn_mae']:.1f}")
    fig.suptitle(f"{method.upper() if method != 'tsne' else 't-SNE'} of held-out phantom embeddings, "
                 f"coloured by EF ({args.steps} steps each)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    fig.savefig(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
