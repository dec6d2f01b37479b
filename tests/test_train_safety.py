"""Training runs that cannot destroy earlier work (issue 23): a table of faults, each ending in a typed refusal or a
correct recovery, with every file written before compared by sha256 before and after.

Runs are tiny (a micro encoder on 4-frame 32 px clips of phantom videos) and go through the real CLI or API.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coreecho.errors import ConfigError, DatasetError
from coreecho.train.config import TrainConfig
from test_train import _cfg  # the micro recipe the training tests share

pytestmark = pytest.mark.usefixtures("one_thread")

MICRO = {"drop_rate": 0.0}
S1 = ["--preset", "micro", "--init", "none", "--frames", "4", "--stride", "4", "--size", "32", "--batch-size", "4",
      "--epochs", "1", "--workers", "0", "--device", "cpu", "--quiet", "--no-tensorboard", "--seed", "3"]
S2 = ["--batch-size", "4", "--epochs", "1", "--workers", "0", "--device", "cpu", "--quiet", "--no-tensorboard"]


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (a folder or a file), by relative path."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent if root.is_file() else root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def cli(argv, capsys) -> tuple[int, str]:
    from coreecho.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from coreecho.data.layouts import write_echonet_layout

    root = tmp_path_factory.mktemp("phantom") / "data"
    write_echonet_layout(root, 12, seed=5, n_frames=(24, 32), splits=(8, 2, 2), progress=False)
    return root


@pytest.fixture(scope="module")
def stage1(data, tmp_path_factory) -> Path:
    from coreecho.cli import main

    out = tmp_path_factory.mktemp("runs") / "s1"
    assert main(["train", "stage1", "--data", str(data), "--out", str(out), *S1]) == 0
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst




# ------------------------------------------------------------------------------------------- 1. run folders
def test_rerun_without_resume_is_refused_and_changes_nothing(data, stage1, capsys):
    before = digests(stage1)
    code, text = cli(["train", "stage1", "--data", data, "--out", stage1, *S1], capsys)
    assert code == 2 and "holds another run's files" in text and "--resume" in text and "--overwrite" in text
    assert digests(stage1) == before


def test_stage2_into_the_stage1_folder_is_refused(data, stage1, capsys):
    before = digests(stage1)
    for out in (stage1, stage1 / "best_model"):
        code, text = cli(["train", "stage2", "--data", data, "--out", out, "--init", stage1, *S2], capsys)
        assert code == 2 and "is the --init model" in text, text
    assert digests(stage1) == before


def test_overwrite_starts_a_new_run(data, stage1, tmp_path, capsys):
    run = _copy(stage1, tmp_path / "s1")
    (run / "checkpoint_prev.pt").write_bytes(b"an older run's file")
    code, text = cli(["train", "stage1", "--data", data, "--out", run, *S1, "--seed", "4", "--overwrite"], capsys)
    assert code == 0, text
    assert not (run / "checkpoint_prev.pt").exists()  # the previous run's files went; only the new run's are there
    before = digests(run)
    code, text = cli(["train", "stage1", "--data", data, "--out", run, *S1, "--overwrite", "--resume"], capsys)
    assert code == 2 and "give one" in text and digests(run) == before
    assert json.loads((run / "train_config.json").read_text())["seed"] == 4
    assert len((run / "metrics.csv").read_text().splitlines()) == 2


def test_a_second_run_on_a_locked_folder_is_refused_at_once(data, tmp_path, capsys):
    from coreecho._lock import output_lock

    out = tmp_path / "run"
    with output_lock(out, command="coreecho train stage1 (the first run)"):
        code, text = cli(["train", "stage1", "--data", data, "--out", out, *S1], capsys)
    assert code == 1 and "the first run" in text and "is writing this output" in text
    assert not out.exists()


def test_overwrite_refused_by_bad_data_keeps_the_previous_run(data, stage1, tmp_path, capsys):
    bad = _copy(data, tmp_path / "bad")
    _edit_filelist(bad, lambda rows: rows[0].update(EF="150"))
    run = _copy(stage1, tmp_path / "s1")
    before = digests(run)
    code, text = cli(["train", "stage1", "--data", bad, "--out", run, *S1, "--overwrite"], capsys)
    assert code == 1 and "EF out of 0-100" in text
    assert digests(run) == before


# ----------------------------------------------------------------------------------- 5. settings and divergence
BAD_FLAGS = [
    (["--lr", "nan"], "--lr"), (["--lr", "0"], "--lr"), (["--head-lr", "1e6"], "--head-lr"),
    (["--lr-decay", "nan"], "--lr-decay"), (["--lr-decay", "1e9"], "--lr-decay"), (["--lr-decay", "-1"], "--lr-decay"),
    (["--lr-decay-epochs", "-3"], "--lr-decay-epochs"), (["--weight-decay", "-1"], "--weight-decay"),
    (["--temperature", "0"], "--temperature"), (["--temperature", "inf"], "--temperature"),
    (["--batch-size", "0"], "--batch-size"), (["--micro-batch", "0"], "--micro-batch"),
    (["--seed", "-1"], "--seed"), (["--pad-style", "sideways"], "--pad-style"),
]


@pytest.mark.parametrize("extra,flag", BAD_FLAGS, ids=[" ".join(e) for e, _ in BAD_FLAGS])
def test_bad_values_are_refused_when_parsed(extra, flag, data, tmp_path, capsys):
    from coreecho.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "stage1", "--data", str(data), "--out", str(tmp_path / "r"), *S1, *extra])
    assert exc.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


STAGE_REFUSALS = [
    ("stage1", ["--batch-size", "1"], "stage 1 needs at least 2 videos"),
    ("stage1", ["--reinit-head"], "--reinit-head: not used by stage1"),
    ("stage2", ["--frames", "8"], "--frames: not used by stage2"),
    ("stage2", ["--size", "64"], "--size: not used by stage2"),
    ("stage2", ["--preset", "tiny"], "--preset: not used by stage2"),
    ("stage2", ["--lr", "1e-3"], "--lr: not used by stage2"),
    ("stage2", ["--temperature", "2"], "--temperature: not used by stage2"),
    ("stage2", ["--head-args", '{"dropout": 0.1}'], "--head-args: not used by stage2"),
    ("stage2", ["--batch-size", "1"], "stage 2 needs at least 2 videos"),
]


@pytest.mark.parametrize("stage,extra,text", STAGE_REFUSALS, ids=[f"{s} {' '.join(e)}" for s, e, _ in STAGE_REFUSALS])
def test_options_a_stage_cannot_use_are_refused(stage, extra, text, data, stage1, tmp_path, capsys):
    base = S1[:-4] if stage == "stage1" else ["--init", stage1, "--workers", "0", "--device", "cpu"]
    argv = ["train", stage, "--data", data, "--out", tmp_path / "r", *base, *extra]
    code, out = cli(argv, capsys)
    assert code == 2 and text in out, out
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("values,text", [
    ({"lr": "0.1"}, "lr must be a number, got str"),
    ({"batch_size": 2.5}, "batch_size must be an integer"),
    ({"lr_decay_epochs": ["15"]}, "lr_decay_epochs must be a list of integers"),
    ({"encoder_args": [1, 2]}, "encoder_args must be an object"),
    ({"resume": "yes"}, "resume must be true or false"),
    ({"lr_decay": 1e9}, "lr_decay must be a finite number in (0, 1]"),
    ({"head_lr": 0.5, "head_weight_decay": 3.0}, "head_lr x head_weight_decay must be < 1"),
])
def test_config_values_are_typed_and_named(values, text, data, tmp_path, capsys):
    with pytest.raises(ConfigError, match=__import__("re").escape(text)):
        TrainConfig(**values)
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(values))
    code, out = cli(["train", "stage1", "--data", data, "--out", tmp_path / "r", "--config", config], capsys)

    def field_names(message: str) -> str:  # the CLI may name a field by its option (--batch-size for batch_size)
        return message.replace("--", "").replace("-", "_")

    assert code == 1 and field_names(text) in field_names(out) and "bug" not in out, out


def _nan_at(module, name: str, call: int):
    """Wrap a step function so that its ``call``-th call reports a NaN loss (after a real step)."""
    real = getattr(module, name)
    calls = {"n": 0}

    def step(*args, **kwargs):
        result = real(*args, **kwargs)
        calls["n"] += 1
        return {k: (float("nan") if calls["n"] == call else v) for k, v in result.items()}

    return step


def _exploding_validation(engine, call: int):
    real = engine.predict_dataset
    calls = {"n": 0}

    def predict(*args, **kwargs):
        rows = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == call:
            rows = [dict(r, ef_pred=r["ef_pred"] + 5e3) for r in rows]
        return rows

    return predict


@pytest.mark.parametrize("where", ["loss", "validation"])
def test_divergence_stops_the_run_and_keeps_the_best_model(where, data, stage1, tmp_path, monkeypatch):
    from coreecho.hub import load_model
    from coreecho.train import engine, stage2
    from coreecho.train.checkpoint import load_checkpoint
    from coreecho.train.divergence import TrainingDiverged

    if where == "loss":  # 8 videos, batch 4: 2 steps per epoch; the 3rd step is epoch 2, step 1
        monkeypatch.setattr(stage2, "stage2_step", _nan_at(stage2, "stage2_step", 3))
        expect = r"diverged at epoch 2, step 1 \(global step 3\): training l1 is nan"
    else:
        monkeypatch.setattr(engine, "predict_dataset", _exploding_validation(engine, 2))
        expect = r"diverged at epoch 2, validation .*validation MAE is .* EF points \(above 1000\)"
    out = tmp_path / "s2"
    kept: dict = {}
    real_export = engine._export

    def export(model, folder, metadata, title):
        result = real_export(model, folder, metadata, title)
        kept.update(digests(out / "best_model"))
        return result

    monkeypatch.setattr(engine, "_export", export)
    with pytest.raises(TrainingDiverged, match=expect) as err:
        stage2.train_stage2(_cfg(data, out, init=str(stage1), epochs=3))
    assert "best model so far is kept" in str(err.value)
    assert kept and digests(out / "best_model") == kept  # the epoch-1 best model, untouched
    model = load_model(out / "best_model", device="cpu")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert load_checkpoint(out / "checkpoint_last.pt")["epoch"] == 1  # the last checkpoint is from before
    assert not (out / "last_model").exists() and not (out / "model").exists()


# ------------------------------------------------------------------------------------------------- 6. data
def _edit_filelist(root: Path, edit) -> None:
    path = root / "FileList.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    edit(rows)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _first(rows, split):
    return next(r for r in rows if r["Split"] == split)


BAD_DATA = [
    ("ef-150", lambda rows: rows[0].update(EF="150"), "EF out of 0-100: 1 row(s), e.g. row 2"),
    ("ef-negative", lambda rows: rows[1].update(EF="-5"), "EF out of 0-100: 1 row(s), e.g. row 3"),
    ("ef-text", lambda rows: rows[2].update(EF="n/a"), "EF not a finite number: 1 row(s), e.g. row 4"),
    ("duplicate-row", lambda rows: rows.append(dict(rows[0])), "listed twice: 1 name(s)"),
    ("two-splits", lambda rows: rows.append(dict(_first(rows, "TRAIN"), Split="VAL")), "in two splits: 1 video(s)"),
    ("conflicting-labels", lambda rows: rows.append(dict(rows[0], EF="12.5")), "conflicting labels: 1 name(s)"),
]


@pytest.mark.parametrize("name,edit,text", BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_bad_listings_are_refused_before_the_first_step(name, edit, text, data, tmp_path, capsys):
    bad = _copy(data, tmp_path / "data")
    _edit_filelist(bad, edit)
    before = digests(bad)
    code, out = cli(["train", "stage1", "--data", bad, "--out", tmp_path / "r", *S1], capsys)
    assert code == 1 and text in out, out
    assert not (tmp_path / "r").exists() and digests(bad) == before


def test_left_out_videos_are_counted_in_the_summary(data, tmp_path, capsys):
    from coreecho.data.echonet_audit import audit_echonet

    root = _copy(data, tmp_path / "data")
    train_names = []
    _edit_filelist(root, lambda rows: (train_names.extend(r["FileName"] for r in rows if r["Split"] == "TRAIN"),
                                       _first(rows, "TEST").update(Split="")))
    tracings = root / "VolumeTracings.csv"
    lines = tracings.read_text().splitlines(keepends=True)
    dropped = set(train_names[:2])
    tracings.write_text("".join(line for line in lines if line.split(",")[0].removesuffix(".avi") not in dropped))
    audit = audit_echonet(root)
    assert not audit.errors and len(audit.warnings) == 2
    assert audit.summary() == ("data: train 6 videos, val 2 (left out: 1 row(s) with an empty or unknown Split; "
                               "2 train without 2 traced frames)")
    code, out = cli(["train", "stage1", "--data", root, "--out", tmp_path / "r", *S1], capsys)
    assert code == 0 and "data: train 6 videos, val 2 (left out:" in out
    assert "warning:" in out and "2 of 8 train video(s) have fewer than 2 traced frames" in out


def test_resume_refuses_a_listing_changed_since_the_checkpoint(data, stage1, tmp_path, capsys):
    edited = _copy(data, tmp_path / "data")
    _edit_filelist(edited, lambda rows: _first(rows, "TRAIN").update(EF="33.3"))
    run = _copy(stage1, tmp_path / "s1")
    before = digests(run)
    code, out = cli(["train", "stage1", "--data", edited, "--out", run, *S1[:-8], "--epochs", "2", "--workers", "0",
                     "--device", "cpu", "--quiet", "--no-tensorboard", "--seed", "3", "--resume"], capsys)
    assert code == 1 and "dataset listing" in out and "changed since this checkpoint" in out, out
    assert digests(run) == before
    # the same listing in another folder (the data moved) resumes, and removes what interrupted writes left
    stale = [run / ".metrics.csv.coreecho-4194304-0badc0de.tmp",
             run / "best_model" / ".model.safetensors.coreecho-4194304-1234abcd.tmp"]
    fresh = run / ".result.json.coreecho-4194304-feedbeef.tmp"  # too recent: a writer may still be at it
    for path in stale + [fresh]:
        path.write_bytes(b"half a file")
    for path in stale:
        os.utime(path, (path.stat().st_mtime - 7200, path.stat().st_mtime - 7200))
    moved = _copy(data, tmp_path / "moved")
    code, out = cli(["train", "stage1", "--data", moved, "--out", run, *S1[:-8], "--epochs", "2", "--workers", "0",
                     "--device", "cpu", "--quiet", "--no-tensorboard", "--seed", "3", "--resume"], capsys)
    assert code == 0, out
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    assert not any(p.exists() for p in stale) and fresh.exists()


# ------------------------------------------------------------------------------------------- 7. model task
@pytest.fixture(scope="module")
def classifier(stage1, tmp_path_factory) -> Path:
    from coreecho.hub import load_model

    model = load_model(stage1 / "best_model", device="cpu")
    model.reset_head(2)
    model.config.metadata["finetune"] = {"task": "classification", "classes": 2}
    return model.save_pretrained(tmp_path_factory.mktemp("cls") / "classifier")


def test_a_classifier_is_refused_where_efs_are_needed(data, classifier, tmp_path, capsys):
    before = digests(classifier)
    video = next((data / "Videos").iterdir())
    cases = [
        (["evaluate", "--data", data, "--model", classifier, "--device", "cpu", "--bootstrap", "0"], "evaluate"),
        (["train", "stage2", "--data", data, "--out", tmp_path / "s2", "--init", classifier, *S2], "stage 2"),
        (["calibrate", classifier, "--data", data, "--device", "cpu"], "calibrate"),
        (["predict", video, "--model", classifier, "-o", tmp_path / "ef.csv", "--quiet"], "predict"),
    ]
    for argv, use in cases:
        code, out = cli(argv, capsys)
        assert code == 1 and "is a classification model with 2 output(s)" in out and use in out, out
        assert "bug" not in out
    assert digests(classifier) == before
    assert not (tmp_path / "s2").exists() and not (tmp_path / "ef.csv").exists()


def test_a_single_class_finetune_is_refused(stage1):
    from coreecho.errors import InputError
    from coreecho.hub import load_model
    from coreecho.train.transfer import finetune

    class OneClass:
        labels, names, task = [1, 1, 1, 1], ["a", "b", "c", "d"], "classification"

        def __len__(self):
            return 4

    with pytest.raises(InputError, match="at least 2 classes"):
        finetune(load_model(stage1 / "best_model", device="cpu"), OneClass(), mode="mlp", task="classification")


# ---------------------------------------------------------------------------------- 2. outputs never inputs
def test_evaluate_output_never_replaces_an_input(data, stage1, tmp_path, capsys):
    model = stage1 / "best_model"
    video = sorted((data / "Videos").iterdir())[0]
    before = {**digests(data), **digests(model)}
    base = ["evaluate", "--data", data, "--model", model, "--device", "cpu", "--bootstrap", "0", "--split", "val"]
    for target, text in [(data / "FileList.csv", "is also an input"), (data / "VolumeTracings.csv", "is also an input"),
                         (video, "is also an input"), (model / "config.json", "inside the model folder"),
                         (model / "new.csv", "inside the model folder")]:
        code, out = cli([*base, "--output", target, "--overwrite"], capsys)
        assert code == 2 and text in out, (target, out)
    assert {**digests(data), **digests(model)} == before
    result = tmp_path / "val.csv"
    assert cli([*base, "--output", result], capsys)[0] == 0
    first = digests(result)
    code, out = cli([*base, "--output", result], capsys)
    assert code == 2 and "--overwrite" in out and digests(result) == first
    assert cli([*base, "--output", result, "--overwrite"], capsys)[0] == 0


def test_finetune_and_calibrate_never_write_into_their_model(data, stage1, tmp_path, capsys):
    model = _copy(stage1 / "best_model", tmp_path / "model")
    before = digests(model)
    listing = tmp_path / "videos.csv"
    listing.write_text("path,label\n" + "".join(f"{p},{40 + i}\n" for i, p in
                                                enumerate(sorted((data / "Videos").iterdir())[:4])))
    for argv, text in [
        (["finetune", "--dataset", "csv", "--data", listing, "--model", model, "--save-model", model, "--folds", "0",
          "--overwrite"], "--save-model"),
        (["finetune", "--dataset", "csv", "--data", listing, "--model", model, "--output", model / "cv.json"],
         "inside the model folder"),
        (["calibrate", model, "--data", data, "--out", model / "sub"], "overlaps it"),
    ]:
        code, out = cli(argv, capsys)
        assert code == 2 and text in out, out
    assert digests(model) == before


# ------------------------------------------------------------------------------------- 4. failures named
@pytest.mark.parametrize("env,text", [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two'"),
    ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK='5'"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "-1"}, "LOCAL_RANK='-1'"),
    ({"WORLD_SIZE": "2", "RANK": "1"}, "MASTER_ADDR and MASTER_PORT are not set"),
])
def test_bad_distributed_environment_is_a_typed_error(env, text, data, tmp_path, monkeypatch, capsys):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out = cli(["train", "stage1", "--data", data, "--out", tmp_path / "r", *S1], capsys)
    assert code == 1 and text in out and "bug" not in out, out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_rendezvous_that_cannot_complete_times_out(monkeypatch):
    from coreecho.train.distributed import DistributedSetupError, init_distributed

    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(_free_port()), "COREECHO_DIST_TIMEOUT": "2"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DistributedSetupError, match=r"did not form within 2 s"):
        init_distributed("cpu")
    monkeypatch.setenv("COREECHO_DIST_TIMEOUT", "soon")
    with pytest.raises(DistributedSetupError, match="COREECHO_DIST_TIMEOUT"):
        init_distributed("cpu")


def test_a_corrupt_video_in_a_loader_worker_reads_as_one_line(data, tmp_path):
    bad = _copy(data, tmp_path / "data")
    with open(bad / "FileList.csv", newline="") as fh:
        name = _first(list(csv.DictReader(fh)), "TRAIN")["FileName"]
    (bad / "Videos" / f"{name}.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 8)
    argv = [sys.executable, "-m", "coreecho", "train", "stage1", "--data", str(bad), "--out", str(tmp_path / "r"),
            *S1[:-8], "--device", "cpu", "--quiet", "--no-tensorboard", "--workers", "1", "--epochs", "1"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if ": error:" in line]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-2000:]
    assert "a data loader worker failed" in errors[0] and name in errors[0]
    assert "Traceback" not in proc.stderr and "bug" not in proc.stderr and len(errors[0]) < 600


def _no_big_files() -> None:
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
@pytest.mark.slow  # the default suite stays under 5 min on 2 cores: opt-in with -m slow
def test_file_size_limit_while_saving_keeps_the_previous_checkpoint(data, stage1, tmp_path, capsys):
    from coreecho.train.checkpoint import load_checkpoint

    run = _copy(stage1, tmp_path / "s1")
    before = {k: v for k, v in digests(run).items() if k.startswith("checkpoint")}
    argv = [sys.executable, "-m", "coreecho", "train", "stage1", "--data", str(data), "--out", str(run), *S1[:-8],
            "--epochs", "2", "--workers", "0", "--device", "cpu", "--quiet", "--no-tensorboard", "--seed", "3",
            "--resume"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, preexec_fn=_no_big_files)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "file-size limit" in proc.stderr and "bug" not in proc.stderr, proc.stderr[-2000:]
    assert {k: v for k, v in digests(run).items() if k.startswith("checkpoint")} == before
    assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == 1
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind
    # the same command without the limit resumes and finishes
    code, out = cli(argv[3:], capsys)
    assert code == 0, out
    assert len((run / "metrics.csv").read_text().splitlines()) == 3


def test_read_only_checkpoint_folder_is_a_typed_line_and_keeps_the_checkpoint(data, stage1, tmp_path, monkeypatch,
                                                                             capsys):
    import errno

    run = _copy(stage1, tmp_path / "s1")
    before = {k: v for k, v in digests(run).items() if k.startswith("checkpoint")}
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):  # the file system turns read-only when the checkpoint is renamed
        if str(dst).endswith("checkpoint_last.pt"):
            raise OSError(errno.EROFS, "Read-only file system", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    code, out = cli(["train", "stage1", "--data", data, "--out", run, *S1[:-8], "--epochs", "2", "--workers", "0",
                     "--device", "cpu", "--quiet", "--no-tensorboard", "--seed", "3", "--resume"], capsys)
    assert code == 1 and "checkpoint_last.pt: cannot be written: the file system is read-only" in out, out
    assert "bug" not in out and "Traceback" not in out
    after = digests(run)
    assert {k: after.get(k) for k in before} == before  # every checkpoint written before is as it was


def test_a_killed_loader_worker_is_one_line(data, tmp_path, monkeypatch, capsys):
    from coreecho.data import echonet

    real = echonet.ClipDataset.__getitem__
    parent = os.getpid()

    def getitem(self, index):
        if os.getpid() != parent:  # in the worker process: die as the out-of-memory killer would kill it
            os._exit(137)
        return real(self, index)

    monkeypatch.setattr(echonet.ClipDataset, "__getitem__", getitem)
    code, out = cli(["train", "stage1", "--data", data, "--out", tmp_path / "r", *S1[:-10], "--workers", "1",
                     "--device", "cpu", "--quiet", "--no-tensorboard", "--seed", "3"], capsys)
    assert code == 1 and "a data loader worker process died" in out and "--workers" in out, out
    assert "bug" not in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")
def test_device_cuda_without_a_driver_is_a_usage_error(data, tmp_path, capsys):
    code, out = cli(["train", "stage1", "--data", data, "--out", tmp_path / "r", *S1, "--device", "cuda"], capsys)
    assert code == 2 and "CUDA is not available" in out and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_is_refused_and_resume_finishes(data, tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "coreecho", "train", "stage1", "--data", str(data), "--out", str(out), *S1[:-8],
            "--batch-size", "2", "--epochs", "2", "--save-every-steps", "2", "--workers", "0", "--device", "cpu",
            "--quiet", "--no-tensorboard", "--seed", "3"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import time

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and not (out / "checkpoint_prev.pt").exists():
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    before = {k: v for k, v in digests(out).items() if not k.startswith(".")}
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "holds another run's files" in again.stderr, again.stderr[-2000:]
    assert {k: v for k, v in digests(out).items() if not k.startswith(".")} == before
    resumed = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def _flip_tensor_byte(path: Path) -> None:
    """Flip one byte in the middle of the largest tensor's data (a stored zip entry of torch's format)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_damaged_last_checkpoint_resumes_from_the_previous_one(data, stage1, tmp_path, capsys):
    run = _copy(stage1, tmp_path / "s1")
    resume = ["train", "stage1", "--data", data, "--out", run, *S1[:-8], "--workers", "0", "--device", "cpu",
              "--quiet", "--no-tensorboard", "--seed", "3", "--resume"]
    assert cli([*resume, "--epochs", "2"], capsys)[0] == 0  # checkpoint_prev.pt: epoch 1, checkpoint_last.pt: 2
    last = run / "checkpoint_last.pt"
    _flip_tensor_byte(last)
    prev = digests(run / "checkpoint_prev.pt")
    code, out = cli([*resume, "--epochs", "3"], capsys)
    assert code == 0 and "Resuming from the previous checkpoint" in out, out
    assert "does not match the sha256" in out
    assert len((run / "metrics.csv").read_text().splitlines()) == 4
    assert prev  # the intact previous checkpoint was read, never damaged


@pytest.mark.ddp
@pytest.mark.slow
def test_the_short_rendezvous_timeout_does_not_apply_to_the_runs_collectives(tmp_path):
    """A group formed with a 2 s rendezvous timeout still waits at a barrier for a rank that is 4 s late."""
    script = tmp_path / "late.py"
    script.write_text(
        "import time\nimport torch.distributed as dist\n"
        "from coreecho.train.distributed import cleanup_distributed, init_distributed\n"
        "env = init_distributed('cpu')\n"
        "if env.rank == 1:\n    time.sleep(4)\n"
        "dist.barrier()\nprint('rank', env.rank, 'passed the barrier', flush=True)\ncleanup_distributed(env)\n")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           str(_free_port()), str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COREECHO_DIST_TIMEOUT": "2", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("passed the barrier") == 2
