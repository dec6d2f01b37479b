"""Tests of coreecho.data.phantom: exact EF, determinism, image content, the EchoNet-Dynamic layout."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from coreecho.data.phantom import (
    FILELIST_COLUMNS,
    N_CHORDS,
    TRACING_COLUMNS,
    make_phantom,
    volume_from_tracing,
    write_echonet_layout,
)
from coreecho.errors import InputError
from coreecho.video import probe_video, read_video


def _polygon_mask(lines: np.ndarray, size: int = 112) -> np.ndarray:
    """Pixels whose centres lie inside the traced outline (the chord end points, in order)."""
    left = lines[1:, :2]
    right = lines[1:, 2:][::-1]
    poly = np.concatenate([lines[:1, :2], left, lines[:1, 2:], right])
    yy, xx = np.mgrid[0:size, 0:size]
    inside = np.zeros((size, size), bool)
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for a, b, c, d in zip(x0, y0, x1, y1):
        cross = ((b > yy) != (d > yy)) & (xx < (c - a) * (yy - b) / (d - b + 1e-12) + a)
        inside ^= cross
    return inside


@pytest.mark.parametrize("ef", [10.0, 25.0, 40.0, 55.0, 70.0, 85.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ef_exact(ef, seed):
    _, meta = make_phantom(ef=ef, seed=seed, n_frames=40)
    assert abs(meta.ef - ef) < 0.5
    assert abs(meta.ef - ef) < 1e-6  # by construction
    ed, es = meta.traced_frames
    edv = volume_from_tracing(meta.tracings[ed], meta.cm_per_pixel)
    esv = volume_from_tracing(meta.tracings[es], meta.cm_per_pixel)
    assert edv == pytest.approx(meta.edv) and esv == pytest.approx(meta.esv)
    assert meta.ef == pytest.approx(100 * (edv - esv) / edv)


def test_meta_contents():
    frames, meta = make_phantom(ef=60.0, seed=5, n_frames=150, fps=50, heart_rate=75)
    assert frames.shape == (150, 112, 112, 3) and frames.dtype == np.uint8
    assert meta.n_frames == 150 and meta.fps == 50 and meta.period_frames == 40 and meta.heart_rate == 75.0
    ed, es = meta.traced_frames
    assert meta.ed_frames[0] == ed and meta.es_frames[0] == es and es > ed
    assert all(b - a == 40 for a, b in zip(meta.ed_frames, meta.ed_frames[1:]))
    assert set(meta.tracings) == {ed, es}
    for lines in meta.tracings.values():
        assert lines.shape == (1 + N_CHORDS, 4)
        assert ((lines >= 0) & (lines < 112)).all()
    long_ed = np.hypot(*(meta.tracings[ed][0, 2:] - meta.tracings[ed][0, :2]))
    long_es = np.hypot(*(meta.tracings[es][0, 2:] - meta.tracings[es][0, :2]))
    assert long_es < long_ed
    assert 40 < meta.edv < 200 and meta.esv < meta.edv
    d = meta.to_dict()
    json.dumps(d)
    assert d["ef"] == meta.ef and len(d["tracings"][ed]) == 1 + N_CHORDS


def test_image_content():
    frames, meta = make_phantom(ef=65.0, seed=11, n_frames=80, fps=50, heart_rate=75)
    assert np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(frames[..., 0], frames[..., 2])
    assert frames[:, 0, 0].max() == 0 and frames[:, 0, -1].max() == 0  # outside the fan
    ed, es = meta.traced_frames
    lv = _polygon_mask(meta.tracings[ed])
    core = _polygon_mask(meta.tracings[es])
    assert lv.sum() > core.sum() > 50
    ring = lv & ~core  # blood at ED, myocardium at ES
    grey = frames[..., 0].astype(float)
    assert grey[ed][core].mean() < 30  # the LV cavity is dark
    assert grey[es][ring].mean() > 2 * grey[ed][ring].mean()  # the wall moved in at ES
    # speckle: the tissue is not flat and changes between frames, but is temporally correlated
    band = grey[:, 90:100, 50:60]
    assert band.std() > 5
    c1 = np.corrcoef(band[10].ravel(), band[11].ravel())[0, 1]
    c20 = np.corrcoef(band[10].ravel(), band[30].ravel())[0, 1]
    assert c1 > c20


def test_determinism_and_independent_options():
    a, ma = make_phantom(ef=50.0, seed=3, n_frames=50)
    b, mb = make_phantom(ef=50.0, seed=3, n_frames=50)
    assert np.array_equal(a, b) and ma.to_dict() == mb.to_dict()
    c, mc = make_phantom(ef=50.0, seed=4, n_frames=50)
    assert not np.array_equal(a, c) and mc.edv != ma.edv
    # EDV is drawn independently of the EF, and fixing one option does not change the other draws
    _, md = make_phantom(ef=20.0, seed=3, n_frames=50)
    assert md.edv == pytest.approx(ma.edv) and md.depth_cm == pytest.approx(ma.depth_cm)
    _, me = make_phantom(ef=50.0, seed=3, n_frames=50, fps=ma.fps + 5)
    assert me.edv == pytest.approx(ma.edv)
    assert me.params["gain"] == ma.params["gain"]


def test_random_ranges():
    metas = [make_phantom(seed=s, n_frames=(100, 200), speckle=0.0, noise=0.0)[1] for s in range(12)]
    assert all(10 <= m.ef <= 85 for m in metas)
    assert all(100 <= m.n_frames <= 200 for m in metas)
    assert any(m.n_frames < 144 for m in metas) and any(m.n_frames >= 144 for m in metas)
    assert all(40 <= m.fps <= 60 for m in metas)
    assert all(45 <= m.heart_rate <= 115 for m in metas)
    assert len({round(m.edv, 3) for m in metas}) == 12
    assert np.corrcoef([m.ef for m in metas], [m.edv for m in metas])[0, 1] ** 2 < 0.5


def test_bad_options():
    with pytest.raises(InputError, match="ejection"):
        make_phantom(ef=0.5)
    with pytest.raises(InputError, match="too short"):
        make_phantom(ef=50, n_frames=5, fps=60, heart_rate=50)
    with pytest.raises(InputError, match="positive"):
        make_phantom(ef=50, fps=-1, n_frames=50)
    with pytest.raises(InputError, match="range"):
        make_phantom(ef=50, n_frames=(200, 100))
    with pytest.raises(InputError):
        volume_from_tracing(np.zeros((1, 4)))


def test_size_option():
    frames, meta = make_phantom(ef=35, seed=0, n_frames=30, size=64)
    assert frames.shape == (30, 64, 64, 3) and abs(meta.ef - 35) < 1e-6


def test_write_echonet_layout_round_trip(tmp_path):
    rows = write_echonet_layout(tmp_path / "echo", 4, seed=0, splits=(2, 1, 1), n_frames=(40, 70))
    root = tmp_path / "echo"
    with open(root / "FileList.csv", newline="") as fh:
        lines = list(csv.reader(fh))
    assert (root / "FileList.csv").read_text().splitlines()[0] == "FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split"
    assert tuple(lines[0]) == FILELIST_COLUMNS and len(lines) == 5
    assert (root / "VolumeTracings.csv").read_text().splitlines()[0] == "FileName,X1,Y1,X2,Y2,Frame"
    with open(root / "VolumeTracings.csv", newline="") as fh:
        tr = list(csv.DictReader(fh))
    assert tuple(tr[0]) == TRACING_COLUMNS
    assert sorted(r["Split"] for r in rows) == ["TEST", "TRAIN", "TRAIN", "VAL"]
    for line, row in zip(lines[1:], rows):
        rec = dict(zip(FILELIST_COLUMNS, line))
        name = rec["FileName"]
        assert re.fullmatch(r"0X[0-9A-F]{16}", name) and rec["Split"] in ("TRAIN", "VAL", "TEST")
        path = root / "Videos" / f"{name}.avi"
        assert path.exists() and row["path"] == str(path)
        info = probe_video(path)
        assert info.n_frames == int(rec["NumberOfFrames"]) and 40 <= info.n_frames <= 70
        assert (info.height, info.width) == (int(rec["FrameHeight"]), int(rec["FrameWidth"])) == (112, 112)
        assert info.fps == float(rec["FPS"])
        v = read_video(path, indices=[0])
        assert v.frames.shape == (1, 112, 112, 3)
        mine = [r for r in tr if r["FileName"] == f"{name}.avi"]
        assert len(mine) == 2 * (1 + N_CHORDS)
        frames = [int(r["Frame"]) for r in mine]
        es, ed = frames[0], frames[-1]
        assert frames == [es] * 21 + [ed] * 21 and (ed, es) == (row["ed_frame"], row["es_frame"])
        vol = {f: volume_from_tracing([[float(r[k]) for k in ("X1", "Y1", "X2", "Y2")] for r in mine if int(r["Frame"]) == f])
               for f in (es, ed)}
        assert vol[es] < vol[ed]  # the smaller trace (ES) comes first
        assert 100 * (1 - vol[es] / vol[ed]) == pytest.approx(float(rec["EF"]), abs=1e-3)
        assert float(rec["EF"]) == pytest.approx(100 * (1 - float(rec["ESV"]) / float(rec["EDV"])), abs=1e-4)


def test_write_echonet_layout_options(tmp_path):
    rows = write_echonet_layout(tmp_path / "a", 3, seed=1, splits=(1.0, 0.0, 0.0), ef_range=(30, 31),
                                n_frames=30, fps=40, heart_rate=100, progress=True)
    assert all(r["Split"] == "TRAIN" and 30 <= r["EF"] <= 31 and r["FPS"] == 40 for r in rows)
    again = write_echonet_layout(tmp_path / "b", 3, seed=1, splits=(1.0, 0.0, 0.0), ef_range=(30, 31),
                                 n_frames=30, fps=40, heart_rate=100)
    assert [r["FileName"] for r in rows] == [r["FileName"] for r in again]
    with pytest.raises(InputError, match="sum to n"):
        write_echonet_layout(tmp_path / "c", 3, splits=(1, 1, 2))
    with pytest.raises(InputError):
        write_echonet_layout(tmp_path / "c", 0)
    with pytest.raises(InputError, match="ef_range"):
        write_echonet_layout(tmp_path / "c", 2, ef_range=(50, 99))


def test_per_frame_lv_curves_span_edv_to_esv():
    _, meta = make_phantom(ef=40, seed=2)
    assert meta.lv_volume.shape == meta.lv_area.shape == (meta.n_frames,)
    assert meta.lv_volume.max() == pytest.approx(meta.edv) and meta.lv_volume.min() == pytest.approx(meta.esv)
    assert np.argmax(meta.lv_area) in meta.ed_frames or meta.lv_area[meta.ed_frames[0]] == meta.lv_area.max()
    assert meta.lv_area[meta.es_frames[0]] == pytest.approx(meta.lv_area.min())
