"""The figures are written where results are: ``evaluate --output`` → ``<stem>_agreement.png``, a training run →
``curves.png``; and an offline ``predict`` without the default model fails before torch is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

STAGE1 = ["--preset", "micro", "--init", "none", "--frames", "4", "--stride", "4", "--size", "32", "--batch-size", "4",
          "--epochs", "1", "--workers", "0", "--device", "cpu", "--quiet", "--no-tensorboard",
          "--encoder-args", '{"drop_rate": 0.0}', "--seed", "3"]


def _image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _drawn(img: np.ndarray) -> float:
    """Fraction of pixels that are not (near) white."""
    return float((img < 235).any(axis=-1).mean())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from coreecho.data.layouts import write_echonet_layout

    root = tmp_path_factory.mktemp("phantom")
    write_echonet_layout(root, 12, seed=5, n_frames=(24, 32), splits=(8, 2, 2), progress=False)
    return root


@pytest.fixture(scope="module")
def stage1(data, tmp_path_factory) -> Path:
    """A one-pass stage-1 run through the CLI (as tests/test_train.py runs it)."""
    pytest.importorskip("matplotlib")
    from coreecho.cli import main

    out = tmp_path_factory.mktemp("runs") / "s1"
    assert main(["train", "stage1", "--data", str(data), "--out", str(out), *STAGE1]) == 0
    return out


def test_training_writes_its_curves(stage1, data):
    from coreecho.cli import main
    from coreecho.train.runfolder import run_files

    png = stage1 / "curves.png"
    img = _image(png)
    assert img.shape[0] > 300 and img.shape[1] > 600
    assert _drawn(img) > 0.03
    assert not [p.name for p in stage1.iterdir() if p.name.startswith(".curves.png.")]  # no temporary left
    assert "curves.png" in run_files(stage1)  # the run-folder guard knows it: --overwrite removes it
    before = png.stat().st_mtime_ns
    assert main(["train", "stage1", "--data", str(data), "--out", str(stage1), *STAGE1, "--overwrite"]) == 0
    assert png.stat().st_mtime_ns != before and _drawn(_image(png)) > 0.03


def test_evaluate_writes_the_agreement_figure(stage1, data, tmp_path, capsys):
    from coreecho.cli import main

    out_csv = tmp_path / "per_video.csv"
    base = ["evaluate", "--data", str(data), "--split", "all", "--model", str(stage1 / "best_model"), "--clips", "1",
            "--device", "cpu", "--bootstrap", "0", "--quiet"]
    args = base + ["--output", str(out_csv)]
    assert main(args) == 0
    png = tmp_path / "per_video_agreement.png"
    assert f"agreement figure: {png}" in capsys.readouterr().out
    img = _image(png)
    assert img.shape == (588, 1320, 3)  # plot_agreement's two panels at 120 dpi
    red = (img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 80)
    assert red.sum() > 300 and _drawn(img) > 0.03  # bias and limits of agreement drawn, not blank
    assert sorted(p.name for p in tmp_path.iterdir()) == ["per_video.csv", "per_video_agreement.png"]
    # an existing figure is another result: refused without --overwrite, replaced with it
    out_csv.unlink()
    assert main(args) == 2
    assert "per_video_agreement.png: exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    # --no-plot writes the CSV only
    other = tmp_path / "noplot" / "per_video.csv"
    assert main(base + ["--output", str(other), "--no-plot"]) == 0
    assert sorted(p.name for p in other.parent.iterdir()) == ["per_video.csv"]


def test_evaluate_figure_never_replaces_an_input(stage1, data, tmp_path, capsys):
    """``--output X.csv`` whose figure name ``X_agreement.png`` is an input (here: the starts file) is refused
    before anything is computed."""
    from coreecho.cli import main
    from coreecho.data.echonet import EchoNetDynamic
    from coreecho.train.starts import save_starts

    names = EchoNetDynamic(data, "test", frames=4, stride=4).names
    starts = save_starts(tmp_path / "s.json", {n: [0] for n in names})
    clash = tmp_path / "s_agreement.png"
    starts.rename(clash)  # a starts file named like the figure of --output s.csv
    rc = main(["evaluate", "--data", str(data), "--split", "test", "--model", str(stage1 / "best_model"),
               "--starts", str(clash), "--output", str(tmp_path / "s.csv"), "--device", "cpu", "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and "is also an input" in err and "s_agreement.png" in err
    assert not (tmp_path / "s.csv").exists()


def test_offline_predict_fails_before_importing_torch(tmp_path):
    from coreecho.data.phantom import make_phantom
    from coreecho.video.io import write_video

    frames, _ = make_phantom(55.0, seed=2, n_frames=32)
    video = write_video(tmp_path / "a4c.avi", frames, 50)
    env = {k: v for k, v in os.environ.items() if k not in ("COREECHO_WEIGHTS_MIRROR", "COREECHO_OFFLINE")}
    env.update(COREECHO_CACHE=str(tmp_path / "empty-cache"), HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "coreecho", "predict", str(video)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    imported = [line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")]
    messages = [line for line in run.stderr.splitlines() if not line.startswith("import time:")]
    assert run.returncode == 1, run.stderr[-2000:]
    assert "coreecho" in imported and "coreecho.hub.registry" in imported  # the trace is real
    assert not [m for m in imported if m == "torch" or m.startswith("torch.")]
    text = " ".join(messages)
    assert "'coreecho-echonet' is not installed and cannot be downloaded now: HF_HUB_OFFLINE=1" in text
    assert "coreecho convert best.pth --install coreecho-echonet" in text and "phantom-tiny" in text
    assert not (tmp_path / "empty-cache" / "models").exists()  # nothing was fetched or installed


def test_offline_refusal_is_the_library_message(tmp_path, monkeypatch):
    """The CLI's early answer is the one ``load_model`` gives (same type, same text)."""
    from coreecho.errors import ModelNotFoundError
    from coreecho.hub import load_model
    from coreecho.hub.registry import offline_refusal

    monkeypatch.setenv("COREECHO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("COREECHO_WEIGHTS_MIRROR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as caught:
        load_model("coreecho-echonet")
    assert offline_refusal(None) == offline_refusal("coreecho-echonet") == str(caught.value)
    assert offline_refusal("phantom-tiny") is None  # bundled: loads offline
    monkeypatch.setenv("COREECHO_WEIGHTS_MIRROR", str(tmp_path / "best.pth"))
    assert offline_refusal("coreecho-echonet") is None  # a local mirror may work offline: the library decides
    monkeypatch.delenv("COREECHO_WEIGHTS_MIRROR")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("COREECHO_OFFLINE", raising=False)
    assert offline_refusal("coreecho-echonet") is None  # online: fetched on first use


def test_without_matplotlib_one_warning_and_success(stage1, data, tmp_path, monkeypatch, capsys):
    import coreecho.analysis.figures as figures
    import coreecho.train.figures as train_figures
    from coreecho.cli import main
    from coreecho.errors import MissingDependencyError

    def missing():
        raise MissingDependencyError("matplotlib", "viz", "plotting figures")

    monkeypatch.setattr(figures, "_figure_class", missing)
    out_csv = tmp_path / "ev" / "per_video.csv"
    rc = main(["evaluate", "--data", str(data), "--split", "test", "--model", str(stage1 / "best_model"),
               "--clips", "1", "--output", str(out_csv), "--device", "cpu", "--bootstrap", "0", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and out_csv.is_file()
    assert [line for line in err.splitlines() if "agreement figure" in line and "matplotlib" in line and
            line.startswith("coreecho evaluate: warning:")]
    assert sorted(p.name for p in out_csv.parent.iterdir()) == ["per_video.csv"]  # no figure, no temporary
    # training: no figure, one warning per process, never a failure
    monkeypatch.setattr(train_figures, "_warned", set())
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text((stage1 / "metrics.csv").read_text())
    with pytest.warns(UserWarning, match="curves.png not written.*matplotlib"):
        assert train_figures.write_training_curves(run) is None
    assert sorted(p.name for p in run.iterdir()) == ["metrics.csv"]
