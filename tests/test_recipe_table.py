"""The recipe table of docs/training.md, one test per row: coreecho's defaults train as the official CoReEcho code.

Distributions are checked by sampling (a marked pixel, thousands of draws), values by reading the built objects
(config, optimisers, schedule), behaviour by a tiny step or a short run of a micro model. The official values are
facts of the official research code (file and function named in docs/training.md); they are written here as
numbers, never imported from coreecho.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from coreecho.train import engine as engine_module
from coreecho.train import stage1 as stage1_module
from coreecho.train.config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

MICRO = {"depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8, "drop_rate": 0.0}
OFFICIAL_MEAN_01 = (0.12741163, 0.1279413, 0.12912785)  # coreecho/dataset.py DEFAULT_MEAN (x 255 there)
OFFICIAL_STD_01 = (0.19557191, 0.19562256, 0.1965878)  # coreecho/dataset.py DEFAULT_STD (x 255 there)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from coreecho.data.layouts import write_echonet_layout

    root = tmp_path_factory.mktemp("phantom")
    write_echonet_layout(root, 14, seed=7, n_frames=(24, 32), splits=(10, 2, 2), progress=False)
    return root


def _small(data: Path, out: Path, **kw) -> TrainConfig:
    """The default recipe with a micro encoder and small clips (what the tests can run on a CPU)."""
    base = dict(data=str(data), out=str(out), preset="micro", init="none", encoder_args=dict(MICRO), frames=4,
                stride=4, size=32, batch_size=4, num_workers=0, progress=False, tensorboard=False, device="cpu",
                seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _stub_run(monkeypatch) -> dict:
    """Replace the epoch loop by a recorder of what the stage hands it."""
    seen: dict = {}

    def run(cfg, env, stage, train_set, val_set, resume=None):
        seen.update(cfg=cfg, stage=stage, train_set=train_set, val_set=val_set)
        out = Path(cfg.out)
        return engine_module.TrainResult(out, out / "best_model", out / "best_model", 0.0, 0, [])

    monkeypatch.setattr(engine_module, "run", run)
    return seen


# ---------------------------------------------------------------------------------------------------------- clips
def test_row_clip_sampling_and_short_video_padding():
    """Official EchoNet.sample_video: zero-pad to frames*frequency, start ~ choice(f - (frames-1)*frequency)."""
    from coreecho.video.pipeline import ClipPipeline

    pre = TrainConfig().preprocess()
    assert (pre.frames, pre.stride, pre.sampling) == (36, 4, "clips")
    pipe = ClipPipeline(pre.replace(size=16), train=True)  # the start law does not depend on the frame size
    rng = np.random.default_rng(0)
    for n in (133, 141, 144, 150, 200):
        video = np.repeat(np.arange(1, n + 1, dtype=np.uint8)[:, None, None], 16, 1).repeat(16, 2)
        starts = [s for _ in range(2) for s in pipe(video, "random:300", rng=rng).starts]
        assert set(starts) == set(range(max(n, 36 * 4) - 35 * 4)), n
    # a clip running past the end shows black frames (the official zero padding), at every position
    test = ClipPipeline(pre.replace(size=16))
    video = np.repeat(np.arange(1, 134, dtype=np.uint8)[:, None, None], 16, 1).repeat(16, 2)
    shown = test(video, [3]).pixels[0, :, 8, 8, 0].astype(int)
    expect = [3 + 4 * t + 1 if 3 + 4 * t < 133 else 0 for t in range(36)]
    assert shown.tolist() == expect and expect[-1] == 0


def test_row_views_two_independent_clips_per_video(data, tmp_path):
    """Official EchoNetRNC.__getitem__: two calls of EchoNet.__getitem__ (own start, own crop) per video."""
    train, _ = engine_module.build_datasets(_small(data, tmp_path), views=2)
    item = train[0]
    assert item["video"].shape == (2, 3, 4, 32, 32)
    pairs = []
    for epoch in range(150):
        train.set_epoch(epoch)
        pairs.append(tuple(train[0]["starts"].tolist()))
    same = sum(a == b for a, b in pairs)
    assert 0 < same < len(pairs) // 3  # independent draws: sometimes equal, mostly not
    assert len({a for a, _ in pairs}) > 3 and len({b for _, b in pairs}) > 3


# ---------------------------------------------------------------------------------------------------- augmentation
def _offsets(pipe, draws: int, k: int, seed: int) -> list[list[tuple[int, int]]]:
    """Draw ``draws`` augmented batches of ``k`` clips with one marked pixel; the move of the pixel in each clip."""
    clean = np.zeros((k, 2, 112, 112, 3), np.uint8)
    clean[:, :, 56, 56] = 255
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(draws):
        _, pixels = pipe.finish(clean, rng)
        flat = pixels[..., 0].reshape(k, 2, -1)
        where = flat.argmax(-1)  # [k, frames]
        assert (flat.max(-1) == 255).all() and (where == where[:, :1]).all()  # one offset per clip, all frames
        found.append([(int(w) // 112 - 56, int(w) % 112 - 56) for w in where[:, 0]])
    return found


def test_row_augmentation_is_the_official_offset_set():
    """Official get_augmentation: PadIfNeeded(124, 124, zeros) + RandomCrop(112, 112): -6..+6 px on each axis."""
    from coreecho.video.pipeline import ClipPipeline

    pre = TrainConfig().preprocess()
    assert (pre.pad, pre.pad_style, pre.shift_range()) == (12, "coreecho", (-6, 6))
    draws = _offsets(ClipPipeline(pre, train=True), 2000, k=2, seed=1)  # 2 views per draw: 4000 clips
    counts = Counter(m for moves in draws for m in moves)
    official = {(dy, dx) for dy in range(-6, 7) for dx in range(-6, 7)}
    assert set(counts) == official  # exactly the 13 x 13 positions
    expected = 4000 / len(official)  # uniform: a chi-square far below 168 degrees of freedom + 5 sd
    assert sum((c - expected) ** 2 / expected for c in counts.values()) < 168 + 5 * (2 * 168) ** 0.5
    for axis in (0, 1):
        per_axis = Counter(m[axis] for m in counts.elements())
        assert all(abs(c - 4000 / 13) < 0.3 * 4000 / 13 for c in per_axis.values())
    same = sum(a == b for a, b in draws)
    assert same < 0.03 * len(draws)  # the two views of a video draw their crops independently (1/169 equal)


def test_row_augmentation_echonet_dynamic_pad_is_an_explicit_option():
    """EchoNet-Dynamic's pad=12 (12 px each side, crop at 0..23) stays available, and old files keep it."""
    from coreecho.models.config import ModelConfig
    from coreecho.video.pipeline import ClipPipeline

    pre = TrainConfig(pad=12, pad_style="echonet-dynamic").preprocess()
    assert pre.shift_range() == (-11, 12)
    moves = [m for d in _offsets(ClipPipeline(pre, train=True), 1500, k=2, seed=2) for m in d]
    assert {m[0] for m in moves} == {m[1] for m in moves} == set(range(-11, 13))  # 24 positions per axis
    old = ModelConfig().to_dict()
    old["format_version"] = 1
    old["preprocessing"].pop("pad_style")
    assert ModelConfig.from_dict(old).preprocessing.pad_style == "echonet-dynamic"  # read with its old meaning
    assert ModelConfig.from_dict(ModelConfig().to_dict()).preprocessing.pad_style == "coreecho"
    saved = TrainConfig().to_dict()
    saved.pop("format_version")
    saved.pop("pad_style")  # a train_config.json of the previous release
    assert TrainConfig.from_dict(saved).pad_style == "echonet-dynamic"
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


