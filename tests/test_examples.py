"""Examples run as scripts (CI smoke runs with small arguments; the long ones are in the slow suite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(script: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_quickstart(tmp_path):
    out = run_example("quickstart.py", "--out", "qs", cwd=tmp_path)
    assert out.count("true EF") == 3 and "embeddings: (3," in out
    assert np.load(tmp_path / "qs" / "embeddings.npy").shape[0] == 3


def test_embeddings_umap_with_phantom_tiny(tmp_path):
    out = run_example("embeddings_umap.py", "--n", "12", "--method", "pca", "--output", "map.png", "--threads", "1",
                      cwd=tmp_path)
    assert "continuity" in out and "random" not in out.lower()
    assert (tmp_path / "map.png").stat().st_size > 10_000


def test_finetune_custom_smoke(tmp_path):
    out = run_example("finetune_custom.py", "--out", "ft", "--n-videos", "8", "--folds", "2", "--epochs", "2",
                      cwd=tmp_path)
    assert "pearson" in out and "mae" in out and "reloaded it" in out
    assert any((tmp_path / "ft").rglob("model.safetensors"))
