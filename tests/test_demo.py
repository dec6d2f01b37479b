"""The bundled phantom-tiny model and `coreecho demo`."""

from __future__ import annotations

import pytest

import coreecho
from coreecho.cli import main
from coreecho.data.phantom_benchmark import phantom_benchmark
from coreecho.hub import _BUNDLED_DIR


@pytest.fixture(scope="module")
def phantom_tiny():
    return coreecho.load_model("phantom-tiny", device="cpu")


def test_phantom_tiny_is_bundled_small_and_labelled(phantom_tiny):
    assert "phantom-tiny" in coreecho.list_models()
    assert coreecho.hub.is_cached("phantom-tiny")
    folder = _BUNDLED_DIR / "phantom-tiny"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 5 * 1024 * 1024
    card = (folder / "README.md").read_text().lower()
    assert "synthetic" in card and "not for clinical use" in card
    meta = phantom_tiny.config.metadata
    assert meta["seed"] == 7 and "train_phantom.py" in meta["command"]


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
