"""``coreecho predict`` and ``coreecho embed`` killed with SIGKILL mid-run keep every finished row, and ``--resume``
finishes the rest without recomputing them; the result equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

N_VIDEOS = 24


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    from conftest import tiny_config

    import torch

    from coreecho import CoReEcho
    from coreecho.data.phantom import make_phantom

    root = tmp_path_factory.mktemp("kill")
    torch.manual_seed(0)
    model = CoReEcho(tiny_config()).eval().save_pretrained(root / "model")
    videos = []
    bases = [make_phantom(ef=ef, seed=i, n_frames=40)[0] for i, ef in enumerate((30, 60))]
    for i in range(N_VIDEOS):  # distinct videos, cheaply: two phantoms started at different frames
        path = root / f"v{i:02d}.npy"
        np.save(path, np.roll(bases[i % 2], i, axis=0))
        videos.append(str(path))
    return root, str(model), videos


def _command(command, videos, model, out, *extra):
    # one video per forward pass (--batch-size 3 = its 3 clips), so a row never depends on its neighbours
    return [sys.executable, "-m", "coreecho", command, *videos, "--model", model, "-o", str(out), "--quiet",
            "--threads", "1", "--workers", "0", "--clips", "3", "--batch-size", "3", *extra]


def _kill_after(cmd, journal: Path, rows: int, count) -> None:
    """Start ``cmd``, SIGKILL it once ``journal`` holds ``rows`` finished rows."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.is_file() and count(journal) >= rows:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way (exit {proc.returncode}): {err}"


def _csv_rows(path: Path) -> list[str]:
    text = path.read_bytes()
    lines = text[: text.rfind(b"\n") + 1].decode().splitlines()
    if lines and lines[0].startswith("# coreecho run "):  # a journal's run record (coreecho.cli.runrecord)
        lines = lines[1:]
    return lines[1:]


def _in_process(cmd, capsys) -> tuple[int, str]:
    from coreecho.cli import main

    code = main(cmd[3:])
    return code, capsys.readouterr().err


def _computed(stderr: str) -> tuple[int, int]:
    m = re.search(r"\((\d+) computed now, (\d+) kept from an earlier run\)", stderr)
    assert m, stderr
    return int(m.group(1)), int(m.group(2))


def test_predict_killed_keeps_rows_and_resume_finishes(batch, tmp_path, capsys):
    root, model, videos = batch
    out = tmp_path / "ef.csv"
    journal = Path(f"{out}.partial")
    _kill_after(_command("predict", videos, model, out), journal, 3, lambda p: len(_csv_rows(p)))
    assert not out.exists()  # the output appears only complete
    kept = _csv_rows(journal)
    assert 3 <= len(kept) < N_VIDEOS
    assert [r.split(",")[0] for r in kept] == videos[: len(kept)]  # finished rows, in order, none cut
    proc = subprocess.run(_command("predict", videos, model, out, "--resume"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _computed(proc.stderr) == (N_VIDEOS - len(kept), len(kept))  # nothing recomputed
    assert not journal.exists()
    rows = _csv_rows(out)
    assert rows[: len(kept)] == kept and [r.split(",")[0] for r in rows] == videos
    full = tmp_path / "full.csv"
    assert _in_process(_command("predict", videos, model, full), capsys)[0] == 0
    assert full.read_text() == out.read_text()  # identical to an uninterrupted run
    # resuming a complete output computes nothing and leaves it as it is
    code, err = _in_process(_command("predict", videos, model, out, "--resume"), capsys)
    assert code == 0 and _computed(err) == (0, N_VIDEOS)
    assert full.read_text() == out.read_text()


@pytest.mark.slow  # the default suite stays under 5 min on 2 cores: opt-in with -m slow
def test_embed_killed_keeps_rows_and_resume_finishes(batch, tmp_path, capsys):
    root, model, videos = batch
    out = tmp_path / "emb.npz"
    journal = Path(f"{out}.partial")

    def count(p):
        return max(0, p.read_bytes().count(b"\n") - 1)  # the first line is the run record

    _kill_after(_command("embed", videos, model, out), journal, 3, count)
    assert not out.exists()
    kept = [json.loads(line) for line in journal.read_text().splitlines()
            if line.endswith("}") and not line.startswith('{"coreecho_run"')]
    assert 3 <= len(kept) < N_VIDEOS
    proc = subprocess.run(_command("embed", videos, model, out, "--resume"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    computed, reused = _computed(proc.stderr)
    assert reused >= len(kept) and computed == N_VIDEOS - reused
    data = np.load(out)
    assert list(data["paths"]) == videos and data["embeddings"].shape == (N_VIDEOS, 64)
    for row in kept:
        i = videos.index(row["path"])
        assert np.array_equal(data["embeddings"][i], np.asarray(row["embedding"], np.float32))
    full = tmp_path / "full.npz"
    assert _in_process(_command("embed", videos, model, full), capsys)[0] == 0
    assert np.array_equal(np.load(full)["embeddings"], data["embeddings"])
