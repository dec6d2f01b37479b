"""One failure is one row (issue 19.2): whatever one input raises while it is read or prepared — in this process
or in a loader worker, coreecho's error or a library's — becomes that input's error row and the run goes on; loader
workers that die or cannot start make the run decode in this process instead."""

from __future__ import annotations

import csv
import os
import pickle
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import coreecho.errors as E
from coreecho.cli import main
from coreecho.data.phantom import make_phantom
from coreecho.engine import items as engine_items
from coreecho.inference import embed, predict_ef
from coreecho.video.io import write_video

pydicom = pytest.importorskip("pydicom")


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Two good AVIs, a JPEG-LS DICOM (its decoder is broken by the tests), a DICOM with two RescaleSlope values,
    a truncated AVI; and a tiny model."""
    from pydicom import uid
    from pydicom.dataelem import RawDataElement
    from pydicom.encaps import encapsulate
    from pydicom.tag import Tag

    from coreecho import CoReEcho
    from coreecho.data.layouts import write_dicom
    from conftest import tiny_config

    root = tmp_path_factory.mktemp("one-failure")
    good = []
    for i, ef in enumerate((40, 60)):
        frames, meta = make_phantom(ef=ef, seed=i, n_frames=48)
        good.append(write_video(root / f"good{i}.avi", frames, fps=meta.fps))
    grey = (np.arange(8 * 32 * 32) % 251).astype(np.uint8).reshape(8, 32, 32)
    jls = write_dicom(root / "jpegls.dcm", grey, fps=50.0)
    ds = pydicom.dcmread(jls)
    ds.file_meta.TransferSyntaxUID = uid.JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes(64) + b"\xff\xd9"] * len(grey), has_bot=False)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(jls, enforce_file_format=True)
    slope = write_dicom(root / "slope.dcm", (np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16) * 16),
                        fps=50.0)
    ds = pydicom.dcmread(slope)
    ds[0x00281053] = RawDataElement(Tag(0x00281053), "DS", 4, b"1\\2 ", 0, False, True)
    ds.save_as(slope)
    truncated = root / "truncated.avi"
    truncated.write_bytes(good[0].read_bytes()[:4000])
    torch.manual_seed(0)
    model = CoReEcho(tiny_config()).eval()
    return {"good": good, "jpegls": jls, "slope": slope, "truncated": truncated, "model": model,
            "model_dir": str(model.save_pretrained(root / "model"))}


def _plugin_raises(monkeypatch):
    """The JPEG-LS decoder plugin raises a TypeError of its own; and preparing ``raw.avi`` raises a bare library
    ``ValueError`` that no layer below the engine turns into coreecho's error (the engine must)."""
    from coreecho.video.pipeline import ClipPipeline

    call = ClipPipeline.__call__

    def prepare(self, video, *args, **kwargs):
        if str(video).endswith("raw.avi"):
            raise ValueError("The length of the value must be 1 for 'RescaleSlope'")
        return call(self, video, *args, **kwargs)

    monkeypatch.setattr(ClipPipeline, "__call__", prepare)
    from pydicom import uid
    from pydicom.pixels import get_decoder

    def broken(src, runner):
        raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'int'")

    decoder = get_decoder(uid.JPEGLSLossless)
    monkeypatch.setattr(decoder, "_available", {"plugin": broken})
    monkeypatch.setattr(decoder, "_unavailable", {})


@pytest.mark.parametrize("workers", [0, 2])
def test_cli_writes_every_good_row(batch, tmp_path, monkeypatch, workers):
    _plugin_raises(monkeypatch)  # forked loader workers inherit it
    raw = tmp_path / "raw.avi"
    raw.write_bytes(batch["good"][0].read_bytes())
    files = [batch["good"][0], batch["jpegls"], batch["slope"], raw, batch["truncated"], batch["good"][1]]
    out = tmp_path / "ef.csv"
    code = main(["predict", *map(str, files), "--model", batch["model_dir"], "--workers", str(workers), "--clips",
                 "1", "-o", str(out), "--quiet"])
    assert code == 1
    with open(out, newline="") as fh:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    assert list(rows) == [p.name for p in files]
    for name in ("good0.avi", "good1.avi"):
        assert rows[name]["error"] == "" and np.isfinite(float(rows[name]["ef"]))
    for name in ("jpegls.dcm", "slope.dcm", "raw.avi", "truncated.avi"):
        assert rows[name]["ef"] == "" and name in rows[name]["error"], rows[name]
    assert "ValueError while reading or preparing it: The length" in rows["raw.avi"]["error"]
    assert "RescaleSlope" in rows["slope.dcm"]["error"]
    assert not Path(f"{out}.partial").exists()


