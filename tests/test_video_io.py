"""Tests of coreecho.video.io: video files (PyAV, decord), DICOM, .npy, arrays, and every bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from coreecho.data.phantom import make_phantom
from coreecho.errors import CoReEchoError, InputError, MissingDependencyError, VideoReadError
from coreecho.video import as_frames, load_video, probe_video, read_video, write_video

try:
    import decord  # noqa: F401

    HAVE_DECORD = True
except ImportError:  # pragma: no cover
    HAVE_DECORD = False

needs_decord = pytest.mark.skipif(not HAVE_DECORD, reason="decord not installed")


# ----------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def phantom():
    frames, meta = make_phantom(ef=55.0, seed=7, n_frames=60, fps=50, heart_rate=75)
    return frames, meta


@pytest.fixture(scope="module")
def files(tmp_path_factory, phantom):
    import av

    root = tmp_path_factory.mktemp("videos")
    frames, meta = phantom
    avi = write_video(root / "a4c.avi", frames, fps=meta.fps)
    out = {"avi": avi, "root": root}
    out["one"] = write_video(root / "one.avi", frames[:1], fps=50)
    # 0-frame AVI: header written, no packets
    zero = root / "zero.avi"
    c = av.open(str(zero), "w")
    s = c.add_stream("mjpeg", rate=50)
    s.width = s.height = 16
    s.pix_fmt = "yuvj420p"
    c.start_encoding()
    c.close()
    out["zero"] = zero
    data = avi.read_bytes()
    trunc = root / "truncated.avi"
    trunc.write_bytes(data[: len(data) // 2])
    out["truncated"] = trunc
    text = root / "notes.avi"
    text.write_text("this is a text file, not a video\n" * 20)
    out["text"] = text
    empty = root / "empty.avi"
    empty.write_bytes(b"")
    out["empty"] = empty
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (24, 32, 48), dtype=np.uint8)
    out["noise"] = noise
    out["mpeg4"] = write_video(root / "inter.avi", noise, fps=25, codec="mpeg4")
    if "libx264" in av.codecs_available:
        out["mp4"] = write_video(root / "inter.mp4", noise, fps=25, codec="libx264")
    return out


# ----------------------------------------------------------------------------------------------------------
# video containers


def test_read_avi_round_trip(files, phantom):
    frames, meta = phantom
    v = read_video(files["avi"])
    assert v.frames.shape == (60, 112, 112, 3) and v.frames.dtype == np.uint8
    assert v.fps == pytest.approx(meta.fps) and v.n_frames == 60 and v.source == str(files["avi"])
    assert v.frame_indices.tolist() == list(range(60)) and not v.is_partial
    assert v.backend == "pyav" and v.metadata["codec"] == "mjpeg"
    err = np.abs(v.frames.astype(int) - frames.astype(int))
    assert err.mean() < 4.0  # MJPEG is lossy, but close
    assert np.abs(v.frames[..., 0].astype(int) - v.frames[..., 2]).max() <= 2  # grey stays grey


def test_indices_decode_only_those(files):
    full = read_video(files["avi"]).frames
    v = read_video(files["avi"], indices=[5, 0, 5, 59])
    assert v.frames.shape == (4, 112, 112, 3) and v.n_frames == 60 and v.is_partial
    assert v.frame_indices.tolist() == [5, 0, 5, 59]
    assert np.array_equal(v.frames, full[[5, 0, 5, 59]])
    assert read_video(files["avi"], indices=[]).frames.shape == (0, 112, 112, 3)


def test_intra_only_path_decodes_only_needed_packets(files, monkeypatch):
    decoded = []
    from coreecho.video import containers

    real = containers._store  # called once per decoded, kept frame
    monkeypatch.setattr(containers, "_store", lambda out, k, frame, f, src, i: (decoded.append(i),
                                                                                real(out, k, frame, f, src, i)))
    read_video(files["avi"], indices=[40, 3, 40])
    assert decoded == [3, 40]


@pytest.mark.parametrize("key", ["mpeg4", "mp4"])
def test_inter_frame_codecs(files, key):
    if key not in files:
        pytest.skip("libx264 encoder not available")
    full = read_video(files[key])
    assert full.frames.shape == (24, 32, 48, 3) and full.fps == pytest.approx(25.0)
    part = read_video(files[key], indices=[23, 2, 11])
    assert np.array_equal(part.frames, full.frames[[23, 2, 11]])
    info = probe_video(files[key])
    assert (info.n_frames, info.height, info.width) == (24, 32, 48)


def test_probe_without_decoding(files, monkeypatch):
    from coreecho.video import containers

    monkeypatch.setattr(containers.PyAVReader, "_read_sorted", lambda *a, **k: pytest.fail("probe decoded frames"))
    info = probe_video(files["avi"])
    assert (info.n_frames, info.fps, info.height, info.width, info.kind, info.codec) == (60, 50.0, 112, 112, "video", "mjpeg")
    assert info.backend == "pyav"


@needs_decord
def test_decord_and_pyav_agree(files):
    a = read_video(files["avi"], backend="pyav")
    b = read_video(files["avi"], backend="decord")
    assert b.backend == "decord" and a.n_frames == b.n_frames == 60 and a.fps == b.fps
    assert np.abs(a.frames.astype(int) - b.frames).max() <= 2
    part = read_video(files["avi"], indices=[59, 1, 30], backend="decord")
    assert np.abs(part.frames.astype(int) - a.frames[[59, 1, 30]]).max() <= 2
    info = probe_video(files["avi"], backend="decord")
    assert (info.n_frames, info.height, info.width) == (60, 112, 112)


@needs_decord
def test_auto_falls_back_to_decord_only_when_pyav_cannot_open(files, monkeypatch):
    from coreecho.video import containers

    def cannot_open(path):
        raise containers._CannotOpen(str(path), "simulated: FFmpeg cannot open it")

    monkeypatch.setattr(containers, "_av_open", cannot_open)
    v = read_video(files["avi"])
    assert v.backend == "decord" and v.frames.shape[0] == 60
    assert probe_video(files["avi"]).backend == "decord"
    with pytest.raises(VideoReadError, match="simulated"):
        read_video(files["avi"], backend="pyav")


@needs_decord
def test_decode_errors_are_not_retried_with_decord(files, monkeypatch):
    from coreecho.video import containers

    def decode_error(self, wanted):
        raise VideoReadError(self.source, "simulated decode error")

    monkeypatch.setattr(containers.PyAVReader, "_read_sorted", decode_error)
    monkeypatch.setattr(containers, "DecordReader", lambda *a, **k: pytest.fail("retried with decord"))
    with pytest.raises(VideoReadError, match="simulated decode error"):
        read_video(files["avi"])
    monkeypatch.undo()
    with pytest.raises(VideoReadError, match="truncated"):
        probe_video(files["truncated"])


@needs_decord
def test_auto_uses_decord_when_pyav_missing(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    v = read_video(files["avi"], indices=[0, 10])
    assert v.backend == "decord" and v.n_frames == 60
    with pytest.raises(MissingDependencyError, match="av"):
        read_video(files["avi"], backend="pyav")


def test_decord_missing_is_a_clear_error(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)
    with pytest.raises(MissingDependencyError, match="decord") as e:
        read_video(files["avi"], backend="decord")
    assert "backend='pyav'" in str(e.value)
    assert read_video(files["avi"], indices=[0]).backend == "pyav"  # auto does not need it


def test_gif(tmp_path):
    from PIL import Image

    imgs = [Image.fromarray(np.full((20, 24), 40 * i, np.uint8)) for i in range(4)]
    imgs[0].save(tmp_path / "loop.gif", save_all=True, append_images=imgs[1:], duration=40, loop=0)
    v = read_video(tmp_path / "loop.gif")
    assert v.frames.shape == (4, 20, 24, 3) and v.frames[:, 5, 5, 0].tolist() == [0, 40, 80, 120]


def test_one_frame_video_reads(files):
    v = read_video(files["one"])
    assert v.n_frames == 1 and v.frames.shape == (1, 112, 112, 3)


# ----------------------------------------------------------------------------------------------------------
# bad files


@pytest.mark.parametrize(
    "key, match",
    [
        ("zero", "no frames"),
        ("truncated", "truncated"),
        ("text", "not a (readable )?video"),
        ("empty", "empty file"),
    ],
)
@pytest.mark.parametrize("backend", ["auto", "pyav", "decord"])
def test_bad_files(files, key, match, backend):
    if backend == "decord" and not HAVE_DECORD:
        pytest.skip("decord not installed")
    if backend == "decord" and key in ("zero", "truncated"):
        # decord cannot see a truncation (it counts what is there); it still must not crash
        try:
            read_video(files[key], backend="decord")
        except VideoReadError as err:
            assert str(files[key]) in str(err)
        return
    with pytest.raises(VideoReadError, match=match) as e:
        read_video(files[key], backend=backend)
    assert str(files[key]) in str(e.value)
    if key != "empty":
        with pytest.raises(VideoReadError, match=match):
            probe_video(files[key], backend=backend if backend != "decord" else "auto")


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(VideoReadError, match="no such file") as e:
        read_video(tmp_path / "nope.avi")
    assert "nope.avi" in str(e.value)
    with pytest.raises(VideoReadError, match="is a directory"):
        read_video(tmp_path)
    with pytest.raises(VideoReadError, match="no such file"):
        probe_video(tmp_path / "nope.dcm")
    with pytest.raises(InputError, match="expected a path"):
        read_video(123)  # type: ignore[arg-type]


def test_bad_arguments(files):
    with pytest.raises(InputError, match="out of range"):
        read_video(files["avi"], indices=[0, 60])
    with pytest.raises(InputError, match="out of range"):
        read_video(files["avi"], indices=[-1])
    with pytest.raises(InputError, match="integers"):
        read_video(files["avi"], indices=[0.5])
    with pytest.raises(InputError, match="unknown backend"):
        read_video(files["avi"], backend="opencv")


def test_size_limits_on_files(files):
    with pytest.raises(InputError, match="max_side=112") as e:
        read_video(files["avi"], max_side=100)
    assert "4096" not in str(e.value) and str(files["avi"]) in str(e.value)
    with pytest.raises(InputError, match="max_bytes="):
        read_video(files["avi"], max_bytes=1_000_000)
    assert read_video(files["avi"], indices=[0], max_bytes=1_000_000).frames.shape[0] == 1


# ----------------------------------------------------------------------------------------------------------
# arrays


def test_as_frames_shapes_and_dtypes():
    import torch

    g = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = as_frames(g)
    assert out.shape == (2, 3, 4, 3) and np.array_equal(out[..., 1], g)
    assert as_frames(g[..., None]).shape == (2, 3, 4, 3)
    rgba = np.zeros((2, 3, 4, 4), np.uint8)
    rgba[..., 3] = 255
    assert as_frames(rgba).max() == 0
    rgb = np.zeros((2, 8, 8, 3), np.uint8)
    assert as_frames(rgb) is rgb
    f = np.array([[[[-0.4, 254.6, 300.0]]]], dtype=np.float64)
    assert as_frames(f).tolist() == [[[[0, 255, 255]]]]
    assert as_frames(np.full((1, 2, 2), 7, np.int64)).dtype == np.uint8
    t = torch.full((2, 4, 4), 9.6)
    assert as_frames(t).max() == 10
    assert as_frames(torch.zeros(2, 4, 4, 3, dtype=torch.uint8)).shape == (2, 4, 4, 3)
    assert as_frames(torch.full((1, 2, 2), 3.0, dtype=torch.bfloat16)).max() == 3


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((4, 4), np.uint8), "2-D"),
        (np.zeros((1, 2, 4, 4, 3), np.uint8), "5-D"),
        (np.zeros((2, 4, 4, 2), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((2, 3, 16, 16), np.uint8), "channel-first"),
        (np.zeros((0, 4, 4), np.uint8), "no pixels"),
        (np.zeros((64, 64, 3), np.uint8), "one \\(H, W, C\\) image"),
        (np.full((2, 4, 4), np.nan), "NaN"),
        (np.full((2, 4, 4), np.inf), "infinite"),
        (np.full((2, 4, 4), 0.5), "0..1"),
        (np.full((2, 4, 4), -2.0), "normalised"),
        (np.full((2, 4, 4), 1000, np.uint16), "0..255"),
        (np.zeros((2, 4, 4), bool), "dtype"),
        (np.zeros((2, 4, 4), complex), "dtype"),
    ],
)
def test_as_frames_rejects(array, match):
    with pytest.raises(InputError, match=match) as e:
        as_frames(array, source="item 3")
    assert str(e.value).startswith("item 3:")


def test_as_frames_size_limits():
    with pytest.raises(InputError, match="max_side=5000"):
        as_frames(np.zeros((1, 5000, 2), np.uint8))
    with pytest.raises(InputError, match="max_bytes="):
        as_frames(np.zeros((10, 64, 64), np.uint8), max_bytes=10_000)


def test_load_video_dispatch(files):
    arr = np.zeros((5, 8, 8), np.uint8)
    v = load_video(arr, indices=[4, 0], fps=30.0, source="item 0")
    assert v.frames.shape == (2, 8, 8, 3) and v.n_frames == 5 and v.fps == 30.0 and v.source == "item 0"
    assert load_video(v) is v
    assert load_video(v, indices=[0]).frame_indices.tolist() == [0]
    with pytest.raises(InputError, match="not decoded"):
        load_video(v, indices=[1])
    assert load_video(files["avi"], indices=[1]).n_frames == 60


# ----------------------------------------------------------------------------------------------------------
# .npy


def test_npy(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (6, 10, 12), dtype=np.uint8)
    np.save(tmp_path / "v.npy", a)
    v = read_video(tmp_path / "v.npy")
    assert v.frames.shape == (6, 10, 12, 3) and np.array_equal(v.frames[..., 0], a) and v.fps is None
    part = read_video(tmp_path / "v.npy", indices=[5, 1])
    assert np.array_equal(part.frames[..., 0], a[[5, 1]]) and part.n_frames == 6
    info = probe_video(tmp_path / "v.npy")
    assert (info.n_frames, info.height, info.width, info.kind) == (6, 10, 12, "npy")


def test_npy_bad(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(VideoReadError):
        read_video(tmp_path / "obj.npy")
    np.save(tmp_path / "flat.npy", np.zeros(10))
    with pytest.raises(InputError, match="shape"):
        read_video(tmp_path / "flat.npy")
    np.save(tmp_path / "nan.npy", np.full((2, 4, 4), np.nan))
    with pytest.raises(InputError, match="NaN") as e:
        read_video(tmp_path / "nan.npy")
    assert "nan.npy" in str(e.value)
    np.save(tmp_path / "big.npy", np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(InputError, match="max_side"):
        read_video(tmp_path / "big.npy", max_side=4)
    data = (tmp_path / "big.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) - 100])
    with pytest.raises(VideoReadError, match="cut.npy"):
        read_video(tmp_path / "cut.npy")
    (tmp_path / "junk.npy").write_text("not numpy")
    with pytest.raises(VideoReadError, match="not a valid .npy"):
        read_video(tmp_path / "junk.npy")


# ----------------------------------------------------------------------------------------------------------
# DICOM

try:
    import pydicom
except ImportError:  # pragma: no cover - the dicom extra is optional
    pydicom = None

needs_pydicom = pytest.mark.skipif(pydicom is None, reason="pydicom (the dicom extra) not installed")


def _testfile(name: str) -> str:
    """A pydicom test file, without network: pydicom's own folder or the pydicom-data package."""
    from pydicom.data import get_testdata_file

    try:
        path = get_testdata_file(name, download=False)
    except Exception:  # noqa: BLE001
        path = None
    if not path:
        pytest.skip(f"pydicom test file {name} not available offline (pip install pydicom-data)")
    return str(path)


