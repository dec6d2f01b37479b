"""docs/recipes.md, run: every block marked ``<!-- recipe: NAME [gpu|gpu4] -->`` is executed with ``bash -e`` on
phantom data laid out with the names the recipes use, with ``coreecho-echonet`` replaced by ``phantom-tiny``.

The blocks are read from the document itself, so the documentation cannot drift from what is tested. GPU blocks
run only where CUDA is available (``gpu``: one device, ``gpu4``: four).
"""

from __future__ import annotations

import csv
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
_MARK = re.compile(r"<!-- recipe: (?P<name>[\w-]+)(?P<tags>(?: [\w-]+)*) -->\n```bash\n(?P<code>.*?)\n```", re.S)


def recipes() -> dict[str, tuple[set[str], str]]:
    """name → (tags, code) of every marked block of docs/recipes.md."""
    found = {m["name"]: (set(m["tags"].split()), m["code"]) for m in _MARK.finditer(RECIPES.read_text())}
    assert found, f"no marked recipe blocks in {RECIPES}"
    return found


def _shims(folder: Path) -> Path:
    """``coreecho`` and ``python`` on PATH that run this interpreter (so the blocks test this checkout)."""
    folder.mkdir(exist_ok=True)
    for name, line in (("coreecho", f'exec "{sys.executable}" -m coreecho "$@"'),
                       ("python", f'exec "{sys.executable}" "$@"')):
        path = folder / name
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(0o755)
    return folder


def run_recipe(name: str, cwd: Path) -> str:
    tags, code = recipes()[name]
    if "gpu" in tags or "gpu4" in tags:
        import torch

        need = 4 if "gpu4" in tags else 1
        if not torch.cuda.is_available() or torch.cuda.device_count() < need:
            pytest.skip(f"recipe {name!r} needs {need} CUDA device(s)")
    code = code.replace("coreecho-echonet", "phantom-tiny")
    env = {**os.environ, "PATH": f"{_shims(cwd / '.bin')}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"recipe {name!r} failed ({proc.returncode}):\n{code}\n---\n{out}"
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working folder after the ``phantoms`` recipe: EchoNet-Dynamic/ with 12 phantoms (6 train, 2 val, 4 test)."""
    d = tmp_path_factory.mktemp("recipes")
    run_recipe("phantoms", d)
    return d


def _write_dicom(path: Path, frames: np.ndarray, fps: float) -> None:
    from coreecho.data.phantom import write_dicom

    write_dicom(path, frames[..., 0] if frames.ndim == 4 else frames, fps=fps)  # phantoms are grey, stored as RGB


def test_every_recipe_is_tested():
    assert set(recipes()) == {"phantoms", "dicom-folder", "embeddings-umap", "finetune-csv", "evaluate-official",
                              "one-gpu", "many-gpus"}


def test_phantoms(workdir):
    rows = list(csv.DictReader(open(workdir / "EchoNet-Dynamic" / "FileList.csv")))
    assert len(rows) == 12 and len(list((workdir / "EchoNet-Dynamic" / "Videos").glob("*.avi"))) == 12


@pytest.mark.slow  # the default suite stays under 5 min on 2 cores: opt-in with -m slow
def test_dicom_folder(workdir):
    pytest.importorskip("pydicom")
    from coreecho.data.phantom import make_phantom

    truth = {}
    for i, (study, ef) in enumerate((("patient1/a4c", 35.0), ("patient1/a4c_repeat", 40.0), ("patient2/a4c", 60.0))):
        frames, meta = make_phantom(ef=ef, seed=70 + i, n_frames=90)
        _write_dicom(workdir / "studies" / f"{study}.dcm", frames, meta.fps)
        truth[f"{study}.dcm"] = meta.ef
    out = run_recipe("dicom-folder", workdir)
    rows = list(csv.DictReader(open(workdir / "ef.csv")))
    assert len(rows) == 3 and "path" in out.splitlines()[0]
    for row in rows:
        key = next(k for k in truth if row["path"].endswith(k))
        assert not row.get("error") and abs(float(row["ef"]) - truth[key]) < 12, row


@pytest.mark.slow  # the default suite stays under 5 min on 2 cores: opt-in with -m slow
def test_embeddings_umap(workdir):
    pytest.importorskip("matplotlib")
    out = run_recipe("embeddings-umap", workdir)
    assert "wrote embeddings.png with" in out
    assert (workdir / "embeddings.png").stat().st_size > 10_000
    from coreecho.analysis.plots import load_embeddings

    data = load_embeddings(workdir / "emb.npz")
    assert data.embeddings.shape[0] == 12 and np.isfinite(data.columns["ef"]).all()


@pytest.mark.slow  # the default suite stays under 5 min on 2 cores: opt-in with -m slow
def test_finetune_csv(workdir):
    rows = list(csv.DictReader(open(workdir / "EchoNet-Dynamic" / "FileList.csv")))
    with open(workdir / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "patient"])
        for i, r in enumerate(rows):
            w.writerow([f"EchoNet-Dynamic/Videos/{r['FileName']}.avi", r["EF"], f"p{i // 2:03d}"])
    run_recipe("finetune-csv", workdir)
    assert (workdir / "finetune.json").stat().st_size > 0
    assert (workdir / "my-model" / "config.json").is_file()
    assert len(list(csv.DictReader(open(workdir / "my-model-ef.csv")))) == 12


@pytest.mark.slow  # the default suite stays under 5 min on 2 cores: opt-in with -m slow
def test_evaluate_official(workdir):
    rows = list(csv.DictReader(open(workdir / "EchoNet-Dynamic" / "FileList.csv")))
    starts = {f"{r['FileName']}.avi": np.array([0, 9, 18]) for r in rows if r["Split"] == "TEST"}
    with open(workdir / "test_start_indexes.pkl", "wb") as fh:
        pickle.dump(starts, fh)
    out = run_recipe("evaluate-official", workdir)
    assert "MAE" in out
    pred = list(csv.DictReader(open(workdir / "test_predictions.csv")))
    assert len(pred) == len(starts) == 4


@pytest.mark.gpu
def test_one_gpu(workdir):
    test_dicom_folder(workdir)  # studies/ and the starts file the block uses
    test_evaluate_official(workdir)
    run_recipe("one-gpu", workdir)


@pytest.mark.gpu
def test_many_gpus(workdir):
    test_dicom_folder(workdir)
    run_recipe("many-gpus", workdir)
    assert len(list(csv.DictReader(open(workdir / "ef.csv")))) == 3
