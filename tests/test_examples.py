"""Examples run as scripts (CI smoke runs with small arguments; the long ones are in the slow suite)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


@pytest.mark.slow  # the default suite stays under 5 min on 2 cores: opt-in with -m slow
def test_embeddings_umap_with_phantom_tiny(tmp_path):
    out = run_example("embeddings_umap.py", "--n", "12", "--method", "pca", "--output", "map.png", "--threads", "1",
                      cwd=tmp_path)
    assert "continuity" in out and "random" not in out.lower()
    assert (tmp_path / "map.png").stat().st_size > 10_000


@pytest.mark.slow  # the default suite stays under 5 min on 2 cores: opt-in with -m slow
def test_finetune_custom_smoke(tmp_path):
    out = run_example("finetune_custom.py", "--out", "ft", "--n-videos", "8", "--folds", "2", "--epochs", "2",
                      cwd=tmp_path)
    assert "pearson" in out and "mae" in out and "reloaded it" in out
    assert any((tmp_path / "ft").rglob("model.safetensors"))


def _path_defaults(script: Path) -> dict[str, object]:
    """``--out``/``--output``/``--figure``/``--save``-like options of a script and their literal defaults."""
    import ast

    found: dict[str, object] = {}
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument" and node.args:
            flag = getattr(node.args[0], "value", None)
            if flag in ("--out", "--output", "--figure", "--save", "--output-dir"):
                default = next((k.value for k in node.keywords if k.arg == "default"), None)
                found[f"{script.name} {flag}"] = ast.literal_eval(default) if default is not None else None
    return found


def test_examples_write_only_under_examples_out_unless_told():
    """Every example's output option defaults to a path under examples-out/ (or to nothing); none points at the
    package (the bundled model) or docs/."""
    defaults: dict[str, object] = {}
    for script in sorted(EXAMPLES.glob("*.py")):
        defaults.update(_path_defaults(script))
    assert len(defaults) >= 7, defaults  # every script has at least one output option
    bad = {k: v for k, v in defaults.items() if v is not None and not str(v).startswith("examples-out/")}
    assert not bad, f"examples writing outside examples-out/ by default: {bad}"
