"""Every DICOM transfer syntax an echo system writes decodes to the right frames (``pip install -e ".[dicom]"``).

Each case writes one tiny ultrasound-like cine (8 frames of 64x64 from the phantom) in one transfer syntax, with
pydicom's encoders (RLE, JPEG-LS, JPEG 2000), Pillow (JPEG Baseline/Extended), GDCM (JPEG Lossless, Extended) and
PyAV (MPEG-2, H.264, HEVC elementary streams), reads it back with coreecho and checks the frame count, the size and
the pixels against the source: exact for lossless syntaxes, within a tolerance for lossy ones.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from coreecho.errors import CoReEchoError, DecoderMissingError, MissingDependencyError, VideoReadError
from coreecho.video import open_video, read_video

pydicom = pytest.importorskip("pydicom")
from pydicom import uid as U  # noqa: E402

N, SIZE, FPS = 8, 64, 50.0


@pytest.fixture(scope="module")
def grey() -> np.ndarray:
    from coreecho.data.phantom import make_phantom

    frames, _ = make_phantom(ef=55, seed=1, n_frames=N, size=SIZE, fps=FPS, heart_rate=200, noise=0.0)
    return np.ascontiguousarray(frames[..., 0])


def _base(path: Path, grey: np.ndarray) -> Path:
    from coreecho.data.layouts import write_dicom

    return write_dicom(path, grey, fps=FPS)


def _resave(src: Path, dst: Path, syntax: str) -> Path:
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = syntax
    if syntax == U.ExplicitVRBigEndian:  # 8-bit pixels: the same bytes in either byte order
        pydicom.dcmwrite(dst, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    else:
        ds.save_as(dst, enforce_file_format=True)
    return dst


def _compress(src: Path, dst: Path, syntax: str, **kwargs) -> Path:
    ds = pydicom.dcmread(src)
    ds.compress(syntax, **kwargs)
    ds.save_as(dst, enforce_file_format=True)
    return dst


def _encapsulated(src: Path, dst: Path, syntax: str, fragments: list[bytes], **attrs) -> Path:
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = syntax
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = encapsulate(fragments, has_bot=False)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(dst, enforce_file_format=True)
    return dst


def _pillow_jpeg(grey: np.ndarray, extended: bool) -> list[bytes]:
    from PIL import Image

    out = []
    for frame in grey:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=95)
        data = buf.getvalue()
        if extended:  # an 8-bit extended sequential (SOF1) frame: same entropy coding as baseline
            data = data.replace(b"\xff\xc0", b"\xff\xc1", 1)
        out.append(data)
    return out


def _gdcm(src: Path, dst: Path, name: str) -> Path:
    gdcm = pytest.importorskip("gdcm")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, name)))
    change.SetInput(reader.GetImage())
    assert change.Change(), name
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    return dst


def _av_stream(grey: np.ndarray, codec: str, fmt: str, options: dict) -> bytes:
    av = pytest.importorskip("av")
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=int(FPS))
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        stream.options = options
        for frame in grey:
            rgb = np.repeat(frame[..., None], 3, axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def _video(syntax: str, codec: str, fmt: str, options: dict):
    def build(src: Path, dst: Path, grey: np.ndarray) -> Path:
        stream = _av_stream(grey, codec, fmt, options)
        half = len(stream) // 4 * 2  # two fragments (items have an even length): readers concatenate them
        return _encapsulated(src, dst, syntax, [stream[:half], stream[half:]], PhotometricInterpretation="YBR_PARTIAL_420",
                             SamplesPerPixel=3, PlanarConfiguration=0)
    return build


# name -> (builder(src, dst, grey), transfer syntax, tolerance: max |difference| and mean |difference|)
CASES = {
    "implicit-le": (lambda s, d, g: _resave(s, d, U.ImplicitVRLittleEndian), U.ImplicitVRLittleEndian, (0, 0)),
    "explicit-le": (lambda s, d, g: _resave(s, d, U.ExplicitVRLittleEndian), U.ExplicitVRLittleEndian, (0, 0)),
    "explicit-be": (lambda s, d, g: _resave(s, d, U.ExplicitVRBigEndian), U.ExplicitVRBigEndian, (0, 0)),
    "deflated": (lambda s, d, g: _resave(s, d, U.DeflatedExplicitVRLittleEndian), U.DeflatedExplicitVRLittleEndian,
                 (0, 0)),
    "rle": (lambda s, d, g: _compress(s, d, U.RLELossless), U.RLELossless, (0, 0)),
    "jpeg-baseline": (lambda s, d, g: _encapsulated(s, d, U.JPEGBaseline8Bit, _pillow_jpeg(g, False)),
                      U.JPEGBaseline8Bit, (48, 2.0)),
    "jpeg-extended": (lambda s, d, g: _encapsulated(s, d, U.JPEGExtended12Bit, _pillow_jpeg(g, True)),
                      U.JPEGExtended12Bit, (48, 2.0)),
    "jpeg-extended-gdcm": (lambda s, d, g: _gdcm(s, d, "JPEGExtendedProcess2_4"), U.JPEGExtended12Bit, (48, 2.0)),
    "jpeg-lossless-p14": (lambda s, d, g: _gdcm(s, d, "JPEGLosslessProcess14"), U.JPEGLossless, (0, 0)),
    "jpeg-lossless-sv1": (lambda s, d, g: _gdcm(s, d, "JPEGLosslessProcess14_1"), U.JPEGLosslessSV1, (0, 0)),
    "jpeg-ls-lossless": (lambda s, d, g: _compress(s, d, U.JPEGLSLossless), U.JPEGLSLossless, (0, 0)),
    "jpeg-ls-near": (lambda s, d, g: _compress(s, d, U.JPEGLSNearLossless, jls_error=3), U.JPEGLSNearLossless,
                     (3, 3.0)),
    "j2k-lossless": (lambda s, d, g: _compress(s, d, U.JPEG2000Lossless), U.JPEG2000Lossless, (0, 0)),
    "j2k-lossy": (lambda s, d, g: _compress(s, d, U.JPEG2000, j2k_cr=[5]), U.JPEG2000, (64, 6.0)),
    "mpeg2-mpml": (_video(U.MPEG2MPML, "mpeg2video", "mpeg2video", {"qscale": "2"}), U.MPEG2MPML, (128, 8.0)),
    "mpeg2-mphl": (_video(U.MPEG2MPHL, "mpeg2video", "mpeg2video", {"qscale": "2"}), U.MPEG2MPHL, (128, 8.0)),
    "h264": (_video(U.MPEG4HP41, "libx264", "h264", {"crf": "5", "preset": "ultrafast"}), U.MPEG4HP41, (128, 8.0)),
    "hevc": (_video(U.HEVCMP51, "libx265", "hevc", {"crf": "5", "preset": "ultrafast", "x265-params": "log-level=none"}),
             U.HEVCMP51, (128, 8.0)),
}


def _needs_encoder(syntax: str) -> None:
    try:
        from pydicom.pixels import get_encoder
    except ImportError:  # pragma: no cover - pydicom 2.x
        pytest.skip("pydicom >= 3 is needed for its encoders")
    try:
        enc = get_encoder(syntax)
    except (NotImplementedError, KeyError, ValueError):
        return
    if not enc.is_available:
        pytest.skip(f"no encoder for {syntax.name} here (install the dicom extra)")


@pytest.mark.parametrize("name", list(CASES))
def test_transfer_syntax_decodes_to_the_source(name, grey, tmp_path):
    build, syntax, (max_diff, mean_diff) = CASES[name]
    if name in ("rle", "jpeg-ls-lossless", "jpeg-ls-near", "j2k-lossless", "j2k-lossy"):
        _needs_encoder(syntax)
    path = build(_base(tmp_path / "src.dcm", grey), tmp_path / f"{name}.dcm", grey)
    assert str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID) == syntax
    video = read_video(path)
    assert video.frames.shape == (N, SIZE, SIZE, 3) and video.frames.dtype == np.uint8
    assert video.backend == "pydicom" and video.fps == pytest.approx(FPS, rel=1e-3)
    got = video.frames.astype(np.int16)
    diff = np.abs(got - grey[..., None].astype(np.int16))
    corr = np.corrcoef(got[..., 0].ravel(), grey.ravel())[0, 1]
    assert diff.mean() <= mean_diff and corr >= 0.97, (name, int(diff.max()), float(diff.mean()), float(corr))
    if max_diff == 0:
        assert np.array_equal(video.frames[..., 0], grey)
    else:  # lossy: the channels agree (grey stays grey) and pixels stay close
        assert diff.max() <= max_diff and np.abs(got[..., 0] - got[..., 2]).max() <= 8
    # partial decode: only the frames asked for, in the order asked, identical to the full decode
    with open_video(path) as reader:
        assert reader.info.n_frames == N and (reader.info.height, reader.info.width) == (SIZE, SIZE)
        part = reader.read([5, 1, 5])
    assert np.array_equal(part, video.frames[[5, 1, 5]])


HTJ2K_FILES = Path(__file__).resolve().parent / "fixtures" / "dicom"


@pytest.mark.parametrize("name, syntax, max_diff", [("htj2k_lossless.dcm", U.HTJ2KLossless, 0),
                                                     ("htj2k_lossy.dcm", U.HTJ2K, 4)])
def test_htj2k_cines_decode_to_the_source(name, syntax, max_diff, grey):
    """HTJ2K decodes through pylibjpeg-openjpeg (OpenJPEG >= 2.5 reads High-Throughput JPEG 2000). No encoder among
    the dependencies writes it, so the two cines were made once from this module's phantom with imagecodecs
    (tests/fixtures/dicom/make_htj2k.py) and are kept in the repository."""
    from coreecho.video.dicom_codecs import decoder_package
    from pydicom.pixels import get_decoder

    assert decoder_package(syntax) == "pylibjpeg-openjpeg"
    if not get_decoder(syntax).is_available:
        pytest.skip("pylibjpeg-openjpeg is not installed (pip install -e '.[dicom]')")
    path = HTJ2K_FILES / name
    assert str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID) == syntax
    video = read_video(path)
    assert video.frames.shape == (N, SIZE, SIZE, 3) and video.fps == pytest.approx(FPS, rel=1e-3)
    diff = np.abs(video.frames[..., 0].astype(np.int16) - grey.astype(np.int16))
    assert int(diff.max()) <= max_diff, (name, int(diff.max()))
    with open_video(path) as reader:
        assert np.array_equal(reader.read([6, 2]), video.frames[[6, 2]])


def test_big_endian_16bit_file_matches_little_endian():
    from pydicom.data import get_testdata_file

    try:
        be, le = get_testdata_file("emri_small_big_endian.dcm"), get_testdata_file("emri_small.dcm")
    except Exception:  # noqa: BLE001 - pydicom-data not installed / no network
        be = le = None
    if not be or not le:
        pytest.skip("pydicom-data is not installed")
    a, b = read_video(be), read_video(le)
    assert a.frames.shape == b.frames.shape == (10, 64, 64, 3) and np.array_equal(a.frames, b.frames)


@pytest.mark.parametrize("name, syntax", [("jpeg-ls-lossless", U.JPEGLSLossless), ("j2k-lossless", U.JPEG2000Lossless),
                                          ("jpeg-lossless-sv1", U.JPEGLosslessSV1)])
def test_missing_decoder_is_a_typed_per_file_error(name, syntax, grey, tmp_path, monkeypatch):
    from pydicom.pixels import get_decoder

    build = CASES[name][0]
    if name != "jpeg-lossless-sv1":
        _needs_encoder(syntax)
    path = build(_base(tmp_path / "src.dcm", grey), tmp_path / f"{name}.dcm", grey)
    decoder = get_decoder(syntax)
    # the plugins' imports failed: what pydicom records when e.g. `import jpeg_ls` raises ImportError
    monkeypatch.setattr(decoder, "_unavailable", {**decoder._unavailable,
                                                  **{k: ("a plugin",) for k in decoder._available}})
    monkeypatch.setattr(decoder, "_available", {})
    for call in (read_video, open_video):
        with pytest.raises(DecoderMissingError) as err:
            call(path)
        msg = str(err.value)
        assert f"{name}.dcm" in msg and 'pip install "coreecho[dicom]"' in msg and err.value.package in msg
        assert isinstance(err.value, VideoReadError) and isinstance(err.value, MissingDependencyError)


def test_truncated_and_lying_video_streams(grey, tmp_path):
    build = CASES["h264"][0]
    good = build(_base(tmp_path / "src.dcm", grey), tmp_path / "h264.dcm", grey)
    ds = pydicom.dcmread(good)
    ds.NumberOfFrames = 50  # more frames than the stream holds
    ds.save_as(tmp_path / "more.dcm")
    with pytest.raises(VideoReadError, match="NumberOfFrames = 50.*holds only 8 frames"):
        read_video(tmp_path / "more.dcm")
    assert read_video(tmp_path / "more.dcm", indices=[0, 7]).frames.shape == (2, SIZE, SIZE, 3)
    ds = pydicom.dcmread(good)
    ds.Rows = 32  # pictures larger than the header says
    ds.save_as(tmp_path / "rows.dcm")
    with pytest.raises(VideoReadError, match="64x64.*32x64"):
        read_video(tmp_path / "rows.dcm")
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(good)
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3 not an mpeg stream" * 4], has_bot=False)
    ds.save_as(tmp_path / "garbage.dcm")
    with pytest.raises(CoReEchoError, match="garbage.dcm"):
        read_video(tmp_path / "garbage.dcm")


def test_missing_plugin_import_in_a_fresh_process(grey, tmp_path):
    """The real path: the plugin modules cannot be imported (as when the extra is not installed)."""
    import subprocess
    import sys

    _needs_encoder(U.JPEGLSLossless)
    path = CASES["jpeg-ls-lossless"][0](_base(tmp_path / "src.dcm", grey), tmp_path / "jls.dcm", grey)
    good = _base(tmp_path / "good.dcm", grey)
    code = ("import sys\nfor m in ('jpeg_ls', 'gdcm', 'libjpeg'): sys.modules[m] = None\n"
            "from coreecho.video import read_video\nfrom coreecho.errors import DecoderMissingError\n"
            "print(read_video(sys.argv[2]).frames.shape)\n"
            "try:\n    read_video(sys.argv[1])\nexcept DecoderMissingError as e:\n    print('missing', e.package)\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(good)], capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out[0] == f"({N}, {SIZE}, {SIZE}, 3)" and out[1] == "missing pyjpegls", out
    assert "jls.dcm" in out[2] and 'pip install "coreecho[dicom]"' in out[2] and "JPEG-LS" in out[2]