# --------------------------------------------------------------------------------------------------- normalisation
def test_row_normalisation_constants():
    """Official DEFAULT_MEAN/DEFAULT_STD x 255, applied after the augmentation (the zero padding is normalised)."""
    from coreecho import constants
    from coreecho.video.pipeline import ClipPipeline

    pre = TrainConfig().preprocess()
    assert pre.mean == tuple(v * 255 for v in OFFICIAL_MEAN_01) and pre.std == tuple(v * 255 for v in OFFICIAL_STD_01)
    assert (TrainConfig().mean, TrainConfig().std) == (constants.ECHONET_MEAN, constants.ECHONET_STD)
    clips = np.full((1, 2, 112, 112, 3), 200, np.uint8)
    x, pixels = ClipPipeline(pre, train=True).finish(clips, np.random.default_rng(0))
    for c in range(3):
        value = np.float32((np.float32(200) - np.float32(pre.mean[c])) / np.float32(pre.std[c]))
        black = np.float32((0 - np.float32(pre.mean[c])) / np.float32(pre.std[c]))
        got = x[0, c].numpy()
        assert np.isclose(got, value, rtol=1e-6).sum() + np.isclose(got, black, rtol=1e-6).sum() == got.size
        assert np.isclose(got, value, rtol=1e-6).sum() >= (112 - 6) ** 2 * 2  # most of the clip is the image


