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
