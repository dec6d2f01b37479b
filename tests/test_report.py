"""``coreecho report``: one PNG + HTML page per video, on a phantom AVI, a real-format DICOM cine and a .npy."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from coreecho.analysis.report import build_report, display_name, report_paths
from coreecho.cli import main

pytest.importorskip("matplotlib")

FIGURE_SIZE = (1144, 1320)  # 12 x 10.4 inches at 110 dpi: (height, width)


def _png_shape(path):
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im.size[::-1], np.asarray(im.convert("RGB"))


def _phantom_avi(path, ef=40.0, seed=3):
    from coreecho.data.phantom import make_phantom
    from coreecho.video.io import write_video

    frames, meta = make_phantom(ef=ef, seed=seed, n_frames=100)
    return str(write_video(path, frames, fps=meta.fps))


def _dicom_cine():
    data = pytest.importorskip("pydicom.data")
    path = data.get_testdata_file("color3d_jpeg_baseline.dcm")  # an ultrasound cine: 120 frames, 480x640, JPEG
    if path is None:
        pytest.skip("pydicom-data's ultrasound cine is not installed")
    return path


def _check_page(png, page, ef_text):
    shape, pixels = _png_shape(png)
    assert shape == FIGURE_SIZE
    assert pixels.std() > 20  # frames, overlays and bars drawn, not a blank page
    text = page.read_text(encoding="utf-8")
    assert f"<td>{ef_text} %</td>" in text
    assert "Not for clinical use" in text and "phantom-tiny" in text and "MIT" in text
    assert "data:image/png;base64," in text
    return text


@pytest.mark.filterwarnings("ignore:.*fps is far from:UserWarning")  # the cine is 30 fps, phantom-tiny's 50
def test_report_command_on_avi_npy_and_dicom(tmp_path, capsys, one_thread):
    import coreecho

    avi = _phantom_avi(tmp_path / "a4c.avi")
    from coreecho.data.phantom import make_phantom

    npy = tmp_path / "a4c.npy"
    np.save(npy, make_phantom(ef=65.0, seed=4, n_frames=90)[0])
    dcm = tmp_path / "cine.dcm"
    shutil.copy(_dicom_cine(), dcm)
    out = tmp_path / "reports"
    model = coreecho.load_model("phantom-tiny")
    for video in (avi, str(npy), str(dcm)):
        assert main(["report", video, "--model", "phantom-tiny", "-o", f"{out}/"]) == 0
        printed = capsys.readouterr().out
        ef = float(re.search(r"EF ([0-9.]+) %", printed).group(1))
        expected = model.predict_ef(video)  # the report's EF is the library's EF
        assert ef == pytest.approx(expected, abs=0.006)
        name = video.rsplit("/", 1)[-1]
        png, page = out / f"{name}-report.png", out / f"{name}-report.html"
        text = _check_page(png, page, f"{expected:.2f}")
        assert "90% interval" in text  # phantom-tiny ships a calibration
        assert "distribution shift" in text
        assert "none (whole frame)" not in text  # phantom-tiny reads 64x64: every input is cropped to its fan
    # three inputs, three pages: a4c.avi and a4c.npy do not overwrite each other
    assert len(list(out.glob("*.png"))) == 3 and len(list(out.glob("*.html"))) == 3


def test_hostile_file_name_is_escaped_and_folders_are_not_shown(tmp_path, one_thread):
    folder = tmp_path / "Doe_John_1957"
    folder.mkdir()
    name = 'x"<script>alert(1)<\\script>&\n$a$.avi'
    video = _phantom_avi(folder / name)
    r = build_report(video, "phantom-tiny", tmp_path / "out" / "page")
    assert r.figure == tmp_path / "out" / "page.png" and r.html == tmp_path / "out" / "page.html"
    text = r.html.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text and "&quot;" in text
    assert "Doe_John" not in text and str(tmp_path) not in text  # the file name only, never its folders
    assert display_name(video) in text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace(
        "&amp;", "&")
    assert "\n$a$.avi" not in text  # the newline is shown as '?'
    shape, _ = _png_shape(r.figure)
    assert shape == FIGURE_SIZE


def test_uncalibrated_model_says_so(tmp_path, tiny_model, one_thread):
    from coreecho.data.phantom import make_phantom

    frames, _ = make_phantom(ef=50.0, seed=1, n_frames=150)
    path = tmp_path / "clip.npy"
    np.save(path, frames)
    r = build_report(str(path), tiny_model, tmp_path / "r", model_name="tiny", stage="blocks2")
    assert r.prediction.ef_low is None and r.stage == "blocks2"
    text = r.html.read_text(encoding="utf-8")
    assert "not calibrated" in text and "no shift detector" in text
    assert f"{r.prediction.ef:.2f} %" in text
    assert r.fan_box is None  # 112x112 frames are already the model's size: no crop
    shape, _ = _png_shape(r.figure)
    assert shape == FIGURE_SIZE


def test_report_paths(tmp_path):
    assert report_paths(None, "x/a.avi") == (report_paths("coreecho-report/", "a.avi"))
    assert report_paths(tmp_path, "a b.dcm")[0] == tmp_path / "a_b.dcm-report.png"
    assert report_paths("o/s.html", "a.avi") == (report_paths("o/s", "a.avi"))
    assert report_paths("o/s", "a.avi")[1].name == "s.html"


def test_report_refuses_to_overwrite_its_input(tmp_path, capsys):
    (tmp_path / "v.png").write_bytes(b"not read: the output check comes first")
    assert main(["report", str(tmp_path / "v.png"), "--model", "phantom-tiny", "-o", str(tmp_path / "v")]) == 2
    assert "also an input" in capsys.readouterr().err
