"""The bundled phantom-tiny model and `coreecho demo`."""

from __future__ import annotations

import pytest

import coreecho
from coreecho.cli import main
from coreecho.data.phantom_benchmark import phantom_benchmark
from coreecho.hub.registry import BUNDLED_DIR


@pytest.fixture(scope="module")
def phantom_tiny():
    return coreecho.load_model("phantom-tiny", device="cpu")


def test_phantom_tiny_is_bundled_small_and_labelled(phantom_tiny):
    assert "phantom-tiny" in coreecho.list_models()
    assert coreecho.hub.is_cached("phantom-tiny")
    folder = BUNDLED_DIR / "phantom-tiny"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 5 * 1024 * 1024
    card = (folder / "README.md").read_text().lower()
    assert "synthetic" in card and "not for clinical use" in card
    meta = phantom_tiny.config.metadata
    assert meta["seed"] == 7 and "train_phantom.py" in meta["command"]


@pytest.mark.slow  # the default suite stays under 5 min on 2 cores: opt-in with -m slow
def test_phantom_tiny_accuracy_on_unseen_phantoms(phantom_tiny):
    result = phantom_benchmark(phantom_tiny, n=30, seed=5_000_000)
    assert result["mae"] <= 3.0, result


def test_demo_runs_offline_and_writes_its_files(tmp_path, capsys):
    assert main(["demo", "--ef", "35", "--seed", "3", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "true EF" in out and "predicted EF" in out and "clip 3" in out
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert list(tmp_path.glob("*.avi"))
    predicted = float(out.split("predicted EF")[1].split("%")[0])
    assert abs(predicted - 35) < 8


def test_demo_figure_is_labelled(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from coreecho.cli.demo import run_demo

    saved = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        saved["fig"] = fig
        return real_savefig(fig, *args, **kwargs)

    matplotlib.figure.Figure.savefig = spy
    try:
        r = run_demo(ef=60, seed=1, output_dir=tmp_path)
    finally:
        matplotlib.figure.Figure.savefig = real_savefig
    fig = saved["fig"]
    assert fig._suptitle is not None and "phantom-tiny" in fig._suptitle.get_text()
    image, curve, bars = fig.axes[:3]
    assert image.get_title() and curve.get_xlabel() == "time (s)" and bars.get_ylabel() == "EF (%)"
    # The legends sit below the axes, so they cover no curve peak and no bar.
    for ax in (curve, bars):
        legend = ax.get_legend()
        fig.canvas.draw()
        assert legend.get_window_extent().y1 <= ax.get_window_extent().y0 + 1
    # Each bar carries its value; the true-EF line is drawn above the predicted one.
    texts = [t.get_text() for t in bars.texts]
    assert texts[:3] == [f"{v:.1f}" for v in r["clip_efs"]]
    # phantom-tiny ships calibrated: the interval is drawn (a legend entry) and the shift verdict is written
    assert r["ef_low"] < r["predicted_ef"] < r["ef_high"] and r["is_shifted"] is False
    assert any("interval" in t.get_text() for t in bars.get_legend().get_texts())
    assert any("inside the training distribution" in t for t in texts[3:])
    lines = {ln.get_label().split()[0]: ln for ln in bars.get_lines()}
    assert lines["true"].get_zorder() > lines["predicted"].get_zorder()
    plt.close("all")


def test_default_model_missing_says_phantom_tiny_works(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COREECHO_CACHE", str(tmp_path / "empty-cache"))
    from coreecho.data.phantom import make_phantom
    from coreecho.video.io import write_video

    frames, meta = make_phantom(ef=50, seed=2, n_frames=80)
    video = write_video(tmp_path / "v.avi", frames, fps=meta.fps)
    for argv in (["predict", str(video)], ["embed", str(video), "-o", str(tmp_path / "e.npz")],
                 ["explain", str(video), "-o", str(tmp_path / "x.gif")]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "coreecho convert best.pth --install coreecho-echonet" in err, err
        assert "--model phantom-tiny" in err, err


def test_models_json_into_a_closed_pipe_is_quiet():
    import subprocess
    import sys

    proc = subprocess.run(f'"{sys.executable}" -m coreecho models --json | head -1', shell=True, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() == "[" and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_train_help_shows_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["train", "stage1", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: cuda when available;" in text and "(default: None)" not in text.split("--device")[1][:80]
