"""The analysis examples run end to end with small arguments (slow: a minute or two)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_embeddings_umap_example(tmp_path):
    pytest.importorskip("matplotlib")
    out = _run("embeddings_umap.py", "--n", "12", "--method", "pca", "--output", "map.png", "--save", "emb",
               "--threads", "1", cwd=tmp_path)
    assert "continuity" in out
    assert (tmp_path / "map.png").stat().st_size > 0 and (tmp_path / "emb.npz").exists()
    from coreecho.analysis.plots import load_embeddings

    data = load_embeddings(tmp_path / "emb.npz")
    assert len(data) == 12 and "ef" in data.columns


@pytest.mark.slow
def test_compare_embeddings_example(tmp_path):
    pytest.importorskip("matplotlib")
    out = _run("compare_embeddings.py", "--train", "16", "--test", "12", "--steps", "3", "--head-steps", "3",
               "--batch", "8", "--method", "pca", "--output", "cmp.png", cwd=tmp_path)
    assert "Spearman" in out and "L1 only" in out and "CoReEcho-style" in out
    assert (tmp_path / "cmp.png").stat().st_size > 0
