"""The CLI and the Python API under a hostile user: one table of cases, each asserting the typed error (or the
flagged row) and the exit code, and that no traceback is printed without ``--debug``.

Exit codes (the error boundary of :mod:`coreecho.cli`): 2 when the command cannot run as given, 1 when inputs,
weights or outputs failed, 0 when everything succeeded.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from coreecho.errors import DeviceError, ModelNotFoundError, WeightsError

NO_CUDA = not torch.cuda.is_available()


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Videos, model folders (plain, NaN head, absurd head), broken checkpoints, shared by every case."""
    from conftest import tiny_config

    from coreecho import CoReEcho
    from coreecho.data.phantom import make_phantom
    from coreecho.video.io import write_video

    root = tmp_path_factory.mktemp("hostile")
    torch.manual_seed(0)
    model = CoReEcho(tiny_config()).eval()
    d = argparse.Namespace(root=root)
    d.model = str(model.save_pretrained(root / "model"))
    nan = CoReEcho(tiny_config()).eval()
    nan.load_state_dict(model.state_dict())
    absurd = CoReEcho(tiny_config()).eval()
    absurd.load_state_dict(model.state_dict())
    with torch.no_grad():
        last = [m for m in nan.head.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.fill_(float("nan"))
        last = [m for m in absurd.head.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.zero_()
        last.bias.fill_(-6.7e29)
    d.nan_model = str(nan.save_pretrained(root / "nan_model"))
    d.absurd_model = str(absurd.save_pretrained(root / "absurd_model"))
    frames, meta = make_phantom(ef=50, seed=1, n_frames=40)
    d.avi = str(write_video(root / "v.avi", frames, fps=meta.fps))
    d.npy = str(root / "w.npy")
    np.save(d.npy, make_phantom(ef=40, seed=2, n_frames=40)[0])
    d.short = str(root / "short.npy")
    np.save(d.short, make_phantom(ef=40, seed=3, n_frames=40)[0][:10])
    d.avi_bytes = Path(d.avi).read_bytes()
    (root / "link.avi").symlink_to(d.avi)
    (root / "dangling.avi").symlink_to(root / "gone.avi")
    d.link, d.dangling = str(root / "link.avi"), str(root / "dangling.avi")
    loop = root / "loop"
    loop.mkdir()
    (loop / "self").symlink_to(loop)
    np.save(loop / "x.npy", make_phantom(ef=40, seed=4, n_frames=40)[0])
    d.loop = str(loop)
    (root / "empty").mkdir()
    d.empty = str(root / "empty")
    d.file = str(root / "plain.txt")
    Path(d.file).write_text("a file\n")
    bad_cfg = root / "bad_config"
    bad_cfg.mkdir()
    (bad_cfg / "config.json").write_text("{ not json")
    (bad_cfg / "model.safetensors").write_bytes((Path(d.model) / "model.safetensors").read_bytes())
    d.bad_config = str(bad_cfg)
    trunc = root / "truncated_weights"
    trunc.mkdir()
    (trunc / "config.json").write_text((Path(d.model) / "config.json").read_text())
    (trunc / "model.safetensors").write_bytes((Path(d.model) / "model.safetensors").read_bytes()[:500])
    d.truncated = str(trunc)
    # an official-style last.pth: state dicts plus the training options as an argparse.Namespace
    d.last_pth = str(root / "last.pth")
    torch.save({"model": {"w": torch.zeros(1)}, "regressor": {"b": torch.zeros(1)},
                "opt": argparse.Namespace(lr=1e-4), "epoch": 3}, d.last_pth)
    d.garbage_pth = str(root / "garbage.pth")
    Path(d.garbage_pth).write_bytes(b"\x80\x02not a pickle" * 10)
    d.starts = str(root / "starts.json")
    Path(d.starts).write_text("{}")
    return d


cli = run_cli  # (exit code, stdout, stderr) of an in-process CLI run (tests/conftest.py)


def rows_of(path):
    return list(csv.DictReader(open(path)))


def _train_ckpt(env, tmp, drop=None, edit=None, garbage=False):
    from coreecho.train.checkpoint import rng_state, save_checkpoint

    out = tmp / "run"
    path = out / "checkpoint_last.pt"
    if garbage:
        out.mkdir(parents=True)
        path.write_bytes(b"PK\x03\x04 this is not a checkpoint")
        return out
    state = {"stage": "stage1", "config": {}, "model_config": {}, "model": {"w": torch.zeros(1)},
             "optimizers": {"encoder": {"state": {}, "param_groups": []}}, "epoch": 0, "step_in_epoch": 0,
             "global_step": 0, "best_val_mae": 1.0, "best_epoch": 0, "history": [], "rng": rng_state(),
             "world_size": 1}
    if drop:
        del state[drop]
    if edit:
        state.update(edit)
    save_checkpoint(path, state)
    return out


# --------------------------------------------------------------------------------------------- the table
# id, argv (a function of env and a fresh tmp folder), expected exit code, text expected in stderr (or a check)
CASES = [
    # ---- predict: outputs
    ("predict-output-is-input", lambda e, t: ["predict", e.avi, "--model", e.model, "-o", e.avi], 2, "is also an input"),
    ("predict-output-links-to-input", lambda e, t: ["predict", e.avi, "--model", e.model, "-o", e.link], 2,
     "is also an input"),
    ("predict-output-is-folder", lambda e, t: ["predict", e.avi, "--model", e.model, "-o", t], 2, "is a folder"),
    ("predict-output-under-a-file", lambda e, t: ["predict", e.avi, "--model", e.model, "-o", f"{e.file}/x.csv"], 2,
     "is a file, not a folder"),
    ("predict-output-missing-folder", lambda e, t: ["predict", e.npy, "--model", e.model, "-o", t / "a/b/ef.csv",
                                                    "--quiet"], 0, "1 rows written"),
    ("predict-output-unwritable-proc", lambda e, t: ["predict", e.npy, "--model", e.model, "-o",
                                                     "/proc/coreecho-test/ef.csv"], 2, "cannot create the folder"),
    ("predict-stale-partial-needs-resume", "stale_partial", 2, "add --resume"),
    ("predict-resume-needs-output", lambda e, t: ["predict", e.npy, "--model", e.model, "--resume"], 2,
     "--resume needs --output"),
    ("predict-resume-foreign-output", "foreign_output", 2, "not an output of coreecho"),
    ("predict-resume-bad-json", "bad_json_output", 2, "not an output of coreecho"),
    # ---- predict: options
    ("predict-clips-huge", lambda e, t: ["predict", e.npy, "--clips", "100000000"], 2, "--clips"),
    ("predict-clips-zero", lambda e, t: ["predict", e.npy, "--clips", "0"], 2, "--clips"),
    ("predict-clips-word", lambda e, t: ["predict", e.npy, "--clips", "many"], 2, "--clips"),
    ("predict-batch-zero", lambda e, t: ["predict", e.npy, "--batch-size", "0"], 2, "--batch-size"),
    ("predict-batch-huge", lambda e, t: ["predict", e.npy, "--batch-size", "1000000000"], 2, "--batch-size"),
    ("predict-threads-zero", lambda e, t: ["predict", e.npy, "--threads", "0"], 2, "--threads"),
    ("predict-workers-negative", lambda e, t: ["predict", e.npy, "--workers", "-1"], 2, "--workers"),
    ("predict-device-bogus", lambda e, t: ["predict", e.npy, "--device", "gpu0"], 2, "--device"),
    pytest.param("predict-device-cuda-absent", lambda e, t: ["predict", e.npy, "--model", e.model, "--device", "cuda"],
                 2, "CUDA is not available", marks=pytest.mark.skipif(not NO_CUDA, reason="has CUDA")),
    ("predict-precision-bogus", lambda e, t: ["predict", e.npy, "--precision", "fp8"], 2, "--precision"),
    # ---- predict: models
    ("predict-model-dotdot", lambda e, t: ["predict", e.npy, "--model", "a/..", "--quiet"], 1,
     "valid Hub repo id"),
    ("predict-model-unknown", lambda e, t: ["predict", e.npy, "--model", "no-such-model", "--quiet"], 1,
     "Registered models"),
    ("predict-model-hub-offline", lambda e, t: ["predict", e.npy, "--model", "someone/not-cached", "--quiet"], 1,
     "not in the local Hugging Face cache"),
    ("predict-model-bad-config", lambda e, t: ["predict", e.npy, "--model", e.bad_config, "--quiet"], 1,
     "cannot read the model config"),
    ("predict-model-truncated-weights", lambda e, t: ["predict", e.npy, "--model", e.truncated, "--quiet"], 1,
     "safetensors"),
    ("predict-model-last-pth", lambda e, t: ["predict", e.npy, "--model", e.last_pth, "--quiet"], 1, "best.pth"),
    # ---- predict: results
    ("predict-nan-model-refused-at-load", "nan_rows", 1, "NaN or infinite values"),
    ("predict-absurd-ef-warns", "absurd_rows", 0, "outside 0-100"),
    ("predict-json-real-lists-and-null", "json_rows", 1, "1 failed"),
    ("predict-jsonl-real-lists-and-null", "jsonl_rows", 1, "1 failed"),
    ("predict-dangling-symlink-row", lambda e, t: ["predict", e.dangling, "--model", e.model, "-o", t / "o.csv",
                                                   "--quiet"], 1, "1 failed"),
    ("predict-symlink-loop-folder", lambda e, t: ["predict", e.loop, "--recursive", "--model", e.model, "-o",
                                                  t / "o.csv", "--quiet"], 0, "1 rows written"),
    ("predict-empty-folder", lambda e, t: ["predict", e.empty, "--model", e.model], 1, "no video files found"),
    # ---- embed
    ("embed-output-is-input", lambda e, t: ["embed", e.root / "x.npz", e.npy, "--model", e.model, "-o",
                                            e.root / "x.npz"], 2, "is also an input"),
    ("embed-output-wrong-suffix", lambda e, t: ["embed", e.npy, "--model", e.model, "-o", t / "e.csv"], 2,
     ".npz or .parquet"),
    ("embed-output-missing-folder", lambda e, t: ["embed", e.npy, "--model", e.model, "-o", t / "new/dir/e.npz",
                                                  "--quiet"], 0, "1 embeddings"),
    ("embed-nan-model-refused-at-load", "embed_nan", 1, "NaN or infinite values"),
    ("embed-resume-foreign-npz", "embed_dim_mismatch", 2, "not an output of coreecho"),
    ("embed-clips-huge", lambda e, t: ["embed", e.npy, "-o", t / "e.npz", "--clips", "100000000"], 2, "--clips"),
    # ---- evaluate
    ("evaluate-clips-huge", lambda e, t: ["evaluate", "--data", t, "--model", e.model, "--clips", "99999999"], 2,
     "--clips"),
    ("evaluate-output-is-starts", lambda e, t: ["evaluate", "--data", t, "--model", e.model, "--starts", e.starts,
                                                "--output", e.starts], 2, "is also an input"),
    ("evaluate-missing-data", lambda e, t: ["evaluate", "--data", t / "nowhere", "--model", e.model, "--device",
                                            "cpu"], 1, "nowhere"),
    pytest.param("evaluate-device-cuda-absent", lambda e, t: ["evaluate", "--data", t, "--model", e.model, "--device",
                                                              "cuda"], 2, "CUDA is not available",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="has CUDA")),
    # ---- explain
    ("explain-output-is-input", lambda e, t: ["explain", e.avi, "--model", e.model, "-o", e.avi], 2,
     "is also an input"),
    ("explain-output-suffix", lambda e, t: ["explain", e.avi, "--model", e.model, "-o", t / "x.txt"], 2,
     ".gif, .mp4 or .avi"),
    ("explain-scale-huge", lambda e, t: ["explain", e.avi, "-o", t / "x.gif", "--scale", "1000"], 2, "--scale"),
    ("explain-montage-folder", lambda e, t: ["explain", e.avi, "--model", e.model, "-o", t / "x.gif", "--montage",
                                             t], 2, "--montage"),
    ("explain-missing-video", lambda e, t: ["explain", t / "nope.avi", "--model", e.model, "-o", t / "x.gif"], 1,
     "nope.avi"),
    # ---- convert
    ("convert-missing", lambda e, t: ["convert", t / "missing.pth", t / "out"], 1, "no such checkpoint file"),
    ("convert-last-pth-namespace", lambda e, t: ["convert", e.last_pth, t / "out"], 1, "best.pth"),
    ("convert-garbage", lambda e, t: ["convert", e.garbage_pth, t / "out"], 1, "cannot read it"),
    ("convert-install-unknown", lambda e, t: ["convert", e.last_pth, "--install", "nope"], 2, "registered name"),
    ("convert-out-is-file", lambda e, t: ["convert", e.last_pth, e.file], 2, "not a folder"),
    # ---- train --resume
    ("train-resume-missing-entry", "ckpt_missing", 1, "no 'optimizers' entry"),
    ("train-resume-bad-entry", "ckpt_bad", 1, "entry 'epoch' should be an integer"),
    ("train-resume-garbage", "ckpt_garbage", 1, "cannot read the training checkpoint"),
    ("train-epochs-zero", lambda e, t: ["train", "stage1", "--data", t, "--out", t / "r", "--epochs", "0"], 2,
     "--epochs"),
    # ---- demo / top level
    ("demo-ef-out-of-range", lambda e, t: ["demo", "--ef", "95"], 2, "10..85"),
    ("demo-ef-nan", lambda e, t: ["demo", "--ef", "nan"], 2, "--ef"),
    ("demo-output-dir-is-file", lambda e, t: ["demo", "--output-dir", e.file], 2, "is a file"),
    ("no-command", lambda e, t: [], 2, ""),
]


def _special(name, e, t):
    """Cases that need files prepared first: (argv, check after the run)."""
    if name == "stale_partial":
        Path(f"{t}/o.csv.partial").write_text("path,ef\n")
        return ["predict", e.npy, "--model", e.model, "-o", t / "o.csv"], None
    if name == "foreign_output":
        (t / "o.csv").write_text("name,value\nx,1\n")
        return ["predict", e.npy, "--model", e.model, "-o", t / "o.csv", "--resume"], \
            lambda: (t / "o.csv").read_text() == "name,value\nx,1\n"
    if name == "bad_json_output":
        (t / "o.json").write_text("[{\"path\": ")
        return ["predict", e.npy, "--model", e.model, "-o", t / "o.json", "--resume"], None
    if name == "nan_rows":  # a NaN weight is refused where the model is loaded (a NaN output is an error row:
        def check():       # tests/test_engine.py::test_non_finite_outputs_are_errors_not_results)
            return not (t / "o.csv").exists() and not (t / "o.csv.partial").exists()
        return ["predict", e.npy, "--model", e.nan_model, "-o", t / "o.csv", "--quiet"], check
    if name == "absurd_rows":
        def check():
            (row,) = rows_of(t / "o.csv")
            return float(row["ef"]) < -1e29 and "outside 0-100" in row["warnings"] and row["error"] == ""
        return ["predict", e.npy, "--model", e.absurd_model, "-o", t / "o.csv", "--quiet"], check
    if name in ("json_rows", "jsonl_rows"):
        suffix = ".json" if name == "json_rows" else ".jsonl"
        out = t / f"o{suffix}"

        def check():
            text = out.read_text()
            rows = json.loads(text) if suffix == ".json" else [json.loads(x) for x in text.splitlines()]
            good, bad = rows
            return (isinstance(good["clip_efs"], list) and len(good["clip_efs"]) == good["n_clips"] == 3
                    and isinstance(good["starts"], list) and good["error"] is None and isinstance(good["warnings"], list)
                    and bad["ef"] is None and bad["fps"] is None and isinstance(bad["error"], str)
                    and bad["ef_low"] is None and '""' not in text)
        return ["predict", e.npy, t / "missing.avi", "--model", e.model, "-o", out, "--quiet"], check
    if name == "embed_nan":
        def check():
            return not (t / "e.npz").exists()
        return ["embed", e.npy, "--model", e.nan_model, "-o", t / "e.npz", "--quiet"], check
    if name == "embed_dim_mismatch":
        from coreecho.analysis.plots import save_embeddings

        save_embeddings(t / "e.npz", ["other.avi"], np.zeros((1, 7)), ef=np.zeros(1, np.float32),
                        errors=np.array([""]), parquet=False)
        return ["embed", e.npy, "--model", e.model, "-o", t / "e.npz", "--resume", "--quiet"], \
            lambda: np.load(t / "e.npz")["embeddings"].shape == (1, 7)
    if name.startswith("ckpt_"):
        kw = {"ckpt_missing": {"drop": "optimizers"}, "ckpt_bad": {"edit": {"epoch": "three"}},
              "ckpt_garbage": {"garbage": True}}[name]
        out = _train_ckpt(e, t, **kw)
        return ["train", "stage1", "--data", t, "--out", out, "--resume", "--device", "cpu", "--preset", "micro",
                "--init", "none", "--quiet", "--no-tensorboard"], None
    raise KeyError(name)


def _ids(case):
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize("name,argv,code,text", CASES, ids=[_ids(c) for c in CASES])
def test_hostile_cli_case(name, argv, code, text, env, tmp_path, capsys, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    check = None
    if isinstance(argv, str):
        argv, check = _special(argv, env, tmp_path)
    else:
        argv = argv(env, tmp_path)
    got, out, err = cli(argv, capsys)
    assert got == code, (name, got, err[-2000:])
    assert text in err, (name, err[-2000:])
    assert "Traceback" not in err and "Traceback" not in out, name
    errors = [line for line in err.splitlines() if ": error:" in line]
    assert all(line.startswith(("coreecho", "usage")) for line in errors), errors
    if check is not None:
        assert check(), name
    assert Path(env.avi).read_bytes() == env.avi_bytes  # no case ever touches an input


def test_the_table_has_at_least_40_cases():
    assert len(CASES) >= 40


def test_debug_shows_the_traceback(env, capsys):
    code, _, err = cli(["predict", env.npy, "--model", "a/..", "--debug"], capsys)
    assert code == 1 and "Traceback" in err and "coreecho predict: error:" in err
    code, _, err = cli(["--debug", "predict", env.npy, "--model", "a/.."], capsys)
    assert code == 1 and "Traceback" in err


@pytest.mark.parametrize("workers", ["0", "2"])
def test_full_disk_is_one_line_and_keeps_finished_rows(env, tmp_path, workers):
    """A file-size limit makes writes fail (EFBIG) as a full disk would (ENOSPC): one line naming the file, exit 1.

    With loader workers, the limit also stops them from passing clips through shared memory: the engine decodes in
    this process instead (it used to wait forever for an item that never came)."""
    import resource
    import signal

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))  # the journal's run record and a row fit

    out = tmp_path / "o.csv"
    missing = [env.npy + f"x{i}" for i in range(30)]  # error rows that fill the journal past the limit
    proc = subprocess.run([sys.executable, "-m", "coreecho", "predict", env.npy, env.npy + "x", env.npy, *missing,
                           "--model", env.model, "-o", str(out), "--quiet", "--threads", "1", "--workers", workers],
                          capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and f"{out}.partial: File too large" in proc.stderr
    assert ("shared memory" in proc.stderr) == (workers == "2")
    assert [ln for ln in proc.stderr.splitlines() if ": error:" in ln][0].startswith("coreecho predict: error:")
    assert not out.exists()  # never a half-written output


def test_console_script_prints_no_traceback(env, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "coreecho", "predict", env.npy, "--model", "a/..", "-o",
                           str(tmp_path / "o.csv")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("coreecho predict: error: 'a/..'")


# ------------------------------------------------------------------------------------------ Python API
def test_api_typed_errors(env, tmp_path):
    import coreecho
    from coreecho.train.checkpoint import load_checkpoint

    with pytest.raises(ModelNotFoundError, match="valid Hub repo id"):
        coreecho.load_model("a/..")
    if NO_CUDA:
        with pytest.raises(DeviceError, match="--device cpu"):
            coreecho.load_model(env.model, device="cuda")
    with pytest.raises(WeightsError, match=r"best\.pth.*weights_only=False"):
        coreecho.load_model(env.last_pth)
    for kw, entry in (({"drop": "rng"}, "no 'rng' entry"), ({"edit": {"model": {"w": "x"}}}, "entry 'model'"),
                      ({"edit": {"world_size": 0}}, "'world_size' is 0")):
        t = tmp_path / entry.replace(" ", "_").replace("'", "")
        with pytest.raises(WeightsError, match=entry):
            load_checkpoint(_train_ckpt(env, t, **kw) / "checkpoint_last.pt")


def test_api_short_video_warns(env):
    import coreecho

    model = coreecho.load_model(env.model, device="cpu")
    with pytest.warns(UserWarning, match="frames"):
        model.predict_ef(env.short)


def test_hub_without_network_fails_fast(monkeypatch):
    """No retry storm: a refused connection is detected by the one probe and said so (attempts counted, not timed)."""
    import socket

    import coreecho.hub as hub

    with socket.socket() as s:  # a local port with nobody listening (a fresh endpoint: no cached probe result)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    attempts = []
    real_connect = socket.socket.connect

    def counting_connect(sock, address, *args):
        if isinstance(address, tuple) and address[1:2] == (port,):
            attempts.append(address)
        return real_connect(sock, address, *args)

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelNotFoundError, match=r"no network.*hf download someone/echo"):
        hub.load_model("someone/echo-model", device="cpu")
    assert 1 <= len(attempts) <= 2, attempts  # the probe (per address family tried), never a retry loop
