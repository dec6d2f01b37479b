"""coreecho predict / embed: folders, globs, bad inputs reported per row, flushed output, exit codes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from coreecho.cli import main
from coreecho.cli.predict import expand_inputs
from coreecho.data.phantom import make_phantom
from coreecho.video.io import write_video


@pytest.fixture
def inputs(tmp_path, tiny_model):
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    good = []
    for i, ef in enumerate((35, 65)):
        frames, meta = make_phantom(ef=ef, seed=i)
        good.append(write_video(folder / f"good{i}.avi", frames, fps=meta.fps))
    np.save(folder / "sub" / "arr.npy", make_phantom(ef=50, seed=5)[0])
    bad = {
        "empty.avi": b"",
        "text.avi": b"this is not a video\n" * 50,
        "truncated.avi": good[0].read_bytes()[:3000],
        "nopixels.dcm": b"\0" * 128 + b"DICM" + b"\0" * 64,
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    np.save(folder / "nan.npy", np.full((40, 112, 112), np.nan, np.float32))
    np.save(folder / "oneframe.npy", np.zeros((1, 112, 112, 3), np.uint8))
    np.save(folder / "wrongdims.npy", np.zeros((112, 112), np.uint8))
    model_dir = tiny_model.save_pretrained(tmp_path / "model")
    return folder, model_dir, bad


def test_expand_inputs(inputs, tmp_path):
    folder, _, _ = inputs
    flat = expand_inputs([str(folder)])
    assert not any("arr.npy" in p for p in flat) and any("good0.avi" in p for p in flat)
    assert any("arr.npy" in p for p in expand_inputs([str(folder)], recursive=True))
    assert expand_inputs([str(folder / "good*.avi")]) == [str(folder / "good0.avi"), str(folder / "good1.avi")]
    assert expand_inputs(["nothing*.avi"]) == ["nothing*.avi"]


def test_predict_keeps_going_and_reports_each_bad_input(inputs, tmp_path):
    folder, model_dir, bad = inputs
    out = tmp_path / "ef.csv"
    code = main(["predict", str(folder), str(tmp_path / "missing.avi"), "--recursive", "--model", str(model_dir),
                 "--output", str(out), "--quiet"])
    assert code == 1
    rows = {r["path"].split("/")[-1]: r for r in csv.DictReader(out.open())}
    assert len(rows) == 2 + 1 + len(bad) + 3 + 1
    for name in ("good0.avi", "good1.avi", "arr.npy"):
        assert rows[name]["error"] == "" and 20 < float(rows[name]["ef"]) < 90
        assert rows[name]["n_clips"] == "3" and rows[name]["n_frames"]
    for name in list(bad) + ["nan.npy", "oneframe.npy", "wrongdims.npy", "missing.avi"]:
        assert rows[name]["error"], name
        assert rows[name]["ef"] == ""
    assert "NaN" in rows["nan.npy"]["error"] or "nan" in rows["nan.npy"]["error"].lower()
    assert "1 frame" in rows["oneframe.npy"]["error"]
    assert "pixel data" in rows["nopixels.dcm"]["error"].lower() or "dicom" in rows["nopixels.dcm"]["error"].lower()


def test_predict_json_and_success_exit_code(inputs, tmp_path, capsys):
    folder, model_dir, _ = inputs
    out = tmp_path / "ef.json"
    assert main(["predict", str(folder / "good0.avi"), "--model", str(model_dir), "--clips", "all",
                 "--output", str(out), "--quiet"]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["n_clips"] >= 1 and rows[0]["fps"] > 0
    assert main(["predict", str(folder / "good1.avi"), "--model", str(model_dir), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("path,ef,ef_std,n_clips")


def test_embed_writes_npz(inputs, tmp_path):
    folder, model_dir, _ = inputs
    out = tmp_path / "emb.npz"
    code = main(["embed", str(folder / "good0.avi"), str(folder / "text.avi"), str(folder / "good1.avi"),
                 "--model", str(model_dir), "--output", str(out), "--quiet"])
    assert code == 1
    data = np.load(out)
    assert data["embeddings"].shape == (3, 64)
    assert np.isnan(data["embeddings"][1]).all() and data["errors"][1]
    assert np.isfinite(data["embeddings"][[0, 2]]).all()
    assert list(data["paths"]) == [str(folder / "good0.avi"), str(folder / "text.avi"), str(folder / "good1.avi")]


def test_embed_parquet_output(inputs, tmp_path):
    pytest.importorskip("pyarrow")
    from coreecho.analysis.plots import load_embeddings

    folder, model_dir, _ = inputs
    out = tmp_path / "emb.parquet"
    assert main(["embed", str(folder / "good0.avi"), str(folder / "good1.avi"), "--model", str(model_dir),
                 "--output", str(out), "--quiet"]) == 0
    data = load_embeddings(out)
    assert len(data) == 2 and data.embeddings.shape == (2, 64) and "ef" in data.columns
    assert not (tmp_path / "emb.npz").exists()


def test_folder_scan_takes_every_extension_the_readers_read(tiny_model, tmp_path):
    """`coreecho predict DIR` picks up the library's one extension list: `.wmv`, `.mpg`, `.mpeg`, `.dic` included."""
    pytest.importorskip("pydicom")
    from coreecho.cli.predict import INPUT_EXTENSIONS
    from coreecho.data.layouts import write_dicom
    from coreecho.video import READABLE_EXTENSIONS, open_video

    assert INPUT_EXTENSIONS is READABLE_EXTENSIONS
    assert {".wmv", ".mpg", ".mpeg", ".dic", ".avi", ".dcm", ".npy"} <= set(READABLE_EXTENSIONS)
    folder = tmp_path / "videos"
    folder.mkdir()
    frames, _ = make_phantom(ef=50, seed=7, n_frames=40, fps=50)
    written = [write_video(folder / "a.wmv", frames, fps=50, codec="wmv2"),
               write_video(folder / "b.MPG", frames, fps=50, codec="mpeg1video"),  # case-insensitive
               write_video(folder / "c.mpeg", frames, fps=50, codec="mpeg2video"),
               write_dicom(folder / "d.dic", frames, fps=50)]
    (folder / "notes.txt").write_text("not a video")
    assert expand_inputs([str(folder)]) == [str(p) for p in sorted(written)]
    for path in written:  # the readers do read each one
        with open_video(path) as reader:
            assert reader.info.n_frames == 40
    out = tmp_path / "ef.csv"
    model_dir = tiny_model.save_pretrained(tmp_path / "model")
    assert main(["predict", str(folder), "--model", str(model_dir), "--output", str(out), "--quiet"]) == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"] for r in rows] == [str(p) for p in sorted(written)]
    assert all(r["error"] == "" and np.isfinite(float(r["ef"])) for r in rows)