def _write_dicom(path: Path, arr: np.ndarray, photometric: str, extra: dict | None = None,
                 pixels: bytes | None = None) -> Path:
    from coreecho.data.phantom import write_dicom

    return write_dicom(path, arr, photometric=photometric, pixels=pixels, **(extra or {}))


@needs_pydicom
def test_dicom_ybr_jpeg_cine():
    path = _testfile("examples_ybr_color.dcm")  # US, YBR_FULL_422, JPEG baseline, 30 frames, FrameTime 33.333
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    v = read_video(path)
    assert v.frames.shape == (30, 240, 320, 3) and v.frames.dtype == np.uint8 and v.backend == "pydicom"
    assert v.fps == pytest.approx(1000.0 / float(ds.FrameTime))
    # the content is grey: after YBR -> RGB the channels are near-equal (raw YCbCr would differ by ~128)
    f = v.frames.astype(int)
    assert np.abs(f[..., 0] - f[..., 1]).mean() < 2 and np.abs(f[..., 2] - f[..., 1]).mean() < 2
    assert f.mean() > 10
    part = read_video(path, indices=[29, 0, 7])
    assert np.array_equal(part.frames, v.frames[[29, 0, 7]])
    info = probe_video(path)
    assert (info.n_frames, info.height, info.width, info.kind) == (30, 240, 320, "dicom")


