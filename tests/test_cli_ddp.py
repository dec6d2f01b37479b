"""``torchrun --nproc-per-node 2 -m coreecho predict|embed`` (gloo, CPU): inputs sharded across ranks, one ordered
output identical to a single process, and ``--resume`` computing only the missing rows."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ddp


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    runner = shutil.which("torchrun")
    prefix = [runner] if runner else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*prefix, "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(_port()),
           "-m", "coreecho", *args, "--threads", "1", "--workers", "0", "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _our_traceback(stderr: str) -> bool:
    return bool(re.search(r'File ".*/coreecho/', stderr))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from conftest import tiny_config

    import torch

    from coreecho import CoReEcho
    from coreecho.data.phantom import make_phantom

    root = tmp_path_factory.mktemp("ddp")
    torch.manual_seed(0)
    model = str(CoReEcho(tiny_config()).eval().save_pretrained(root / "model"))
    base = make_phantom(ef=45, seed=1, n_frames=40)[0]
    videos = []
    for i in range(7):  # odd: the ranks get different numbers of inputs
        np.save(root / f"v{i}.npy", np.roll(base, 3 * i, axis=0))
        videos.append(str(root / f"v{i}.npy"))
    videos.insert(3, str(root / "missing.avi"))  # a failed row travels too
    return root, model, videos


@pytest.mark.slow  # torchrun start-up of several processes: opt-in (pytest -m slow)
def test_torchrun_predict_and_embed_equal_one_process_and_resume(files, tmp_path, capsys):
    from coreecho.cli import main

    root, model, videos = files
    common = ["--model", model, "--clips", "3", "--batch-size", "3"]
    single = tmp_path / "single.csv"
    assert main(["predict", *videos, *common, "-o", str(single), "--quiet", "--threads", "1", "--workers", "0"]) == 1
    single_emb = tmp_path / "single.npz"
    assert main(["embed", *videos, *common, "-o", str(single_emb), "--quiet", "--threads", "1", "--workers",
                 "0"]) == 1
    capsys.readouterr()

    out = tmp_path / "ddp.csv"
    proc = _torchrun("predict", *videos, *common, "-o", str(out))
    # exit 1 on every rank (one input failed); torchrun's launcher prints its own ChildFailedError, coreecho none
    assert proc.returncode == 1 and "exitcode  : 1" in proc.stderr and not _our_traceback(proc.stderr), proc.stderr
    assert out.read_text() == single.read_text()
    assert not list(tmp_path.glob("ddp.csv.partial*"))

    # --resume: a run killed before three rows (one per rank, and the failed one), as its journal holds it (an edited
    # output is refused: coreecho.cli.runrecord); resumed under torchrun, only they are computed
    import json

    from coreecho.cli.output import Journal, read_rows
    from coreecho.cli.predict import ROW_FIELDS
    from coreecho.cli.runrecord import record_path

    settings = json.loads(record_path(out).read_text())["settings"]
    journal = Journal(f"{out}.partial", "csv", ROW_FIELDS, record={"coreecho_run": 1, "settings": settings})
    for row in [r for i, r in enumerate(read_rows(out, "csv")) if i not in (1, 3, 6)]:
        journal.write(row)
    journal.close()
    out.unlink()
    proc = _torchrun("predict", *videos, *common, "-o", str(out), "--resume")
    m = re.search(r"\((\d+) computed now, (\d+) kept", proc.stderr)
    assert m and (int(m.group(1)), int(m.group(2))) == (3, 5), proc.stderr
    assert out.read_text() == single.read_text()

    emb = tmp_path / "ddp.npz"
    proc = _torchrun("embed", *videos, *common, "-o", str(emb))
    assert not _our_traceback(proc.stderr), proc.stderr
    a, b = np.load(single_emb), np.load(emb)
    assert list(a["paths"]) == list(b["paths"]) == videos
    assert np.array_equal(a["embeddings"], b["embeddings"], equal_nan=True)
    assert list(a["errors"]) == list(b["errors"])
    assert Path(single_emb).exists()


@pytest.mark.slow  # torchrun start-up of several processes: opt-in (pytest -m slow)
def test_torchrun_evaluate_equals_one_process(files, tmp_path, capsys):
    from coreecho.cli import main
    from coreecho.data.phantom import write_echonet_layout

    _root, model, _videos = files
    data = tmp_path / "echonet"
    write_echonet_layout(data, 10, seed=3, splits=(0, 0, 10), n_frames=60, size=64, progress=False)
    common = ["--model", model, "--data", str(data), "--clips", "2", "--batch-size", "2", "--bootstrap", "0",
              "--threads", "1", "--workers", "0"]
    single = tmp_path / "single.csv"
    assert main(["evaluate", *common, "-o", str(single)]) == 0
    capsys.readouterr()
    runner = shutil.which("torchrun")
    prefix = [runner] if runner else [sys.executable, "-m", "torch.distributed.run"]
    out = tmp_path / "ddp.csv"
    proc = subprocess.run([*prefix, "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
                           str(_port()), "-m", "coreecho", "evaluate", *common, "-o", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == single.read_text()  # every video, in order, from two ranks
    assert proc.stdout.count("MAE") == 1  # rank 0 reports once
