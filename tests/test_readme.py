"""The README's Python blocks run as written: in order, in one fresh process, in an empty folder, offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[str]:
    blocks = _BLOCK.findall(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python blocks"
    return blocks


def test_readme_python_blocks_run_as_written(tmp_path):
    pytest.importorskip("pydicom")
    code = "\n".join(python_blocks())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COREECHO_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"README's Python blocks failed:\n{code}\n---\n{proc.stdout}{proc.stderr}"
    m = re.search(r"EF ([0-9.]+) %, clips \[.*\], embeddings \(2, (\d+)\), input \((\d+), 3, (\d+), (\d+), \d+\)",
                  proc.stdout)
    assert m, proc.stdout
    ef, dim, clips, frames, size = float(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5])
    assert abs(ef - 55.0) < 10  # the phantom's true EF is 55; phantom-tiny's MAE on phantoms is about 2
    assert (dim, clips, frames, size) == (64, 3, 16, 64)  # phantom-tiny: 64-d embeddings, 3 clips of 16x64x64
    assert {"a4c.avi", "a.avi", "b.dcm"} <= {p.name for p in tmp_path.iterdir()}


def test_readme_keeps_the_quick_start_first_and_the_cpu_note_right_after():
    text = README.read_text(encoding="utf-8")
    first = text.index("```")
    assert text[first:].startswith('```bash\npip install -e ".[dev]" && coreecho demo\npytest\n```')
    after = text[first:].split("```", 2)[2]  # what follows the quick-start block
    assert after.lstrip().startswith("**No GPU? Install the CPU-only PyTorch first.**")
    assert "CPU-only PyTorch" in text[:first]  # pointed at before the block too