@needs_pydicom
def test_dicom_multiframe_us_cine_partial_decode():
    path = _testfile("color3d_jpeg_baseline.dcm")  # US, 120 frames 480x640, YBR_FULL_422 JPEG baseline
    info = probe_video(path)
    assert info.n_frames == 120 and info.fps == pytest.approx(1000 / 33.333)
    v = read_video(path, indices=[0, 60, 119])
    assert v.frames.shape == (3, 480, 640, 3) and v.n_frames == 120
    ds = pydicom.dcmread(path)
    ref = ds.pixel_array[[0, 60, 119]]  # pydicom's own conversion
    assert np.abs(v.frames.astype(int) - ref).max() <= 1


@needs_pydicom
def test_dicom_ultrasound_rgb_and_jpeg2000():
    unc = read_video(_testfile("US1_UNCR.dcm"))
    assert unc.frames.shape == (1, 480, 640, 3) and unc.fps is None
    try:
        j2k = read_video(_testfile("US1_J2KR.dcm"))  # lossless JPEG 2000 (YBR_RCT) of the same image
    except MissingDependencyError:
        pytest.skip("no JPEG 2000 decoder installed")
    assert np.array_equal(j2k.frames, unc.frames)


@needs_pydicom
def test_dicom_palette_16bit_lut():
    path = _testfile("examples_palette.dcm")  # US, PALETTE COLOR, 16-bit LUT entries
    from pydicom.pixels import apply_color_lut

    v = read_video(path)
    ds = pydicom.dcmread(path)
    ref = np.rint(apply_color_lut(ds.pixel_array, ds) / 257.0)
    assert v.frames.shape == (1, 350, 800, 3) and v.metadata["palette_bits"] == 16
    assert np.abs(v.frames[0].astype(int) - ref).max() <= 1 and v.frames.max() > 200