def test_api_with_errors_nan_returns_every_good_row(batch, monkeypatch):
    _plugin_raises(monkeypatch)
    frames, meta = make_phantom(ef=50, seed=4, n_frames=48)
    sparse = torch.from_numpy(frames[..., 0].astype(np.float32)).to_sparse()
    videos = [str(batch["good"][0]), sparse, frames, str(batch["jpegls"]), str(batch["slope"])]
    model = batch["model"]
    with pytest.warns(UserWarning):
        efs = predict_ef(videos, model=model, errors="nan", fps=meta.fps, clips=1, workers=0)
    assert np.isfinite(efs[[0, 2]]).all() and np.isnan(efs[[1, 3, 4]]).all()
    preds = predict_ef(videos, model=model, errors="nan", fps=meta.fps, clips=1, workers=0, return_details=True)
    assert preds[1].error.startswith("item 1") and "sparse" in preds[1].error.lower()
    assert "jpegls.dcm" in preds[3].error and "RescaleSlope" in preds[4].error
    emb = embed(videos, model=model, errors="nan", fps=meta.fps, clips=1, workers=0)
    assert emb.shape == (5, model.embed_dim)
    assert np.isfinite(emb[[0, 2]]).all() and np.isnan(emb[[1, 3, 4]]).all()
    raw = Path(batch["good"][0]).with_name("raw.avi")
    raw.write_bytes(Path(batch["good"][0]).read_bytes())
    with pytest.raises(E.VideoReadError, match="ValueError"):  # errors="raise": the bad input, typed
        predict_ef([str(raw)], model=model, clips=1, workers=0)
    assert np.isnan(predict_ef([str(raw), frames], model=model, errors="nan", fps=meta.fps, clips=1))[0]


def test_item_errors_survive_pickling():
    err = engine_items.item_error("a.dcm", ValueError("multi-valued"))
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is E.VideoReadError and str(back) == str(err) == "a.dcm: ValueError while reading or " \
        "preparing it: multi-valued"
    own = E.DecoderMissingError("b.dcm", "no decoder", package="pylibjpeg")
    assert engine_items.item_error("b.dcm", own) is own and str(pickle.loads(pickle.dumps(own))) == str(own)


def _efs(out: Path) -> dict[str, float]:
    with open(out, newline="") as fh:
        return {Path(r["path"]).name: float(r["ef"]) for r in csv.DictReader(fh)}


def test_workers_that_cannot_start_fall_back_to_this_process(batch, tmp_path, monkeypatch, capsys):
    import multiprocessing.process

    good = [str(p) for p in batch["good"]]
    ref = tmp_path / "ref.csv"
    assert main(["predict", *good, "--model", batch["model_dir"], "--workers", "0", "-o", str(ref), "--quiet"]) == 0

    def eagain(self):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", eagain)
    out = tmp_path / "ef.csv"
    assert main(["predict", *good, "--model", batch["model_dir"], "--workers", "2", "-o", str(out), "--quiet"]) == 0
    assert "loader workers stopped (BlockingIOError" in capsys.readouterr().err
    assert _efs(out) == pytest.approx(_efs(ref), abs=1e-3)


def test_a_killed_worker_is_replaced_by_decoding_here(batch, tmp_path, monkeypatch):
    """A worker killed while decoding (what the out-of-memory killer does): its item is decoded again here."""
    original = engine_items.VideoItems.__getitem__

    def killed_in_worker(self, index):
        if torch.utils.data.get_worker_info() is not None and index == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, index)

    monkeypatch.setattr(engine_items.VideoItems, "__getitem__", killed_in_worker)
    videos = [str(p) for p in batch["good"]] + [str(batch["truncated"])]
    with pytest.warns(Warning) as caught:
        preds = predict_ef(videos, model=batch["model"], errors="nan", clips=1, workers=2, return_details=True)
    assert any("loader workers stopped" in str(w.message) for w in caught)
    assert preds[0].ok and preds[1].ok and not preds[2].ok and "truncated.avi" in preds[2].error
    assert "decoded again in this process" in " ".join(preds[1].warnings)
    monkeypatch.undo()
    ref = predict_ef(videos[:2], model=batch["model"], clips=1, workers=0)
    assert [p.ef for p in preds[:2]] == pytest.approx(list(ref), abs=1e-4)
