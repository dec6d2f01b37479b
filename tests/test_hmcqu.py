"""HMC-QU reader (xlsx and csv label tables), MI phantoms, stratified patient-level folds, recipes on phantoms."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import tiny_config
from coreecho.data.folds import check_folds, group_folds, hmcqu_folds
from coreecho.data.hmcqu import HMCQU, MASK_COLUMN, SEGMENTS, START_COLUMN, make_akinetic, read_table, \
    write_hmcqu_layout
from coreecho.errors import DatasetError, InputError, MissingDependencyError


@pytest.fixture(scope="module")
def small_model():
    from coreecho import CoReEcho
    from coreecho.models.config import PreprocessConfig

    torch.manual_seed(0)
    return CoReEcho(tiny_config(preprocessing=PreprocessConfig(frames=8))).eval()


@pytest.fixture(scope="module")
def hmcqu_csv(tmp_path_factory):
    root = tmp_path_factory.mktemp("hmcqu_csv")
    rows = write_hmcqu_layout(root, 10, seed=5, labels_format="csv", mi_fraction=0.5, repeat_fraction=0.4)
    return root, rows


def _rewrite_csv(root, edit):
    path = root / "A4C.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    table = edit(table)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(table)


def _copy(src, tmp_path):
    dst = tmp_path / "hmcqu"
    shutil.copytree(src, dst)
    return dst


def test_reader_labels_segments_patients(hmcqu_csv):
    root, rows = hmcqu_csv
    ds = HMCQU(root, frames=8)
    assert ds.task == "classification" and len(ds) == 10
    assert ds.names == [r["name"] for r in rows]
    assert ds.groups == [r["patient"] for r in rows]
    assert len(set(ds.groups)) < len(ds)  # some patients have two recordings
    assert ds.labels.tolist() == [r["label"] for r in rows]
    assert ds.labels.tolist() == [int(any(r["segments"])) for r in rows]
    assert ds.segment_names == list(SEGMENTS)
    np.testing.assert_array_equal(ds.segments, [r["segments"] for r in rows])
    assert 0 < ds.labels.sum() < len(ds)
    item = ds[0]
    assert item["video"].shape == (3, 8, 112, 112) and item["label"].dtype == torch.int64
    assert item["segments"].tolist() == rows[0]["segments"] and item["patient"] == rows[0]["patient"]


def test_cycle_frames_and_span(hmcqu_csv):
    from coreecho.video.io import probe_video

    root, rows = hmcqu_csv
    ds = HMCQU(root, frames=8)
    reader, window = ds._source(1)
    assert window == (rows[1]["start"] - 1, rows[1]["end"])
    whole = HMCQU(root, frames=8, span="all")
    reader, window = whole._source(1)
    assert window is None and reader.info.n_frames == probe_video(rows[1]["path"]).n_frames
    # the item is the cycle only: frames outside the window never reach the clip
    assert ds.clip(1).shape == (8, 112, 112, 3)
    assert ds.preprocess.sampling == "sequence"
    with pytest.raises(InputError):
        HMCQU(root, span="half")


def test_xlsx_and_csv_agree(tmp_path, hmcqu_csv):
    pytest.importorskip("openpyxl")
    rows = write_hmcqu_layout(tmp_path, 10, seed=5, labels_format="xlsx", mi_fraction=0.5, repeat_fraction=0.4)
    table = read_table(tmp_path / "A4C.xlsx")
    assert table[0] == ["ECHO", *SEGMENTS, START_COLUMN, "", MASK_COLUMN]
    a, b = HMCQU(tmp_path, frames=8), HMCQU(hmcqu_csv[0], frames=8)
    assert a.names == b.names and a.labels.tolist() == b.labels.tolist()
    assert [(r.start, r.end) for r in a.records] == [(r["start"], r["end"]) for r in rows]


def test_configurable_names(hmcqu_csv, tmp_path):
    root = _copy(hmcqu_csv[0], tmp_path)
    (root / "HMC-QU" / "A4C").rename(root / "videos")

    def edit(table):
        table[0][0] = "Recording"
        table[0][1:7] = [f"S{i}" for i in range(6)]
        return table

    _rewrite_csv(root, edit)
    ds = HMCQU(root, video_dir="videos", name_column="Recording", segment_columns=[f"S{i}" for i in range(6)],
               patient_pattern=r"ES(\d+)", frames=8)
    assert ds.groups[0] == hmcqu_csv[1][0]["patient"][2:]
    assert ds.labels.tolist() == [r["label"] for r in hmcqu_csv[1]]


def test_reader_errors(hmcqu_csv, tmp_path):
    with pytest.raises(DatasetError, match="folder not found"):
        HMCQU(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="A4C.xlsx or A4C.csv"):
        HMCQU(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no header row with the column 'NAME'"):
        HMCQU(hmcqu_csv[0], name_column="NAME")
    with pytest.raises(DatasetError, match="missing column 'SEG9'"):
        HMCQU(hmcqu_csv[0], segment_columns=["SEG1", "SEG9"])

    root = _copy(hmcqu_csv[0], tmp_path / "a")
    _rewrite_csv(root, lambda t: [[c if not c.startswith("SEG") else "X" + c for c in t[0]]] + t[1:])
    with pytest.raises(DatasetError, match="no segment columns"):
        HMCQU(root)

    root = _copy(hmcqu_csv[0], tmp_path / "b")
    next((root / "HMC-QU" / "A4C").glob("*.avi")).unlink()
    with pytest.raises(DatasetError, match="missing"):
        HMCQU(root)

    root = _copy(hmcqu_csv[0], tmp_path / "c")

    def bad_cell(t):
        t[2][1] = "yes"
        return t

    _rewrite_csv(root, bad_cell)
    with pytest.raises(DatasetError, match="row 3.*not a number"):
        HMCQU(root)

    root = _copy(hmcqu_csv[0], tmp_path / "d")

    def bad_label(t):
        t[1][2] = "2"
        return t

    _rewrite_csv(root, bad_label)
    with pytest.raises(DatasetError, match="0 or 1"):
        HMCQU(root)

    root = _copy(hmcqu_csv[0], tmp_path / "e")

    def bad_cycle(t):
        t[1][7], t[1][8] = "30", "10"
        return t

    _rewrite_csv(root, bad_cycle)
    with pytest.raises(DatasetError, match="invalid cycle frames"):
        HMCQU(root)


def test_xlsx_needs_openpyxl(tmp_path, monkeypatch):
    import sys

    (tmp_path / "A4C.xlsx").write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    with pytest.raises(MissingDependencyError, match=r"coreecho\[hmcqu\]"):
        read_table(tmp_path / "A4C.xlsx")
    with pytest.raises(MissingDependencyError):
        write_hmcqu_layout(tmp_path / "x", 1, labels_format="xlsx")


def test_akinetic_segments_freeze_only_their_region():
    from coreecho.data.phantom import make_phantom

    cine, meta = make_phantom(50.0, seed=2, n_frames=60, fps=25, heart_rate=75)
    ed, es = meta.traced_frames
    for segs in ([1, 2, 3], [5, 6, 7], [6]):
        out = make_akinetic(cine, meta, segs)
        np.testing.assert_array_equal(out[ed], cine[ed])  # end-diastole is the reference: unchanged
        changed = np.abs(out[es].astype(int) - cine[es].astype(int)).sum(-1) > 0
        assert 0 < changed.mean() < 0.3
        lateral = changed[:, 56:].sum() > changed[:, :56].sum()
        assert lateral == (segs[0] >= 5)
    with pytest.raises(InputError):
        make_akinetic(cine, meta, [4])


def test_hmcqu_folds_patient_level_stratified_seeded():
    rng = np.random.default_rng(0)
    patients = [f"ES{i:04d}" for i in range(40) for _ in range(1 + (i % 3 == 0))]
    mi = {p: int(rng.random() < 0.6) for p in sorted(set(patients))}
    labels = [mi[p] for p in patients]
    folds = hmcqu_folds(patients, labels, k=5, seed=1)
    check_folds(folds, len(patients), patients)
    rate = np.mean(labels)
    for _, test in folds:
        assert abs(np.mean([labels[i] for i in test]) - rate) < 0.2
    again = hmcqu_folds(patients, labels, k=5, seed=1)
    other = hmcqu_folds(patients, labels, k=5, seed=2)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))
    few = hmcqu_folds(["a", "b", "c", "d", "e"], [1, 0, 0, 0, 0], k=3, seed=0)  # fewer positives than folds
    check_folds(few, 5, list("abcde"))
    plain = group_folds(patients, k=4, seed=0)
    check_folds(plain, len(patients), patients)
    with pytest.raises(InputError):
        hmcqu_folds(["a", "b"], [0, 1], k=3)


@pytest.mark.parametrize("mode", ["linear", "mlp", "full"])
def test_recipes_on_hmcqu_phantom(hmcqu_csv, small_model, mode):
    from coreecho.train.transfer import cross_validate

    ds = HMCQU(hmcqu_csv[0], frames=8)
    result = cross_validate(small_model, ds, mode=mode, folds=2, dataset_name="hmcqu",
                            epochs=1 if mode == "full" else 5, batch_size=4)
    assert result.task == "classification" and len(result.folds) == 2
    for key in ("f1", "accuracy", "sensitivity", "specificity"):
        assert key in result.summary
        v = result.summary[key]["mean"]
        assert np.isnan(v) or 0.0 <= v <= 1.0
    fold_of = {}
    for p in result.predictions:
        assert fold_of.setdefault(p["patient"], p["fold"]) == p["fold"]  # patients stay in one fold
        assert p["pred"] in (0, 1) and 0.0 <= p["score"] <= 1.0
    json.dumps(result.to_dict())
    assert "hmcqu" in result.table() and "specificity" in result.table()