# ----------------------------------------------------------------------------------------------------- optimisation
def test_row_optimizer_and_parameter_groups():
    """Official set_optimizer: torch.optim.AdamW(module.parameters(), lr, weight_decay) for model and regressor."""
    from coreecho.train.stage1 import build_optimizers, build_stage1_model

    cfg = TrainConfig(preset="micro")
    model = build_stage1_model(cfg)
    opts = build_optimizers(cfg, model, "stage1")
    for name, module in (("encoder", model.encoder), ("head", model.head)):
        opt = opts[name]
        assert type(opt) is torch.optim.AdamW and len(opt.param_groups) == 1
        group = opt.param_groups[0]
        assert {id(p) for p in group["params"]} == {id(p) for p in module.parameters()}
        assert (group["lr"], group["weight_decay"], group["betas"], group["eps"], group["amsgrad"]) == (
            1e-4, 1e-4, (0.9, 0.999), 1e-8, False)
    assert list(build_optimizers(cfg, model, "stage2")) == ["head"]


def test_row_learning_rates_and_schedule():
    """Official adjust_learning_rate: lr x lr_decay_rate (0.1) from epoch lr_step_epoch (15), both optimisers;
    stage 2 keeps lr 1e-4 for its 5 passes."""
    cfg = TrainConfig()
    assert [cfg.lr_at(e) for e in range(26)] == pytest.approx([1e-4] * 15 + [1e-5] * 11, rel=1e-12)
    assert [cfg.lr_at(e, cfg.head_lr) for e in range(26)] == pytest.approx([1e-4] * 15 + [1e-5] * 11, rel=1e-12)
    assert [cfg.lr_at(e, cfg.head_lr) for e in range(cfg.passes("stage2"))] == [1e-4] * 5


def test_row_passes(data, tmp_path, monkeypatch, capsys):
    """Official train_*_stage.py loop range(0, epochs + 1) with the README's --epochs 25 / --epochs 4."""
    from coreecho.cli import main
    from coreecho.train import train_stage1, train_stage2
    from coreecho.train.stage1 import build_stage1_model

    seen = _stub_run(monkeypatch)
    train_stage1(_small(data, tmp_path / "s1"))
    assert seen["cfg"].epochs == 26
    build_stage1_model(_small(data, tmp_path)).save_pretrained(tmp_path / "s1model")
    train_stage2(_small(data, tmp_path / "s2", init=str(tmp_path / "s1model")))
    assert seen["cfg"].epochs == 5
    # the README's commands: no --epochs
    common = ["--data", str(data), "--preset", "micro", "--init", "none", "--frames", "4", "--size", "32",
              "--workers", "0", "--device", "cpu", "--quiet", "--no-tensorboard"]
    assert main(["train", "stage1", "--out", str(tmp_path / "c1"), *common]) == 0
    assert seen["cfg"].epochs == 26
    # stage 2 takes frames, size and the encoder from its --init model (giving them is refused, issue 23)
    stage2_options = ["--data", str(data), "--init", str(tmp_path / "s1model"), "--workers", "0", "--device", "cpu",
                      "--quiet", "--no-tensorboard"]
    assert main(["train", "stage2", "--out", str(tmp_path / "c2"), *stage2_options]) == 0
    assert seen["cfg"].epochs == 5
    assert main(["train", "stage1", "--out", str(tmp_path / "c3"), "--epochs", "3", *common[:2], "--preset",
                 "micro", "--init", "none", "--device", "cpu", "--quiet"]) == 0
    assert seen["cfg"].epochs == 3  # --epochs counts passes
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "stage1", "--help"])  # each stage's help lists its options
    assert "passes over the training set (default: 26 for stage1, 5 for stage2" in " ".join(
        capsys.readouterr().out.split())