@needs_pydicom
def test_dicom_palette_aloka():
    v = read_video(_testfile("gdcm-US-ALOKA-16.dcm"))
    assert v.frames.shape == (1, 480, 640, 3) and 200 < v.frames.max() <= 255


@needs_pydicom
def test_dicom_monochrome_16bit():
    v = read_video(_testfile("emri_small.dcm"))  # MR, 10 frames, 16-bit
    assert v.frames.shape == (10, 64, 64, 3) and v.frames.min() == 0 and v.frames.max() == 255
    assert "min-max" in v.metadata["grey_mapping"]


@needs_pydicom
def test_dicom_synthetic_monochrome_ybr_fps(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (3, 8, 10), dtype=np.uint8)
    v1 = read_video(_write_dicom(tmp_path / "m1.dcm", a, "MONOCHROME1", {"CineRate": 25}))
    assert np.array_equal(v1.frames[..., 0], 255 - a) and v1.fps == 25.0
    # any extension: recognised by the DICM magic; FrameTime wins over CineRate
    v2 = read_video(_write_dicom(tmp_path / "m2.bin", a, "MONOCHROME2", {"FrameTime": "20", "CineRate": 25}))
    assert np.array_equal(v2.frames[..., 2], a) and v2.fps == 50.0 and v2.backend == "pydicom"
    ybr = np.stack([a, np.full_like(a, 128), np.full_like(a, 128)], axis=-1)
    v3 = read_video(_write_dicom(tmp_path / "ybr.dcm", ybr, "YBR_FULL", {"RecommendedDisplayFrameRate": 30}))
    assert np.abs(v3.frames.astype(int) - a[..., None]).max() <= 1 and v3.fps == 30.0
    rgb = np.random.default_rng(1).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    v4 = read_video(_write_dicom(tmp_path / "rgb.dcm", rgb, "RGB"))
    assert np.array_equal(v4.frames, rgb) and v4.fps is None
    v5 = read_video(tmp_path / "m1.dcm", indices=[2, 0])
    assert np.array_equal(v5.frames[..., 0], 255 - a[[2, 0]])
    w = np.full((2, 4, 4), 1000, np.uint16)
    w[0, 0, 0] = 0
    v6 = read_video(_write_dicom(tmp_path / "win.dcm", w, "MONOCHROME2", {"WindowCenter": 500, "WindowWidth": 1000}))
    assert v6.frames[0, 0, 0, 0] == 0 and v6.frames[1, 0, 0, 0] == 255


