"""CAMUS reader (NIfTI and MetaImage layouts), MetaImage round trip, official folds, recipes on phantoms."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import tiny_config
from coreecho.data.camus import CAMUS, load_sequence, read_cfg, write_camus_layout
from coreecho.data.folds import camus_folds, check_folds
from coreecho.data.mhd import read_mhd, read_mhd_header, write_mhd
from coreecho.errors import DatasetError, InputError, MissingDependencyError


@pytest.fixture(scope="module")
def small_model():
    from coreecho import CoReEcho
    from coreecho.models.config import PreprocessConfig

    torch.manual_seed(0)
    return CoReEcho(tiny_config(preprocessing=PreprocessConfig(frames=8))).eval()


@pytest.fixture(scope="module")
def camus_mhd(tmp_path_factory):
    root = tmp_path_factory.mktemp("camus_mhd")
    rows = write_camus_layout(root, 6, seed=3, fmt="mhd", reverse_fraction=0.5)
    return root, rows


@pytest.fixture(scope="module")
def camus_nifti(tmp_path_factory):
    pytest.importorskip("nibabel")
    root = tmp_path_factory.mktemp("camus_nifti")
    rows = write_camus_layout(root, 6, seed=3, fmt="nifti", reverse_fraction=0.5)
    return root, rows


def _copy(src, tmp_path):
    dst = tmp_path / "camus"
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------------------------------------- MetaImage


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32, np.float64, np.int32])
@pytest.mark.parametrize("suffix,compress", [(".mhd", False), (".mhd", True), (".mha", False), (".mha", True)])
def test_mhd_round_trip(tmp_path, dtype, suffix, compress):
    rng = np.random.default_rng(0)
    a = (rng.random((3, 5, 7)) * 200).astype(dtype)
    path = write_mhd(tmp_path / f"img{suffix}", a, spacing=(0.2, 0.3, 1.0), offset=(1, 2, 3), compress=compress)
    img = read_mhd(path)
    assert img.array.dtype == a.dtype and img.array.shape == a.shape
    np.testing.assert_array_equal(img.array, a)
    assert img.spacing == (0.2, 0.3, 1.0) and img.offset == (1.0, 2.0, 3.0)
    assert img.header["DimSize"] == "7 5 3"


def test_mhd_channels_and_big_endian(tmp_path):
    a = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    img = read_mhd(write_mhd(tmp_path / "rgb.mhd", a, channels=True))
    np.testing.assert_array_equal(img.array, a)
    b = np.arange(6, dtype=np.int16).reshape(2, 3) * 300
    (tmp_path / "be.raw").write_bytes(b.astype(">i2").tobytes())
    (tmp_path / "be.mhd").write_text("ObjectType = Image\nNDims = 2\nDimSize = 3 2\nElementType = MET_SHORT\n"
                                     "BinaryDataByteOrderMSB = True\nElementDataFile = be.raw\n")
    np.testing.assert_array_equal(read_mhd(tmp_path / "be.mhd").array, b)


def test_mhd_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_mhd(tmp_path / "none.mhd")
    (tmp_path / "x.mhd").write_text("NDims = 2\nDimSize = 4 4\nElementType = MET_UCHAR\nElementDataFile = x.raw\n")
    with pytest.raises(DatasetError, match="x.raw not found"):
        read_mhd(tmp_path / "x.mhd")
    (tmp_path / "x.raw").write_bytes(b"\0" * 10)
    with pytest.raises(DatasetError, match="truncated"):
        read_mhd(tmp_path / "x.mhd")
    (tmp_path / "y.mhd").write_text("NDims = 2\nDimSize = 4 4\nElementType = MET_UCHAR\n")
    with pytest.raises(DatasetError, match="ElementDataFile"):
        read_mhd_header(tmp_path / "y.mhd")
    (tmp_path / "z.mhd").write_text("NDims = 2\nDimSize = 4 4\nElementType = MET_WEIRD\nElementDataFile = x.raw\n")
    with pytest.raises(DatasetError, match="unsupported ElementType"):
        read_mhd(tmp_path / "z.mhd")
    (tmp_path / "w.mhd").write_text("hello world\n")
    with pytest.raises(DatasetError, match="not a MetaImage header"):
        read_mhd(tmp_path / "w.mhd")


# ---------------------------------------------------------------------------------------------- reader


def test_reader_reads_mhd_layout(camus_mhd):
    root, rows = camus_mhd
    ds = CAMUS(root, quality=None, frames=8)
    assert ds.all_patients == [f"patient{i:04d}" for i in range(1, 7)]
    assert len(ds) == 6 and ds.task == "regression"
    np.testing.assert_allclose(ds.labels, [r["ef"] for r in rows], atol=0.006)
    assert ds.strata["quality"] == [r["quality"] for r in rows]
    item = ds[0]
    assert item["video"].shape == (3, 8, 112, 112) and item["video"].dtype == torch.float32
    assert item["patient"] == "patient0001" and item["quality"] == rows[0]["quality"]
    assert float(item["label"]) == pytest.approx(rows[0]["ef"], abs=0.006)
    info = read_cfg(root / "training" / "patient0001" / "Info_4CH.cfg")
    assert set(info) >= {"ED", "ES", "NbFrame", "ImageQuality", "LVedv", "LVesv", "LVef"}


def test_nifti_and_mhd_layouts_agree(camus_mhd, camus_nifti):
    a = CAMUS(camus_mhd[0], quality=None, frames=8)
    b = CAMUS(camus_nifti[0], quality=None, frames=8)
    np.testing.assert_array_equal(a.labels, b.labels)
    for i in range(len(a)):
        np.testing.assert_array_equal(a.clip(i), b.clip(i))
    seq_a = load_sequence(camus_mhd[1][0]["path"])
    seq_b = load_sequence(camus_nifti[1][0]["path"])
    np.testing.assert_array_equal(seq_a, seq_b)
    assert seq_a.shape[1:] == (112, 140)  # rows x columns: the fan's apex at the top


def test_sequences_run_ed_to_es(camus_mhd):
    root, rows = camus_mhd
    rev = [i for i, r in enumerate(rows) if r["reversed"]]
    fwd = [i for i, r in enumerate(rows) if not r["reversed"]]
    assert rev and fwd
    ds = CAMUS(root, quality=None, frames=8)
    stored = CAMUS(root, quality=None, frames=8, order="file")
    for i in rev:
        raw = load_sequence(rows[i]["path"])
        np.testing.assert_array_equal(ds.raw_frames(i), raw[::-1])
        np.testing.assert_array_equal(stored.raw_frames(i), raw)
    for i in fwd:
        np.testing.assert_array_equal(ds.raw_frames(i), load_sequence(rows[i]["path"]))


def test_transposed_nifti_is_detected(camus_nifti, tmp_path):
    nib = pytest.importorskip("nibabel")
    path = camus_nifti[1][0]["path"]
    seq = load_sequence(path)
    data = np.asanyarray(nib.load(path).dataobj)
    swapped = tmp_path / "swapped.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data.transpose(1, 0, 2)), np.eye(4)), str(swapped))
    np.testing.assert_array_equal(load_sequence(swapped), seq)
    assert load_sequence(swapped, transpose=False).shape == (seq.shape[0], seq.shape[2], seq.shape[1])


def test_quality_and_patient_filters_and_folds(camus_mhd):
    root, rows = camus_mhd
    good = CAMUS(root, quality="good", frames=8)
    assert {r.quality for r in good.records} == {"good"}
    assert len(good) == sum(r["quality"] == "good" for r in rows)
    some = CAMUS(root, patients=[2, "patient0005"], quality=None, frames=8)
    assert some.groups == ["patient0002", "patient0005"]
    folds = some.default_folds(3)  # blocks of the 6 patients found: (1, 2), (3, 4), (5, 6)
    assert [t.tolist() for _, t in folds] == [[0], [], [1]]
    with pytest.raises(InputError, match="unknown image quality"):
        CAMUS(root, quality="excellent")
    with pytest.raises(DatasetError, match="patient0099"):
        CAMUS(root, patients=[99])


def test_reader_errors(camus_mhd, tmp_path):
    with pytest.raises(DatasetError, match="folder not found"):
        CAMUS(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no patient folder"):
        CAMUS(tmp_path / "empty")
    root = _copy(camus_mhd[0], tmp_path)
    (root / "training" / "patient0002" / "Info_4CH.cfg").unlink()
    with pytest.raises(DatasetError, match="Info_4CH.cfg: file not found"):
        CAMUS(root, quality=None)
    root = _copy(camus_mhd[0], tmp_path / "b")
    for f in (root / "training" / "patient0003").glob("*_sequence.*"):
        f.unlink()
    with pytest.raises(DatasetError, match="no 4CH sequence"):
        CAMUS(root, quality=None)
    root = _copy(camus_mhd[0], tmp_path / "c")
    cfg = root / "training" / "patient0001" / "Info_4CH.cfg"
    cfg.write_text(cfg.read_text().replace("LVef: ", "LVef: x"))
    with pytest.raises(DatasetError, match="LVef"):
        CAMUS(root, quality=None)
    with pytest.raises(DatasetError, match="no 2CH sequence"):
        CAMUS(camus_mhd[0], view="2CH")


def test_ef_from_volumes_and_missing_ef_skipped(camus_mhd, tmp_path):
    root = _copy(camus_mhd[0], tmp_path)
    cfg = root / "training" / "patient0001" / "Info_4CH.cfg"
    lines = [ln for ln in cfg.read_text().splitlines() if not ln.startswith("LVef")]
    cfg.write_text("\n".join(lines) + "\n")
    info = read_cfg(cfg)
    ds = CAMUS(root, quality=None, frames=8)
    edv, esv = float(info["LVedv"]), float(info["LVesv"])
    assert ds.labels[0] == pytest.approx(100 * (edv - esv) / edv)
    cfg.write_text("\n".join(ln for ln in lines if not ln.startswith(("LVedv", "LVesv"))) + "\n")
    with pytest.warns(UserWarning, match="no EF"):
        ds = CAMUS(root, quality=None, frames=8)
    assert ds.skipped == ["patient0001"] and len(ds) == 5
    assert "patient0001" in ds.all_patients


def test_nifti_needs_nibabel(camus_nifti, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "nibabel", None)
    ds = CAMUS(camus_nifti[0], quality=None, frames=8, cache=False)
    with pytest.raises(MissingDependencyError, match=r"coreecho\[camus\]"):
        ds[0]


def test_whole_sequence_resampling_blends_neighbours():
    from coreecho.models.config import PreprocessConfig
    from coreecho.video.pipeline import ClipPipeline
    from coreecho.video.sampling import WholeSequence

    f = np.repeat((np.arange(5, dtype=np.uint8) * 10)[:, None, None], 16, axis=1).repeat(16, axis=2)
    pre = PreprocessConfig(frames=9, size=16, sampling="sequence", crop_sector=False)
    assert ClipPipeline(pre)(f).pixels[0, :, 0, 0, 0].tolist() == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    near = ClipPipeline(pre.replace(frames=3, temporal="nearest"))(f)
    assert near.pixels[0, :, 0, 0, 0].tolist() == [0, 20, 40] and near.frame_indices.tolist() == [[0, 2, 4]]
    with pytest.raises(InputError):
        WholeSequence("cubic")
    with pytest.raises(InputError, match="starts do not apply"):
        ClipPipeline(pre)(f, [0, 2])


# ---------------------------------------------------------------------------------------------- folds


def test_camus_folds_official_blocks():
    patients = [f"patient{i:04d}" for i in range(1, 501)]
    shuffled = list(np.random.default_rng(0).permutation(patients))
    folds = camus_folds(shuffled, k=10)
    check_folds(folds, 500, shuffled)
    for f, (_, test) in enumerate(folds):
        got = sorted(shuffled[i] for i in test)
        assert got == [f"patient{i:04d}" for i in range(50 * f + 1, 50 * f + 51)]
    subset = [p for i, p in enumerate(patients) if i % 3]  # e.g. poor quality removed
    sub = camus_folds(subset, k=10, universe=patients)
    check_folds(sub, len(subset), subset)
    assert all(subset[i] <= f"patient{50 * (f + 1):04d}" for f, (_, t) in enumerate(sub) for i in t)
    with pytest.raises(InputError):
        camus_folds(patients[:3], k=4)
    with pytest.raises(InputError, match="universe"):
        camus_folds(["patient0001", "x"], k=2, universe=patients)


# ---------------------------------------------------------------------------------------------- recipes


@pytest.mark.parametrize("mode", ["linear", "mlp", "full"])
def test_recipes_on_camus_phantom(camus_mhd, small_model, mode):
    from coreecho.train.transfer import cross_validate

    ds = CAMUS(camus_mhd[0], quality=None, frames=8)
    before = {k: v.clone() for k, v in small_model.state_dict().items()}
    result = cross_validate(small_model, ds, mode=mode, folds=2, dataset_name="camus",
                            epochs=1 if mode == "full" else 5, batch_size=4)
    assert len(result.folds) == 2 and result.task == "regression"
    for key in ("pearson", "mae", "rmse", "r2"):
        assert key in result.summary and set(result.summary[key]) == {"mean", "sd", "folds"}
    assert any(k.endswith("[quality=good]") for k in result.summary)
    assert np.isfinite(result.summary["mae"]["mean"])
    assert len(result.predictions) == 6 and {p["fold"] for p in result.predictions} == {0, 1}
    json.dumps(result.to_dict())
    text = result.table()
    assert "camus" in text and "pearson" in text
    if mode in ("mlp", "full"):
        assert result.paper is not None and {"mlp": "0.730", "full": "0.807"}[mode] in text
    after = small_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