def test_row_batch_size_drop_last_and_shuffle(data, tmp_path, monkeypatch):
    """Official set_loader: DataLoader(train, batch_size=16, shuffle=True, drop_last=True); the lr set per pass."""
    from coreecho.train import train_stage1

    assert TrainConfig().batch_size == 16
    steps = []

    def record(encoder, head, clips, ef, **kw):
        steps.append((clips.shape, kw["opt_encoder"].param_groups[0]["lr"], kw["opt_head"].param_groups[0]["lr"],
                      kw["loss_fn"].temperature))
        return {"loss": 0.0, "l1": 0.0}

    batches = []
    monkeypatch.setattr(stage1_module, "stage1_step", record)
    original = engine_module.DataLoader

    def loader(*args, **kwargs):
        for batch in original(*args, **kwargs):
            batches.append(batch["index"].tolist())
            yield batch

    monkeypatch.setattr(engine_module, "DataLoader", loader)
    train_stage1(_small(data, tmp_path / "run", epochs=2, lr_decay_epochs=(1,)))
    # 10 training videos, batch 4: 2 full batches per pass (the last 2 videos are dropped), each video once
    assert [s[0] for s in steps] == [torch.Size([4, 2, 3, 4, 32, 32])] * 4
    per_pass = [batches[0] + batches[1], batches[2] + batches[3]]
    assert all(len(set(p)) == 8 and set(p) <= set(range(10)) for p in per_pass)
    assert per_pass[0] != per_pass[1] and per_pass[0] != sorted(per_pass[0])  # shuffled, anew each pass
    assert [s[1] for s in steps] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5]) and [s[2] for s in steps] == [
        s[1] for s in steps]
    assert {s[3] for s in steps} == {1.0}  # the loss temperature reaches the loss


# ------------------------------------------------------------------------------------------------------------ loss
def test_row_loss_temperature_label_distance_and_feature_similarity():
    """Official RnCLoss(temperature=1.0 from the README's --temp 1.0, label_diff='l1', feature_sim='l2')."""
    from coreecho.losses import CoReLoss

    assert TrainConfig().temperature == 1.0
    torch.manual_seed(0)
    feats = torch.randn(5, 2, 3, dtype=torch.float64)
    labels = torch.tensor([30.0, 50.0, 50.0, 41.0, 70.0], dtype=torch.float64)  # a tie: ties count as negatives
    z = torch.cat([feats[:, 0], feats[:, 1]])
    y = labels.repeat(2)
    n, tau = len(y), 1.0
    sim = -torch.cdist(z, z) / tau  # feature similarity: minus the L2 distance
    dist = (y[:, None] - y[None, :]).abs()  # label distance: L1
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            others = [k for k in range(n) if k != i and dist[i, k] >= dist[i, j]]
            total -= float(sim[i, j] - torch.logsumexp(sim[i, others], 0))
    reference = total / (n * (n - 1))
    assert float(CoReLoss(temperature=TrainConfig().temperature)(feats, labels)) == pytest.approx(reference,
                                                                                                rel=1e-10)
    # another label distance (squared) or similarity (cosine) would change the value
    assert float(CoReLoss(temperature=2.0)(feats, labels)) != pytest.approx(reference, rel=1e-3)


# ------------------------------------------------------------------------------------------------------------ head
def test_row_head_trained_on_detached_embeddings_of_both_views():
    """Official train(): RnC step of the encoder, then L1 of the regressor on features.detach() of both views."""
    from coreecho import CoReEcho
    from coreecho.losses import CoReLoss
    from coreecho.models.config import ModelConfig
    from coreecho.train.stage1 import stage1_step

    torch.manual_seed(0)
    cfg = ModelConfig(architecture="uniformer_custom", encoder_args=dict(MICRO))
    a, b = (CoReEcho(cfg).double().eval() for _ in range(2))
    b.load_state_dict(a.state_dict())
    clips = torch.randn(3, 2, 3, 4, 32, 32, dtype=torch.float64)
    ef = torch.tensor([30.0, 50.0, 70.0], dtype=torch.float64)

    def opts(m):
        return torch.optim.AdamW(m.encoder.parameters(), lr=1e-3), torch.optim.AdamW(m.head.parameters(), lr=1e-3)

    ea, ha = opts(a)
    stage1_step(a.encoder, a.head, clips, ef, loss_fn=CoReLoss(), opt_encoder=ea, opt_head=ha)
    # the official order, written out
    eb, hb = opts(b)
    feats = b.encoder(clips.flatten(0, 1)).view(3, 2, -1)
    CoReLoss()(feats, ef).backward()
    eb.step()
    detached = feats.detach()
    pred = b.head(torch.cat([detached[:, 0], detached[:, 1]]))
    torch.nn.functional.l1_loss(pred, ef.repeat(2)).backward()
    hb.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-9, atol=1e-12, msg=name)
        if name.startswith("encoder."):  # no gradient of the head's loss reached the encoder
            torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-9, atol=1e-15, msg=name)


