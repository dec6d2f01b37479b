"""Lying and hostile inputs: each must end in the expected typed error, fast and in little memory.

Every case runs ``open_video(...).read(...)`` and ``probe_video(...)`` in a fresh subprocess that reports its
peak RSS, so a reader that allocates from a header (gigabytes) or raises an untyped ``MemoryError`` fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from coreecho.errors import VideoReadError

try:
    import decord  # noqa: F401

    HAVE_DECORD = True
except ImportError:  # pragma: no cover
    HAVE_DECORD = False

ROOT = Path(__file__).resolve().parents[1]
MAX_RSS_MB = 1024

# run inside the subprocess: open + read every frame, then probe; print what happened and the peak RSS
_SCRIPT = r"""
import json, resource, sys, time
from coreecho.video import Limits, open_video, probe_video

path, backend, limits = sys.argv[1], sys.argv[2], Limits(**json.loads(sys.argv[3]))
out = {}
for step in ("read", "probe"):
    t0 = time.perf_counter()
    try:
        if step == "read":
            with open_video(path, backend=backend, limits=limits) as r:
                r.read(range(r.info.n_frames))
        else:
            probe_video(path, backend=backend, limits=limits)
        out[step] = {"error": None}
    except BaseException as exc:
        out[step] = {"error": type(exc).__name__, "mro": [c.__name__ for c in type(exc).__mro__], "message": str(exc)}
    out[step]["seconds"] = time.perf_counter() - t0
# VmHWM is this process's own peak; ru_maxrss also counts the parent's RSS at fork time (Linux keeps it across exec)
try:
    hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]
    out["maxrss_mb"] = int(hwm.split()[1]) / 1024
except (OSError, IndexError):
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(out))
"""


# ----------------------------------------------------------------------------------------------------------
# builders (each returns the path of a hostile file written under `root`)


def _npy_header_only(root: Path, name: str, shape: tuple[int, ...], descr: str = "|u1") -> Path:
    p = root / name
    with open(p, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": descr, "fortran_order": False, "shape": shape})
        fh.write(b"\0" * 512)  # ~1 KB in all
    return p


def _npy_object(root: Path) -> Path:
    p = root / "objects.npy"
    np.save(p, np.array([[[{"a": 1}]]], dtype=object), allow_pickle=True)
    return p


def _dicom(root: Path, name: str, n_real: int, declared: int, rows: int = 16, cols: int = 16) -> Path:
    from coreecho.data.phantom import write_dicom

    pixels = np.zeros((n_real, 16, 16), np.uint8).tobytes()
    return write_dicom(root / name, np.zeros((1, 16, 16), np.uint8), pixels=pixels, NumberOfFrames=declared,
                       Rows=rows, Columns=cols)


def _dicom_encapsulated_lying(root: Path) -> Path:
    import pydicom
    from pydicom.data import get_testdata_file

    src = get_testdata_file("examples_ybr_color.dcm")  # 30 JPEG frames
    ds = pydicom.dcmread(src)
    ds.NumberOfFrames = 5000
    p = root / "jpeg_5000_declared.dcm"
    ds.save_as(p)
    return p


def _dicom_deflate_bomb(root: Path) -> Path:
    """32 MB of pixels that deflate to ~33 KB: pydicom would inflate it whole, in memory."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from coreecho.data.layouts import write_dicom

    src = write_dicom(root / "bomb_src.dcm", np.zeros((32, 1024, 1024), np.uint8))
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    p = root / "deflate_bomb.dcm"
    ds.save_as(p, enforce_file_format=True)
    src.unlink()
    return p


def _avi(root: Path, name: str, n: int = 30, size: int = 32) -> Path:
    from coreecho.video import write_video

    frames = np.linspace(0, 250, n * size * size).reshape(n, size, size).astype(np.uint8)
    return write_video(root / name, frames, fps=25)


