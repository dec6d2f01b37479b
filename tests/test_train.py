"""Training: both stages on a tiny phantom layout, exact resume after a mid-epoch kill, evaluate CLI, starts files."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from coreecho.errors import InputError
from coreecho.train.config import TrainConfig

MICRO = {"drop_rate": 0.0}
# clips of 4 frames at 32 px (the phantoms are 112 px and are resized): a micro encoder step takes milliseconds


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from coreecho.data.phantom import write_echonet_layout

    root = tmp_path_factory.mktemp("phantom")
    write_echonet_layout(root, 12, seed=5, n_frames=(24, 32), splits=(8, 2, 2), progress=False)
    return root


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), preset="micro", init="none", frames=4, stride=4, size=32,
                batch_size=4, epochs=1, num_workers=0, progress=False, tensorboard=False, device="cpu", seed=3,
                encoder_args=dict(MICRO))
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> dict:
    """Stage 1 through the CLI, stage 2 through the API, one epoch each."""
    from coreecho.cli import main
    from coreecho.train import train_stage2

    out = tmp_path_factory.mktemp("runs")
    rc = main(["train", "stage1", "--data", str(data), "--out", str(out / "s1"), "--preset", "micro", "--init", "none",
               "--frames", "4", "--stride", "4", "--size", "32", "--batch-size", "4", "--epochs", "1", "--workers", "0",
               "--device", "cpu", "--no-progress", "--no-tensorboard", "--encoder-args", '{"drop_rate": 0.0}',
               "--seed", "3"])
    assert rc == 0
    s2 = train_stage2(_cfg(data, out / "s2", init=str(out / "s1"), command="pytest stage2"))
    return {"out": out, "s2": s2}


def test_stage1_stage2_smoke(trained):
    from coreecho.hub import load_model

    s1 = trained["out"] / "s1"
    for name in ("checkpoint_last.pt", "metrics.csv", "train_config.json", "best_model/config.json",
                 "last_model/model.safetensors"):
        assert (s1 / name).is_file(), name
    assert len((s1 / "metrics.csv").read_text().splitlines()) == 2
    s2 = trained["s2"]
    assert s2.final_model == trained["out"] / "s2" / "model" and np.isfinite(s2.best_val_mae)
    meta = json.loads((s2.final_model / "config.json").read_text())["metadata"]
    assert meta["stage"] == "stage2" and meta["seed"] == 3 and meta["command"] == "pytest stage2"
    assert meta["recipe"]["head_lr"] == 1e-4 and "val_mae" in meta["metrics"]
    assert meta["stage1"]["stage"] == "stage1" and meta["stage1"]["recipe"]["temperature"] == 1.0
    model = load_model(s2.final_model, device="cpu")
    assert model.config.preprocessing.frames == 4 and model.embed_dim == 64
    # stage 2 trains the head only: the encoder weights equal stage 1's best
    s1_model = load_model(s1 / "best_model", device="cpu")
    for (k, a), b in zip(model.encoder.state_dict().items(), s1_model.encoder.state_dict().values()):
        assert torch.equal(a, b), k


def _history(result) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in result.history]


def _assert_same_weights(dir_a: Path, dir_b: Path) -> None:
    from safetensors.torch import load_file

    a, b = load_file(str(dir_a / "model.safetensors")), load_file(str(dir_b / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_resume_after_mid_epoch_kill_is_exact(data, trained, tmp_path, stage):
    from coreecho.train import TrainingInterrupted, train_stage1, train_stage2

    train = train_stage1 if stage == "stage1" else train_stage2
    extra = {} if stage == "stage1" else {"init": str(trained["out"] / "s1")}
    # 8 training videos, batch 2: 4 steps per epoch; 2 epochs; checkpoints every 2 steps.
    kw = dict(batch_size=2, epochs=2, save_every_steps=2, lr=1e-3, head_lr=1e-3, lr_decay_epochs=(1,), **extra)
    full = train(_cfg(data, tmp_path / "full", **kw))
    with pytest.raises(TrainingInterrupted):
        train(_cfg(data, tmp_path / "killed", stop_after_steps=7, **kw))  # last checkpoint: epoch 1, step 2
    ckpt = torch.load(tmp_path / "killed" / "checkpoint_last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (1, 2, 6)
    resumed = train(_cfg(data, tmp_path / "killed", resume=True, **kw))
    assert _history(resumed) == _history(full)
    assert resumed.best_epoch == full.best_epoch and resumed.best_val_mae == full.best_val_mae
    _assert_same_weights(tmp_path / "full" / "last_model", tmp_path / "killed" / "last_model")


def _test_starts(data: Path) -> dict[str, list[int]]:
    from coreecho.data.echonet import EchoNetDynamic

    ds = EchoNetDynamic(data, "test", frames=4, stride=4)
    return {name: [0, 1, 2 + i] for i, name in enumerate(ds.names)}


def test_evaluate_cli_with_json_csv_and_pickle_starts(data, trained, tmp_path, capsys):
    from coreecho.cli import main
    from coreecho.train.starts import load_starts, save_starts

    starts = _test_starts(data)
    model = str(trained["s2"].final_model)
    tables = []
    for ext in ("json", "csv", "pkl"):
        path = save_starts(tmp_path / f"starts.{ext}", starts)
        assert {k: v.tolist() for k, v in load_starts(path).items()} == starts
        out_csv = tmp_path / f"per_video_{ext}.csv"
        rc = main(["evaluate", "--data", str(data), "--split", "test", "--model", model, "--starts", str(path),
                   "--output", str(out_csv), "--batch-size", "4", "--device", "cpu", "--bootstrap", "50"])
        assert rc == 0
        tables.append(out_csv.read_text())
    assert tables[0] == tables[1] == tables[2]
    lines = tables[0].splitlines()
    assert lines[0] == "name,ef_true,ef_pred,abs_error,n_clips,clip_starts,clip_efs" and len(lines) == 3
    first = lines[1].split(",")
    assert first[5] == ";".join(str(s) for s in starts[first[0]])
    clip_efs = [float(v) for v in first[6].split(";")]
    assert abs(np.mean(clip_efs) - float(first[2])) < 1e-4
    assert "MAE" in capsys.readouterr().out
    rc = main(["evaluate", "--data", str(data), "--split", "test", "--model", model, "--clips", "2", "--json",
               "--device", "cpu", "--bootstrap", "0"])
    assert rc == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 2 and {"mae", "rmse", "r2"} <= set(metrics)


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code(tmp_path, data, trained):
    from coreecho.cli import main
    from coreecho.train.starts import RestrictedUnpickler, load_starts

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"a.avi": _Evil(str(marker))}))
    with pytest.raises(InputError, match=r"system.*not allowed"):
        load_starts(evil)
    builtins_eval = b"cbuiltins\neval\n(S'1+1'\ntR."
    with pytest.raises(InputError, match="builtins.eval"):
        RestrictedUnpickler(io.BytesIO(builtins_eval)).load()
    rc = main(["evaluate", "--data", str(data), "--model", str(trained["s2"].final_model), "--starts", str(evil),
               "--device", "cpu"])
    assert rc == 1 and not marker.exists()
    # the official format (numpy arrays, any protocol) is admitted
    ok = tmp_path / "ok.pkl"
    ok.write_bytes(pickle.dumps({"v.avi": np.array([0, 5, 9])}, protocol=2))
    assert load_starts(ok)["v.avi"].tolist() == [0, 5, 9]


def test_metrics_and_bootstrap():
    from coreecho.train.metrics import regression_metrics

    rng = np.random.default_rng(0)
    truth = rng.uniform(20, 80, 300)
    pred = truth + rng.normal(0, 3, 300)
    m = regression_metrics(truth, pred, bootstrap=500, seed=1)
    assert m["mae"] == pytest.approx(np.abs(truth - pred).mean())
    assert m["rmse"] == pytest.approx(np.sqrt(((truth - pred) ** 2).mean()))
    from sklearn.metrics import r2_score

    assert m["r2"] == pytest.approx(r2_score(truth, pred))
    for k in ("mae", "rmse", "r2"):
        lo, hi = m[f"{k}_ci"]
        assert lo < m[k] < hi
    assert regression_metrics(truth, pred, bootstrap=500, seed=1) == m


def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    from coreecho.train import checkpoint as ck

    path = tmp_path / "checkpoint_last.pt"
    ck.save_checkpoint(path, {"epoch": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", boom)
    with pytest.raises(OSError):
        ck.save_checkpoint(path, {"epoch": 2})
    assert ck.load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_last.pt"]


def test_config_defaults_roundtrip_and_presets():
    cfg = TrainConfig()
    assert (cfg.frames, cfg.stride, cfg.size, cfg.pad, cfg.batch_size, cfg.epochs) == (36, 4, 112, 12, 16, None)
    assert (cfg.passes("stage1"), cfg.passes("stage2"), cfg.pad_style) == (26, 5, "coreecho")  # official (issue 22)
    assert (cfg.lr, cfg.weight_decay, cfg.temperature, cfg.val_clips) == (1e-4, 1e-4, 1.0, 1)
    assert cfg.resolved_init() == "uniformer-small-k400"
    assert TrainConfig(preset="tiny").resolved_init() == "none"
    assert cfg.lr_at(14) == 1e-4 and cfg.lr_at(15) == pytest.approx(1e-5)
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_cached_batch_step_equals_plain_step():
    """--cached-batch: with BatchNorm in eval mode and no dropout, the gradient-cached step equals the plain one."""
    from coreecho import CoReEcho
    from coreecho.losses import CoReLoss
    from coreecho.models.config import ModelConfig
    from coreecho.train.stage1 import stage1_step

    torch.manual_seed(0)
    cfg = ModelConfig(architecture="uniformer_custom", encoder_args={
        "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8, "drop_rate": 0.0})
    models = [CoReEcho(cfg).double().eval() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    clips = torch.randn(3, 2, 3, 4, 32, 32, dtype=torch.float64)
    ef = torch.tensor([30.0, 50.0, 70.0], dtype=torch.float64)
    results = []
    for model, micro in zip(models, (None, 2)):
        opt_e = torch.optim.AdamW(model.encoder.parameters(), lr=1e-3)
        opt_h = torch.optim.AdamW(model.head.parameters(), lr=1e-3)
        results.append(stage1_step(model.encoder, model.head, clips, ef, loss_fn=CoReLoss(), opt_encoder=opt_e,
                                   opt_head=opt_h, micro_batch=micro))
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-12)
    # gradients (left in .grad by the step); a few are analytically zero (the loss only sees distances), so the
    # absolute tolerance is far below any real gradient (~1e-3 here)
    for (k, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-15, msg=k)


def test_import_coreecho_does_not_import_training_code():
    code = ("import sys, coreecho; coreecho.CoReEcho; import coreecho.data.echonet; "
            "print([m for m in sys.modules if m.startswith('coreecho.train')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_phantom_example_script_runs(tmp_path):
    """examples/train_phantom_echonet.py end to end, reduced (the full run is documented in docs/training.md)."""
    script = Path(__file__).resolve().parents[1] / "examples" / "train_phantom_echonet.py"
    cmd = [sys.executable, str(script), "--out", str(tmp_path / "run"), "--n-train", "24", "--n-val", "8",
           "--n-test", "8", "--epochs1", "2", "--epochs2", "2", "--size", "32", "--frames", "8", "--batch-size", "8",
           "--workers", "0", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_test"] == 8 and np.isfinite(summary["test_mae"]) and summary["mean_predictor_mae"] > 0
    assert "improvement over the mean predictor" in proc.stdout
    assert (tmp_path / "run" / "stage2" / "model" / "config.json").is_file()


def test_cli_help_lists_train_and_evaluate(capsys):
    from coreecho.cli import main

    for argv in (["--help"], ["train", "--help"], ["train", "stage1", "--help"], ["evaluate", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "train" in out and "evaluate" in out and "--cached-batch" in out and "--starts" in out


def test_tensorboard_events_when_installed(data, tmp_path):
    pytest.importorskip("tensorboard")
    from coreecho.train import train_stage2

    from coreecho import CoReEcho
    from coreecho.models.config import ModelConfig, PreprocessConfig

    init = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args=dict(MICRO, depth=[1, 1, 1, 1],
                                embed_dim=[8, 16, 32, 64], head_dim=8),
                                preprocessing=PreprocessConfig(frames=4, stride=4, size=32)))
    folder = init.save_pretrained(tmp_path / "init")  # stage 2 starts from any saved model
    train_stage2(_cfg(data, tmp_path / "s2", init=str(folder), tensorboard=True))
    events = list((tmp_path / "s2" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