@needs_pydicom
def test_dicom_bad(tmp_path):
    with pytest.raises(VideoReadError, match="no pixel data") as e:
        read_video(_testfile("rtplan.dcm"))
    assert "rtplan.dcm" in str(e.value)
    a = np.zeros((3, 8, 10), np.uint8)
    with pytest.raises(VideoReadError, match="truncated"):
        read_video(_write_dicom(tmp_path / "cut.dcm", a, "MONOCHROME2", pixels=a.tobytes()[:100]))
    with pytest.raises(VideoReadError, match="truncated"):
        read_video(_testfile("MR_truncated.dcm"))
    with pytest.raises(VideoReadError, match="no frames"):
        read_video(_write_dicom(tmp_path / "zero.dcm", a, "MONOCHROME2", {"NumberOfFrames": 0}))
    (tmp_path / "fake.dcm").write_text("hello, not DICOM")
    with pytest.raises(VideoReadError, match="fake.dcm"):
        read_video(tmp_path / "fake.dcm")
    with pytest.raises(InputError, match="max_side=5000") as e:
        read_video(_write_dicom(tmp_path / "huge.dcm", a, "MONOCHROME2", {"Rows": 5000, "Columns": 5000},
                                pixels=b"\0" * 10))
    assert "huge.dcm" in str(e.value)
    big = _write_dicom(tmp_path / "big.dcm", a, "MONOCHROME2", {"Rows": 4000, "Columns": 4000, "NumberOfFrames": 100},
                       pixels=b"\0" * 10)
    for call in (read_video, probe_video):  # a header that lies about the pixel data is refused before decoding
        with pytest.raises(VideoReadError, match="NumberOfFrames = 100.*holds 10 bytes") as e:
            call(big)
        assert "big.dcm" in str(e.value)
    ok = _write_dicom(tmp_path / "ok.dcm", a, "MONOCHROME2")
    with pytest.raises(InputError, match="max_bytes=") as e:
        read_video(ok, max_bytes=300)
    assert "ok.dcm" in str(e.value)
    assert read_video(ok, indices=[1], max_bytes=300).frames.shape == (1, 8, 10, 3)