def _avi_truncated(root: Path) -> Path:
    data = _avi(root, "full.avi").read_bytes()
    p = root / "truncated.avi"
    p.write_bytes(data[: len(data) * 2 // 3])
    return p


def _size_change(root: Path, name: str) -> Path:
    """An MJPEG video whose frames are 32x32 for 10 frames, then 24x40: each packet is a JPEG of its own size."""
    import av

    def packets(h: int, w: int, n: int) -> list[bytes]:
        cc = av.CodecContext.create("mjpeg", "w")
        cc.width, cc.height, cc.pix_fmt, cc.time_base = w, h, "yuvj420p", Fraction(1, 25)
        out = []
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts = i
            out += [bytes(p) for p in cc.encode(frame)]
        return out + [bytes(p) for p in cc.encode(None)]

    p = root / name
    container = av.open(str(p), "w")
    stream = container.add_stream("mjpeg", rate=25)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuvj420p"
    container.start_encoding()
    for i, data in enumerate(packets(32, 32, 10) + packets(24, 40, 10)):
        packet = av.Packet(data)
        packet.stream, packet.time_base, packet.pts, packet.dts = stream, Fraction(1, 25), i, i
        container.mux(packet)
    container.close()
    return p


def _text(root: Path, name: str, text: str) -> Path:
    p = root / name
    p.write_text(text)
    return p


def _image(root: Path, name: str, fmt: str) -> Path:
    from PIL import Image

    p = root / name
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(p, format=fmt)
    return p


_SRT = "1\n00:00:01,000 --> 00:00:02,000\nHello\n\n2\n00:00:03,000 --> 00:00:04,000\nWorld\n"
_HTML = "<!DOCTYPE html>\n<html><head><title>echo</title></head><body><p>not a video</p></body></html>\n"

# id: (builder, backend, limits, expected error class, words the message must contain)
CASES = {
    "npy-1e9-frames": (lambda r: _npy_header_only(r, "lie_1e9.npy", (10**9, 112, 112)), "auto", {},
                       VideoReadError, ["shape", "max_frames="]),
    "npy-1e11-frames": (lambda r: _npy_header_only(r, "lie_1e11.npy", (10**11, 112, 112, 3)), "auto", {},
                        VideoReadError, ["shape", "max_frames="]),
    "npy-lie-under-limit": (lambda r: _npy_header_only(r, "lie_5e4.npy", (50_000, 112, 112)), "auto", {},
                            VideoReadError, ["shape", "truncated"]),
    "npy-huge-frames": (lambda r: _npy_header_only(r, "lie_side.npy", (2, 10**6, 10**6)), "auto", {},
                        VideoReadError, ["shape", "max_side="]),
    "npy-object-dtype": (_npy_object, "auto", {}, VideoReadError, ["dtype", "objects"]),
    "dicom-1e9-frames": (lambda r: _dicom(r, "lie_1e9.dcm", 10, 10**9), "auto", {},
                         VideoReadError, ["NumberOfFrames", "max_frames="]),
    "dicom-lie-under-limit": (lambda r: _dicom(r, "lie_5e4.dcm", 10, 50_000), "auto", {},
                              VideoReadError, ["NumberOfFrames", "PixelData"]),
    "dicom-huge-rows": (lambda r: _dicom(r, "huge_rows.dcm", 10, 10, rows=65535, cols=65535), "auto", {},
                        VideoReadError, ["Rows x Columns", "max_side="]),
    "dicom-jpeg-lie": (_dicom_encapsulated_lying, "auto", {}, VideoReadError, ["NumberOfFrames", "PixelData"]),
    "dicom-deflate-bomb": (_dicom_deflate_bomb, "auto", {"max_bytes": 8 * 1024**2}, VideoReadError,
                           ["deflated", "max_bytes="]),
    "avi-truncated": (_avi_truncated, "auto", {}, VideoReadError, ["truncated", "declares"]),
    "size-change-auto": (lambda r: _size_change(r, "size_change.avi"), "auto", {}, VideoReadError,
                         ["frame 10 size", "24x40"]),
    "size-change-pyav": (lambda r: _size_change(r, "size_change.avi"), "pyav", {}, VideoReadError,
                         ["frame 10 size", "24x40"]),
    "size-change-decord": (lambda r: _size_change(r, "size_change.avi"), "decord", {}, VideoReadError,
                           ["frame 10 size", "24x40"]),
    "size-change-mkv": (lambda r: _size_change(r, "size_change.mkv"), "auto", {}, VideoReadError,
                        ["frame 10 size"]),
    "text-as-txt": (lambda r: _text(r, "notes.txt", "hello world\n" * 30), "auto", {}, VideoReadError,
                    ["text"]),
    "text-as-avi": (lambda r: _text(r, "notes.avi", "hello world\n" * 30), "auto", {}, VideoReadError,
                    ["text"]),
    "text-as-avi-decord": (lambda r: _text(r, "notes2.avi", "hello world\n" * 30), "decord", {}, VideoReadError,
                           ["text"]),
    "html": (lambda r: _text(r, "page.html", _HTML), "auto", {}, VideoReadError, ["HTML"]),
    "subtitles-srt": (lambda r: _text(r, "subs.srt", _SRT), "auto", {}, VideoReadError, ["container", "srt"]),
    "subtitles-srt-decord": (lambda r: _text(r, "subs2.srt", _SRT), "decord", {}, VideoReadError, ["srt"]),
    "png": (lambda r: _image(r, "still.png", "PNG"), "auto", {}, VideoReadError, ["single image", "png"]),
    "png-as-avi": (lambda r: _image(r, "still_png.avi", "PNG"), "auto", {}, VideoReadError, ["single image"]),
    "jpeg": (lambda r: _image(r, "still.jpg", "JPEG"), "auto", {}, VideoReadError, ["single image", "jpeg"]),
    "jpeg-as-avi-decord": (lambda r: _image(r, "still_jpg.avi", "JPEG"), "decord", {}, VideoReadError,
                           ["JPEG image"]),
    "frames-over-max-side": (lambda r: _avi(r, "wide.avi", n=4, size=64), "auto", {"max_side": 48},
                             VideoReadError, ["frame size", "max_side=64"]),
    "frames-over-max-pixels": (lambda r: _avi(r, "wide2.avi", n=4, size=64), "auto", {"max_pixels": 1000},
                               VideoReadError, ["frame size", "max_pixels="]),
    "packets-over-max-frames": (lambda r: _avi(r, "long.avi", n=30), "auto", {"max_frames": 10},
                                VideoReadError, ["frame count", "max_frames="]),
    "packets-over-max-frames-decord": (lambda r: _avi(r, "long2.avi", n=30), "decord", {"max_frames": 10},
                                       VideoReadError, ["frame count", "max_frames="]),
    "read-over-max-bytes": (lambda r: _avi(r, "bytes.avi", n=30), "auto", {"max_bytes": 10_000},
                            type(None), []),  # probing is fine; reading everything is refused (InputError)
}


@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


def _run(path: Path, backend: str, limits: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(path), backend, json.dumps(limits)],
                          capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"subprocess failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    result["wall"] = wall
    return result


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input(case, hostile_root):
    builder, backend, limits, expected, words = CASES[case]
    if backend == "decord" and not HAVE_DECORD:
        pytest.skip("decord not installed")
    if case.startswith("dicom"):
        pytest.importorskip("pydicom")
    root = hostile_root / case
    root.mkdir()
    path = builder(root)
    result = _run(path, backend, limits)
    print(f"{case}: peak RSS {result['maxrss_mb']:.0f} MB, read {result['read']['seconds']:.2f} s, "
          f"probe {result['probe']['seconds']:.2f} s")
    assert result["maxrss_mb"] < MAX_RSS_MB, f"{case}: peak RSS {result['maxrss_mb']:.0f} MB"
    if expected is type(None):  # the byte limit: open and probe succeed, reading all frames is refused
        assert result["probe"]["error"] is None
        assert result["read"]["error"] == "InputError" and "max_bytes=" in result["read"]["message"]
        return
    for step in ("read", "probe"):
        r = result[step]
        assert r["error"] == expected.__name__, f"{case} ({step}): {r}"
        assert "CoReEchoError" in r["mro"]
        assert r["message"].startswith(str(path)), f"{case} ({step}): message does not name the file: {r['message']}"
        for word in words:
            assert word in r["message"], f"{case} ({step}): {word!r} not in {r['message']!r}"


def test_tty_and_subtitle_demuxers_are_refused():
    """FFmpeg builds differ in which demuxer takes a .txt file; whatever it reports must be refused."""
    from coreecho.video.containers import _check_format

    for name, long_name in (("tty", "Tele-typewriter"), ("srt", "SubRip subtitle"), ("webvtt", "WebVTT subtitle"),
                            ("ass", "SSA (SubStation Alpha) subtitle"), ("mp3", "MP2/3 (MPEG audio layer 2/3)"),
                            ("html", "")):
        with pytest.raises(VideoReadError, match=f"container.*{name}") as e:
            _check_format("x.avi", name, long_name)
        assert str(e.value).startswith("x.avi:")
    with pytest.raises(VideoReadError, match="single image"):
        _check_format("x.png", "png_pipe", "piped png sequence", n_images=1)
    for name in ("avi", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "gif", "mpegts", "asf", "ogg"):
        _check_format("x", name, "")
    _check_format("x", "image2", "image2 sequence", n_images=5)  # a real image sequence


# ----------------------------------------------------------------------------------------------------------
# one probe per open


def test_probed_once_per_open(tmp_path, monkeypatch):
    from coreecho.video import containers, open_video

    path = _avi(tmp_path, "once.avi", n=20)
    calls = {"probe": 0, "open": 0}
    real_probe, real_open = containers._av_probe, containers._av_open

    def probe(*a, **k):
        calls["probe"] += 1
        return real_probe(*a, **k)

    def av_open(*a, **k):
        calls["open"] += 1
        return real_open(*a, **k)

    monkeypatch.setattr(containers, "_av_probe", probe)
    monkeypatch.setattr(containers, "_av_open", av_open)
    with open_video(path) as reader:
        info = reader.info
        a = reader.read([0, 5, 5])
        b = reader.read([19, 1])
        c = reader.read(range(20))
        assert reader.info is info
    assert calls == {"probe": 1, "open": 1}
    assert a.shape == (3, 32, 32, 3) and np.array_equal(a[1], c[5]) and np.array_equal(b[0], c[19])
    assert info.backend == "pyav" and info.n_frames == 20


def test_dicom_and_npy_headers_read_once(tmp_path, monkeypatch):
    pytest.importorskip("pydicom")
    from coreecho.video import dicom, open_video

    path = _dicom(tmp_path, "once.dcm", 6, 6)
    calls = []
    real = dicom._dicom_header
    monkeypatch.setattr(dicom, "_dicom_header", lambda p: (calls.append(p), real(p))[1])
    with open_video(path) as reader:
        for idx in ([0], [5, 1], range(6)):
            reader.read(idx)
    assert len(calls) == 1 and reader.info.backend == "pydicom"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_read_memory_follows_frames_read(tmp_path):
    """A 2 GB .npy (sparse file) read 2 frames at a time stays small: the map is not copied."""
    p = tmp_path / "big.npy"
    shape = (2000, 512, 512, 4)
    with open(p, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
        fh.truncate(fh.tell() + int(np.prod(shape)))
    code = ("import sys; from coreecho.video import open_video\n"
            "r = open_video(sys.argv[1]); x = r.read([0, 1999]); y = r.read([1000])\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0]\n"
            "print(x.shape, int(hwm.split()[1]) // 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, cwd=str(ROOT),
                         timeout=120, check=True).stdout.split()
    assert out[:4] == ["(2,", "512,", "512,", "3)"] and int(out[-1]) < 400
    shutil.rmtree(tmp_path, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------
# DICOM grey-level attributes (issue 19.3): each bad value is a VideoReadError naming the file and the attribute,
# at open (probe) and at read, never a blank or saturated video with an EF


def _grey_dicom(root: Path, name: str, raw: dict[int, tuple[str, bytes]] | None = None, **attrs) -> Path:
    """A 16-bit MONOCHROME2 ramp cine (so the grey mapping is used) with raw (unvalidated) attribute bytes."""
    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    from coreecho.data.layouts import write_dicom

    ramp = (np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8) * 16)
    p = write_dicom(root / name, ramp, **attrs)
    if raw:
        ds = pydicom.dcmread(p)
        for tag, (vr, value) in raw.items():
            ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
        ds.save_as(p)
    return p


_SLOPE, _INTERCEPT, _CENTER, _WIDTH = 0x00281053, 0x00281052, 0x00281050, 0x00281051
GREY_CASES = {
    "slope-nan": ({_SLOPE: ("DS", b"nan ")}, "RescaleSlope = nan is not a finite number"),
    "slope-1e400": ({_SLOPE: ("DS", b"1e400 ")}, "RescaleSlope = .* is not a finite number"),
    "slope-inf": ({_SLOPE: ("DS", b"-inf")}, "RescaleSlope = .* is not a finite number"),
    "slope-multi": ({_SLOPE: ("DS", b"1\\2 ")}, "RescaleSlope holds 2 values"),
    "slope-text": ({_SLOPE: ("DS", b"abc ")}, "RescaleSlope = 'abc' is not a number"),
    "slope-zero": ({_SLOPE: ("DS", b"0 ")}, "RescaleSlope = 0"),
    "slope-huge": ({_SLOPE: ("DS", b"1e300 ")}, "outside the finite range"),
    "intercept-nan": ({_INTERCEPT: ("DS", b"NaN ")}, "RescaleIntercept = .* is not a finite number"),
    "intercept-multi": ({_INTERCEPT: ("DS", b"0\\1\\2 ")}, "RescaleIntercept holds 3 values"),
    "center-text": ({_CENTER: ("DS", b"mid "), _WIDTH: ("DS", b"100 ")}, "WindowCenter = 'mid' is not a number"),
    "center-nan": ({_CENTER: ("DS", b"nan "), _WIDTH: ("DS", b"100 ")}, "WindowCenter = nan"),
    "width-zero": ({_CENTER: ("DS", b"50"), _WIDTH: ("DS", b"0 ")}, "WindowWidth = 0 is invalid"),
    "width-negative": ({_CENTER: ("DS", b"50"), _WIDTH: ("DS", b"-10 ")}, "WindowWidth = -10 is invalid"),
    "width-inf": ({_CENTER: ("DS", b"50"), _WIDTH: ("DS", b"inf ")}, "WindowWidth = .* is not a finite number"),
    "window-unpaired": ({_CENTER: ("DS", b"50\\60 "), _WIDTH: ("DS", b"100 ")}, "WindowCenter holds 2 values but"),
}


@pytest.mark.parametrize("case", list(GREY_CASES))
def test_dicom_grey_attributes(case, tmp_path):
    pytest.importorskip("pydicom")
    import warnings

    from coreecho.video import probe_video, read_video

    raw, match = GREY_CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values it is asked to read
        path = _grey_dicom(tmp_path, f"{case}.dcm", raw)
        calls = (read_video,) if case == "slope-huge" else (read_video, probe_video)  # overflow shows at decode
        for call in calls:
            with pytest.raises(VideoReadError, match=match) as err:
                call(path)
            assert f"{case}.dcm" in str(err.value)


def test_dicom_grey_attributes_that_are_valid(tmp_path):
    pytest.importorskip("pydicom")
    from coreecho.video import read_video

    plain = read_video(_grey_dicom(tmp_path, "plain.dcm")).frames[..., 0]
    assert plain.min() == 0 and plain.max() == 255  # min-max of the decoded frames
    pair = read_video(_grey_dicom(tmp_path, "pair.dcm", {_CENTER: ("DS", b"512\\100 "), _WIDTH: ("DS", b"1024\\4 ")}))
    assert pair.frames[0, 0, 0, 0] == 0 and pair.metadata["grey_mapping"] == "window 512/1024"  # the first pair
    neg = read_video(_grey_dicom(tmp_path, "neg.dcm", {_SLOPE: ("DS", b"-1 "), _INTERCEPT: ("DS", b"4095")}))
    assert np.array_equal(neg.frames[..., 0], 255 - plain)  # an inverting rescale is a real mapping


def test_dicom_lut_descriptors(tmp_path):
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from coreecho.video import probe_video, read_video

    item = Dataset()
    item.LUTDescriptor = [4096, 0, 8]
    item.LUTData = np.arange(100, dtype=np.uint16).tobytes()  # fewer entries than the descriptor declares
    p = _grey_dicom(tmp_path, "mlut.dcm", ModalityLUTSequence=Sequence([item]))
    with pytest.raises(VideoReadError, match=r"ModalityLUTSequence\[0\].LUTData holds 100 entries") as err:
        probe_video(p)
    assert "mlut.dcm" in str(err.value)
    item = Dataset()
    item.LUTDescriptor = [4096, 0]
    item.LUTData = np.zeros(4096, np.uint16).tobytes()
    with pytest.raises(VideoReadError, match="LUTDescriptor must hold three integers"):
        read_video(_grey_dicom(tmp_path, "voi.dcm", VOILUTSequence=Sequence([item])))
    ok = Dataset()
    ok.LUTDescriptor = [4096, 0, 8]
    ok.LUTData = np.minimum(255, np.arange(4096) // 4).astype(np.uint16).tobytes()
    v = read_video(_grey_dicom(tmp_path, "voi_ok.dcm", VOILUTSequence=Sequence([ok])))
    assert v.metadata["grey_mapping"] == "VOI LUT (8 bits)" and v.frames[0, 0, 1, 0] == 4  # 16 // 4 = 4 of 255
    from coreecho.data.layouts import write_dicom

    idx = np.zeros((2, 4, 4), np.uint8)
    pal = write_dicom(tmp_path / "pal.dcm", idx, photometric="PALETTE COLOR",
                      RedPaletteColorLookupTableDescriptor=[256, 0, 12],
                      GreenPaletteColorLookupTableDescriptor=[256, 0, 12],
                      BluePaletteColorLookupTableDescriptor=[256, 0, 12],
                      RedPaletteColorLookupTableData=b"\0" * 512, GreenPaletteColorLookupTableData=b"\0" * 512,
                      BluePaletteColorLookupTableData=b"\0" * 512)
    with pytest.raises(VideoReadError, match="palette LUT descriptors declare \\[12\\] bits") as err:
        probe_video(pal)
    assert "pal.dcm" in str(err.value)


# ----------------------------------------------------------------------------------------------------------
# videos without usable signal (issue 19.3): never a silent EF


def test_signal_problem_reasons():
    from coreecho.video.base import MIN_CONTRAST, check_signal, signal_problem

    rng = np.random.default_rng(0)
    assert "(all black)" in signal_problem(np.zeros((5, 32, 32, 3), np.uint8))
    assert "(all white)" in signal_problem(np.full((5, 32, 32), 255, np.uint8))
    assert "is 77" in signal_problem(np.full((5, 32, 32, 3), 77, np.uint8))
    faint = (120 + rng.integers(-2, 3, (5, 32, 32))).astype(np.uint8)
    assert "below the contrast floor" in signal_problem(faint)
    assert signal_problem(faint, floor=1.0) is None  # the floor is a documented, overridable number
    assert MIN_CONTRAST == 8.0
    from coreecho.data.phantom import make_phantom

    frames, _ = make_phantom(seed=0, n_frames=30, size=32, gain=0.5, heart_rate=120)
    assert signal_problem(frames) is None
    with pytest.raises(VideoReadError, match="blank.avi: has no usable signal"):
        check_signal("blank.avi", np.zeros((2, 8, 8), np.uint8))


def test_blank_videos_are_error_rows_not_efs(tiny_model, tmp_path):
    pytest.importorskip("pydicom")
    from coreecho.data.layouts import write_dicom
    from coreecho.data.phantom import make_phantom
    from coreecho.errors import NoSignalError

    frames, _ = make_phantom(seed=1, n_frames=30, size=32, heart_rate=120)
    grey = frames[..., 0]
    black = write_dicom(tmp_path / "black.dcm", np.zeros_like(grey), fps=50)
    white = write_dicom(tmp_path / "white.dcm", np.full_like(grey, 255), fps=50)
    rng = np.random.default_rng(0)
    faint = write_dicom(tmp_path / "faint.dcm", (100 + rng.integers(0, 4, grey.shape)).astype(np.uint8), fps=50)
    inputs = [frames, black, white, faint, np.zeros_like(frames), frames]
    preds = tiny_model.predict_ef(inputs, errors="nan", return_details=True)
    assert [p.ok for p in preds] == [True, False, False, False, False, True]
    for p, why in zip(preds[1:5], ("all black", "all white", "contrast floor", "all black")):
        assert "no usable signal" in p.error and why in p.error and np.isnan(p.ef)
    assert "black.dcm" in preds[1].error
    with pytest.raises(NoSignalError, match="white.dcm: has no usable signal"):
        tiny_model.predict_ef(white)
    with pytest.warns(UserWarning, match="no usable signal"):  # embeddings are returned, with the flag as a warning
        assert tiny_model.embed(black).shape == (tiny_model.embed_dim,)