def test_row_head_architecture_and_initialisation():
    """Official get_shallow_mlp_head: BN, Dropout(0.4), Linear(512, 512), BN, GELU, Dropout(0.4), Linear(512, 1),
    last bias 55.6; the encoder starts from Kinetics-400 UniFormer-S (README: uniformer_small_k400_16x8.pth)."""
    from torch import nn

    from coreecho.models.head import RegressionHead

    head = RegressionHead(512)
    kinds = [type(m) for m in head]
    assert kinds == [nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Dropout, nn.Linear]
    assert head[1].p == head[5].p == 0.4 and head[2].out_features == 512 and float(head[6].bias.detach()) == pytest.approx(55.6)
    assert TrainConfig().resolved_init() == "uniformer-small-k400" and TrainConfig().reinit_head is False


# -------------------------------------------------------------------------------------------------- model selection
def test_row_model_selection(data, tmp_path, monkeypatch):
    """Official validate() on EchoNet(split='val'): one random clip per video, drawn anew each pass, no
    augmentation; the best by L1 (MAE) with `valid_error <= best_error` (a tie goes to the later pass)."""
    from coreecho.train import train_stage1

    cfg = _small(data, tmp_path / "run", epochs=3)
    assert TrainConfig().val_clips == 1
    _, val = engine_module.build_datasets(cfg, views=2)
    assert (val.clips, val.clip_policy, val.pipeline.train) == (1, "random", False)
    draws = []
    for epoch in range(20):
        val.set_epoch(epoch)
        draws.append(tuple(int(val[i]["starts"][0]) for i in range(len(val))))
    assert len(set(draws)) > 1 and val[0]["starts"].shape == (1,)

    def constant(*args, **kwargs):  # the same validation error every pass
        return [{"ef_true": 50.0, "ef_pred": 52.0}, {"ef_true": 40.0, "ef_pred": 41.0}]

    monkeypatch.setattr(engine_module, "predict_dataset", constant)
    monkeypatch.setattr(stage1_module, "stage1_step", lambda *a, **k: {"loss": 0.0, "l1": 0.0})
    result = train_stage1(cfg)
    assert result.best_val_mae == pytest.approx(1.5) and result.best_epoch == 2


# --------------------------------------------------------------------------------------------------------- stage 2
def test_row_stage2_frozen_encoder_and_head_training(data, tmp_path, monkeypatch):
    """Official train_second_stage.py: model.eval() under no_grad, the stage-1 regressor trained with L1 on one
    augmented clip per video, AdamW over the regressor only."""
    from coreecho.hub import load_model
    from coreecho.train import train_stage2
    from coreecho.train.stage1 import build_stage1_model

    torch.manual_seed(0)
    s1 = build_stage1_model(_small(data, tmp_path, encoder_args={**MICRO, "drop_rate": 0.3}))
    s1.save_pretrained(tmp_path / "s1")
    seen = _stub_run(monkeypatch)
    train_stage2(_small(data, tmp_path / "s2", init=str(tmp_path / "s1"), batch_size=2))
    stage, train = seen["stage"], seen["train_set"]
    assert list(stage.optimizers) == ["head"] and train.views == 1 and train.pipeline.train
    assert train.preprocess.shift_range() == (-6, 6)  # stage 2 augments as stage 1
    stage.train_modes()
    assert not stage.encoder.training and stage.head.training
    assert not any(p.requires_grad for p in stage.model.encoder.parameters())
    first = load_model(tmp_path / "s1", device="cpu")
    for a, b in zip(stage.model.head.state_dict().values(), first.head.state_dict().values()):
        assert torch.equal(a, b)  # continues the stage-1 head
    before = {k: v.clone() for k, v in stage.model.state_dict().items()}
    batch = torch.utils.data.default_collate([train[0], train[1]])
    assert batch["video"].shape == (2, 3, 4, 32, 32)
    stage.step(batch)
    after = stage.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head."))


# ------------------------------------------------------------------------------------------------------- precision
def test_row_precision():
    """The official scripts train in fp32 (no autocast). coreecho's default ``auto`` is fp32 on CPUs and bf16/fp16
    autocast on CUDA (a documented deviation for speed); ``--precision fp32`` is the official arithmetic."""
    from coreecho.precision import autocast_for, resolve_precision

    assert TrainConfig().precision == "auto" and resolve_precision("auto", "cpu", training=True) == "fp32"
    context, used = autocast_for(torch.device("cpu"), TrainConfig(precision="fp32").precision)
    with context():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32 and used == "fp32"
