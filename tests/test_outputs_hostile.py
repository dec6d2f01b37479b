"""Outputs and journals that cannot be fooled (issue 19.4): any file name round-trips through the output and
``--resume``; spreadsheet formulas are neutralised; ``--resume`` takes only what coreecho wrote with the same
settings; the format comes from the extension; two runs on one output lose nothing."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coreecho.cli import main
from coreecho.cli.output import Journal, partial_path, read_rows, read_table
from coreecho.cli.predict import ROW_FIELDS
from coreecho.cli.runrecord import record_path
from coreecho.data.phantom import make_phantom
from coreecho.video.io import write_video

HOSTILE = ["new\nline.avi", "sep\u2028arator.avi", 'quo"te.avi', "com,ma.avi", "=HYPERLINK(1).avi", "+plus.avi",
           "-minus.avi", "@at.avi", "'apostrophe.avi", "\ttab.avi", "cr\rreturn.avi"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    import torch

    from coreecho import CoReEcho
    from conftest import tiny_config

    torch.manual_seed(0)
    tiny_model = CoReEcho(tiny_config()).eval()
    root = tmp_path_factory.mktemp("hostile-out")
    frames, meta = make_phantom(ef=50, seed=3, n_frames=48)
    src = write_video(root / "src.avi", frames, fps=meta.fps)
    folder = root / "names"
    folder.mkdir()
    for name in HOSTILE + ["plain.avi"]:
        (folder / name).write_bytes(src.read_bytes())
    (folder / "=bad.avi").write_text("not a video\n" * 20)
    model = tiny_model.save_pretrained(root / "model")
    return folder, str(model)


def _predict(model: str, *args: object) -> int:
    """``coreecho predict ARGS``, options first and the inputs after ``--`` (names may start with '-')."""
    argv, opts, paths = [str(a) for a in args], [], []
    while argv:
        a = argv.pop(0)
        if a == "-o":
            opts += [a, argv.pop(0)]
        elif a == "--resume":
            opts.append(a)
        else:
            paths.append(a)
    return main(["predict", "--model", model, "--quiet", "--clips", "1", *opts, "--", *paths])


def test_hostile_names_round_trip_through_csv_and_resume(videos, tmp_path, monkeypatch, capsys):
    folder, model = videos
    monkeypatch.chdir(folder)  # relative names: the cell starts with the name itself ('=', '+', '-', '@', tab)
    out = tmp_path / "ef.csv"
    first = HOSTILE[:6] + ["=bad.avi"]
    assert _predict(model, *first, "-o", out) == 1  # =bad.avi is an error row
    raw = out.read_text(encoding="utf-8")
    cells = [r[0] for r in csv.reader(io.StringIO(raw, newline=""))][1:]
    assert "'=HYPERLINK(1).avi" in cells and "'+plus.avi" in cells and "'=bad.avi" in cells
    assert not any(c[:1] in "=+-@\t\r" for c in cells)  # no cell a spreadsheet would run
    bad = next(r for r in csv.DictReader(open(out, newline="", encoding="utf-8")) if r["path"] == "'=bad.avi")
    assert bad["error"].startswith("'=bad.avi") and bad["ef"] == ""
    rows = read_rows(out, "csv")
    assert [r["path"] for r in rows] == first  # the reader removes the escape: names match exactly
    capsys.readouterr()
    assert _predict(model, *HOSTILE, "plain.avi", "-o", out, "--resume") == 0
    err = capsys.readouterr().err
    assert f"{len(HOSTILE) - 6 + 1} computed now" in err and "6 kept from an earlier run" in err
    rows = read_rows(out, "csv")
    assert [r["path"] for r in rows[:len(HOSTILE) + 1]] == HOSTILE + ["plain.avi"]
    assert all(r["error"] == "" and np.isfinite(float(r["ef"])) for r in rows[:len(HOSTILE) + 1])
    assert rows[-1]["path"] == "=bad.avi"  # an earlier row of another input stays
    capsys.readouterr()
    assert _predict(model, *HOSTILE, "plain.avi", "-o", out, "--resume") == 0  # nothing left to compute
    assert "0 computed now" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_hostile_names_round_trip_through_json(videos, tmp_path, monkeypatch, suffix):
    folder, model = videos
    monkeypatch.chdir(folder)
    out = tmp_path / f"ef{suffix}"
    assert _predict(model, *HOSTILE[:4], "-o", out) == 0
    assert _predict(model, *HOSTILE, "-o", out, "--resume") == 0
    rows = read_rows(out, suffix[1:])
    assert [r["path"] for r in rows] == HOSTILE  # JSON is not escaped: it is not opened by spreadsheets


def test_journal_cut_inside_a_quoted_newline(tmp_path):
    """A kill that cuts a row inside a quoted file name leaves a broken last record: it is dropped, not misread."""
    out = tmp_path / "ef.csv"
    part = partial_path(out)
    record = {"coreecho_run": 1, "settings": {"clips": "3"}}
    j = Journal(part, "csv", ROW_FIELDS, record=record)
    j.write({"path": "a\nb.avi", "ef": 50.0, "error": ""})
    j.write({"path": "c\nd.avi", "ef": 60.0, "error": ""})
    j.close()
    data = part.read_bytes()
    cut = data.index(b"c\nd.avi") + 2  # just after the newline inside the quotes
    part.write_bytes(data[:cut])
    head, rows = read_table(part, "csv")
    assert head == record and [r["path"] for r in rows] == ["a\nb.avi"]
    j = Journal(part, "csv", ROW_FIELDS, append=True, record=record)  # resume: complete rows kept, then appended
    j.write({"path": "=e.avi", "ef": 70.0, "error": ""})
    j.close()
    head, rows = read_table(part, "csv")
    assert head == record and [r["path"] for r in rows] == ["a\nb.avi", "=e.avi"]
    assert [float(r["ef"]) for r in rows] == [50.0, 70.0]
    part.write_bytes(part.read_bytes().replace(b'"a\nb.avi"', b'"a"x\nb.avi"'))  # damaged before the end
    from coreecho.cli._common import UsageError

    with pytest.raises(UsageError, match="not CSV") as err:
        read_table(part, "csv")
    assert str(part) in str(err.value)


def test_resume_refuses_what_coreecho_did_not_write(videos, tmp_path, capsys):
    folder, model = videos
    good = folder / "plain.avi"
    mine = tmp_path / "mydata.csv"
    text = "path,age,notes\nplain.avi,63,follow-up\n"
    mine.write_text(text)
    assert _predict(model, good, "-o", mine, "--resume") == 2
    err = capsys.readouterr().err
    assert "not an output of coreecho" in err and "mydata.csv" in err
    assert mine.read_text() == text  # untouched
    out = tmp_path / "ef.csv"
    assert _predict(model, good, "-o", out) == 0 and record_path(out).is_file()
    with open(out, "a") as fh:  # edited after coreecho wrote it
        fh.write(f"{folder / 'other.avi'},55.0" + "," * (len(ROW_FIELDS) - 2) + "\n")
    edited = out.read_bytes()
    assert _predict(model, good, "-o", out, "--resume") == 2
    assert "changed after coreecho wrote it" in capsys.readouterr().err and out.read_bytes() == edited
    out.unlink()
    partial_path(out).write_text("path,ef,error\nplain.avi,50,\n")  # a journal without a run record
    assert _predict(model, good, "-o", out, "--resume") == 2
    assert "no run record" in capsys.readouterr().err


def test_resume_with_other_settings_refuses_with_a_diff(videos, tmp_path, capsys):
    folder, model = videos
    a, b = folder / "plain.avi", folder / "+plus.avi"
    out = tmp_path / "ef.csv"
    assert _predict(model, a, "-o", out) == 0  # --clips 1
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["predict", str(a), str(b), "--model", model, "--quiet", "--clips", "3", "--resample-fps",
                 "-o", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "  clips: 1 in ef.csv, 3 in this run" in err
    assert "  --resample-fps: false in ef.csv, true in this run" in err  # in the command's words
    assert out.read_bytes() == before
    # another model (other weights) is refused too, and so is an interrupted journal with other settings
    import torch

    from coreecho import CoReEcho
    from conftest import tiny_config

    other = CoReEcho(tiny_config()).eval()
    with torch.no_grad():
        next(other.head.parameters()).add_(1.0)
    other_dir = other.save_pretrained(tmp_path / "other")
    assert _predict(str(other_dir), a, "-o", out, "--resume") == 2
    assert "weights_sha256" in capsys.readouterr().err
    settings = json.loads(record_path(out).read_text())["settings"]
    j = Journal(partial_path(out), "csv", ROW_FIELDS, record={"coreecho_run": 1,
                                                               "settings": {**settings, "precision": "bf16"}})
    j.write({"path": str(b), "ef": 50.0, "error": ""})
    j.close()
    assert _predict(model, a, b, "-o", out, "--resume") == 2
    err = capsys.readouterr().err
    assert "ef.csv.partial" in err and "  precision: bf16 in ef.csv.partial, auto (cpu) in this run" in err


@pytest.mark.parametrize("command, name", [("predict", "out.npz"), ("predict", "out.xlsx"), ("predict", "out"),
                                           ("predict", "out.parquet"), ("embed", "emb.csv")])
def test_unknown_extension_is_refused_before_any_work(videos, tmp_path, monkeypatch, capsys, command, name):
    import coreecho.inference

    folder, model = videos

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the output's format was checked")

    monkeypatch.setattr(coreecho.inference, "get_model", no_model)
    out = tmp_path / name
    assert main([command, str(folder / "plain.avi"), "--model", model, "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "extension" in err and name in err
    assert sorted(os.listdir(tmp_path)) == []  # nothing written


def _spawn(model: str, inputs: list[Path], out: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "coreecho", "predict", *map(str, inputs), "--model", model, "--clips", "1",
            "--workers", "0", "--quiet", "-o", str(out), "--resume"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("trial", [0, *(pytest.param(t, marks=pytest.mark.slow) for t in (1, 2))])  # more trials: -m slow
def test_two_runs_on_one_output_lose_nothing(videos, tmp_path, trial):
    """Started together: one holds the lock and the other refuses at once (or resumes after it); every row that a
    successful run computed is in the output, nothing is left behind."""
    folder, model = videos
    out = tmp_path / "ef.csv"
    sets = [[folder / n for n in HOSTILE[:3]], [folder / n for n in HOSTILE[3:6]]]
    procs = [_spawn(model, s, out) for s in sets]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    rows = {r["path"]: r for r in read_rows(out, "csv")}
    assert any(code == 0 for code, _ in results), results
    for (code, err), inputs in zip(results, sets):
        if code == 0:
            assert all(str(p) in rows and rows[str(p)]["error"] == "" for p in inputs), (err, list(rows))
        else:
            assert code in (1, 2) and "another coreecho run" in err, err  # refused at once: it computed nothing
    assert not partial_path(out).exists() and not any(".lock" in n or ".tmp" in n for n in os.listdir(tmp_path))