@needs_pydicom
def test_dicom_missing_decoder_names_package():
    path = _testfile("emri_small_jpeg_ls_lossless.dcm")
    from pydicom.pixels import get_decoder

    if get_decoder(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID).is_available:
        pytest.skip("a JPEG-LS decoder is installed")
    with pytest.raises(MissingDependencyError, match="pyjpegls") as e:  # the dicom extra's JPEG-LS decoder
        read_video(path)
    assert "JPEG-LS" in str(e.value) and "pip install" in str(e.value)


@needs_pydicom
def test_dicom_without_pydicom(tmp_path, monkeypatch):
    a = np.zeros((2, 4, 4), np.uint8)
    p = _write_dicom(tmp_path / "x.dcm", a, "MONOCHROME2")
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(MissingDependencyError, match=r"coreecho\[dicom\]"):
        read_video(p)


def test_errors_are_coreecho_errors(files):
    for key in ("zero", "text", "empty"):
        with pytest.raises(CoReEchoError):
            read_video(files[key])


def test_import_is_light():
    import subprocess

    code = ("import sys, coreecho.video; "
            "print(sorted(m for m in ('av', 'decord', 'pydicom', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "[]"


def test_write_gif_with_odd_sizes_reads_back(tmp_path):
    frames = (np.random.default_rng(0).random((5, 17, 23, 3)) * 255).astype(np.uint8)
    video = read_video(write_video(tmp_path / "a.gif", frames, fps=10, codec="gif"))
    assert video.frames.shape == (5, 17, 23, 3) and video.fps == pytest.approx(10.0)
