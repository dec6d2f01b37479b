"""DICOM cines through pydicom (:class:`DicomReader`): header checks, decoder checks, colour conversion to
8-bit RGB, fps.

Every transfer syntax an echo system writes is read with the ``dicom`` extra: uncompressed (implicit, explicit,
big-endian), deflated, RLE, JPEG Baseline/Extended/Lossless, JPEG-LS, JPEG 2000, HTJ2K (pydicom and its plugins, see
:mod:`coreecho.video.dicom_codecs`) and encapsulated MPEG-2 / H.264 / HEVC cines (PyAV decodes the elementary
stream). Grey-level attributes are checked before use (:mod:`coreecho.video.dicom_grey`)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coreecho.errors import MissingDependencyError, VideoReadError
from coreecho.video.base import VideoInfo, VideoReader
from coreecho.video.dicom_codecs import check_decoder, decode_video_stream, video_format, video_info
from coreecho.video.dicom_grey import check_grey_attributes, monochrome_to_grey, palette_bits
from coreecho.video.limits import Limits, check_frame_count, check_frame_size

__all__ = ["DicomReader"]

# ----------------------------------------------------------------------------------------------------------
# DICOM (pydicom, the ``dicom`` extra)

@dataclass
class _DicomHeader:
    n_frames: int
    rows: int
    columns: int
    samples: int
    bits_allocated: int
    bits_stored: int
    photometric: str
    transfer_syntax: str
    transfer_syntax_name: str
    fps: float | None


def import_pydicom(source: str):
    try:
        import pydicom  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError("pydicom", "dicom", f"Reading the DICOM file {source}") from exc
    return pydicom


def _dicom_fps(ds) -> float | None:
    """Frames per second from FrameTime (ms/frame), CineRate, RecommendedDisplayFrameRate or FrameTimeVector."""
    def num(value) -> float | None:
        try:
            v = float(value)
        except (TypeError, ValueError):
            return None
        return v if np.isfinite(v) and v > 0 else None

    ft = num(ds.get("FrameTime"))
    if ft:
        return 1000.0 / ft
    for key in ("CineRate", "RecommendedDisplayFrameRate"):
        v = num(ds.get(key))
        if v:
            return v
    ftv = ds.get("FrameTimeVector")
    if ftv is not None:
        vals = [num(x) for x in list(ftv)[1:]]
        vals = [x for x in vals if x]
        if vals:
            return 1000.0 / float(np.mean(vals))
    return None


_DEFLATED = "1.2.840.10008.1.2.1.99"


def _meta_end(fh) -> int | None:
    """Offset of the first byte after the file meta group (0002,xxxx) of a DICOM file with preamble, or None."""
    fh.seek(0)
    if fh.read(132)[128:] != b"DICM":
        return None
    while True:
        pos = fh.tell()
        head = fh.read(8)
        if len(head) < 8:
            return None
        group, _, vr = struct.unpack("<HH2s", head[:6])
        if group != 0x0002:
            return pos
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            more = fh.read(4)
            if len(more) < 4:
                return None
            length = struct.unpack("<I", more)[0]
        else:
            length = struct.unpack("<H", head[6:])[0]
        if length == 0xFFFFFFFF:
            return None
        fh.seek(length, 1)


def _check_deflated_size(p: Path, limits: Limits) -> None:
    """pydicom inflates a Deflated Explicit VR Little Endian file whole, in memory: stream-inflate it first and
    refuse one that inflates past ``limits.max_bytes`` (a deflate bomb: a few KB that inflate to gigabytes)."""
    import zlib  # noqa: PLC0415

    cap, chunk = limits.max_bytes, 1 << 20
    try:
        with open(p, "rb") as fh:
            start = _meta_end(fh)
            if start is None:
                return
            fh.seek(start)
            if _DEFLATED.encode() not in _read_meta_bytes(fh, start):
                return
            fh.seek(start)
            inflate, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
            while not inflate.eof:
                data = fh.read(chunk)
                if not data:
                    return
                while data and not inflate.eof:  # at most `chunk` bytes of output per call
                    out = inflate.decompress(data, chunk)
                    total += len(out)
                    if total > cap:
                        raise VideoReadError(str(p), f"is a deflated DICOM that inflates to more than {cap} bytes, "
                                                     "the limit of one read (a deflate bomb, or a very large file); "
                                                     f"if it is real, raise it: Limits(max_bytes={4 * cap})")
                    if not out:
                        break
                    data = inflate.unconsumed_tail
    except (OSError, zlib.error, struct.error):
        return  # not a readable deflated stream: the header reader reports it


def _read_meta_bytes(fh, end: int) -> bytes:
    fh.seek(0)
    return fh.read(min(end, 1 << 16))


def _dicom_header(p: Path):
    pydicom = import_pydicom(str(p))
    from pydicom.errors import InvalidDicomError  # noqa: PLC0415

    try:
        try:
            ds = pydicom.dcmread(str(p), defer_size="256 KB")
        except InvalidDicomError:
            # a .dcm file without preamble/magic: parse it anyway; garbage fails below
            ds = pydicom.dcmread(str(p), defer_size="256 KB", force=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on broken files
        raise VideoReadError(str(p), f"is not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        if other:
            raise VideoReadError(str(p), f"stores {other[0]} (float pixels), which is not an ultrasound cine")
        sop = ds.get("SOPClassUID")
        kind = f" (SOP class: {getattr(sop, 'name', sop)})" if sop else ""
        raise VideoReadError(str(p), f"has no pixel data{kind}; it is not an image or cine - export the echo "
                                     "loop itself (a multi-frame ultrasound DICOM)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
        photometric = str(ds.PhotometricInterpretation).strip().upper()
    except (AttributeError, TypeError, ValueError) as exc:
        raise VideoReadError(str(p), f"lacks the image attributes needed to decode it ({exc})") from exc
    stored = int(ds.get("BitsStored", bits) or bits)
    nf_raw = ds.get("NumberOfFrames", 1)
    try:
        n_frames = int(nf_raw) if nf_raw not in (None, "") else 1
    except (TypeError, ValueError):  # never guess one frame: the pixel data would be cut or misread
        raise VideoReadError(str(p), f"NumberOfFrames = {str(nf_raw)!r} is not an integer") from None
    if n_frames <= 0:
        raise VideoReadError(str(p), f"contains no frames (NumberOfFrames = {nf_raw})")
    if rows <= 0 or cols <= 0:
        raise VideoReadError(str(p), f"has an invalid frame size {rows}x{cols}")
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    ts_uid = str(ts) if ts else "1.2.840.10008.1.2.1"
    ts_name = getattr(ts, "name", ts_uid) if ts else "Explicit VR Little Endian (assumed)"
    hdr = _DicomHeader(n_frames, rows, cols, samples, bits, stored, photometric, ts_uid, str(ts_name), _dicom_fps(ds))
    return ds, hdr


def _pixel_element(ds):
    """The PixelData element as read from the header (still deferred when large)."""
    try:
        return ds.get_item("PixelData", keep_deferred=True)
    except TypeError:  # pragma: no cover - pydicom 2.x
        return ds.get_item("PixelData")


def _count_fragments(fh, start: int, end: int, enough: int) -> tuple[int | None, int]:
    """Basic offset table entries (None when empty) and fragments (stops counting at ``enough``) of
    encapsulated pixel data starting at byte ``start``; reads only the 8-byte item headers."""
    fh.seek(start)
    bot: int | None = -1
    fragments = 0
    while fragments < enough:
        head = fh.read(8)
        if len(head) < 8:
            break
        group, elem, length = struct.unpack("<HHI", head)
        tag = group << 16 | elem
        if tag == 0xFFFEE0DD:  # sequence delimiter
            break
        if tag != 0xFFFEE000 or length == 0xFFFFFFFF:
            break
        if fh.tell() + length > end:  # an item cut off by the end of the file
            break
        if bot == -1:
            bot = length // 4 if length else None
        else:
            fragments += 1
        fh.seek(length, 1)
    return (None if bot == -1 else bot), fragments


def _dicom_check_pixel_data(p: Path, ds, hdr: _DicomHeader) -> None:
    """NumberOfFrames against what PixelData holds, before anything is decoded: the element length for native
    pixels; the basic offset table and the number of fragments for encapsulated (compressed) pixels."""
    from pydicom.uid import UID  # noqa: PLC0415

    src = str(p)
    elem = _pixel_element(ds)
    raw_len = getattr(elem, "length", None)
    value = getattr(elem, "value", None)
    undefined = raw_len == 0xFFFFFFFF or bool(getattr(elem, "is_undefined_length", False))
    fix = ("the file is truncated or its header lies; copy or export it again (or, if the frames are really "
           "there, check NumberOfFrames)")
    if not UID(hdr.transfer_syntax).is_compressed and not undefined:
        length = int(raw_len) if raw_len is not None else (len(value) if value is not None else 0)
        frame_bits = hdr.rows * hdr.columns * hdr.samples * hdr.bits_allocated
        expected = (hdr.n_frames * frame_bits + 7) // 8
        if length < expected:
            holds = (length * 8) // frame_bits if frame_bits else 0
            raise VideoReadError(src, f"is truncated: NumberOfFrames = {hdr.n_frames} frames of {hdr.rows}x"
                                      f"{hdr.columns} need {expected} bytes of PixelData, but PixelData holds "
                                      f"{length} bytes ({holds} frames); {fix}")
        return
    if value is not None and not isinstance(value, (bytes, bytearray)):
        return  # already decoded by pydicom (unusual); the decoder judges
    try:
        if value is not None:
            import io  # noqa: PLC0415

            fh = io.BytesIO(bytes(value))
            bot, fragments = _count_fragments(fh, 0, len(value), hdr.n_frames)
        else:
            start = int(getattr(elem, "value_tell"))
            with open(p, "rb") as fh:
                bot, fragments = _count_fragments(fh, start, p.stat().st_size, hdr.n_frames)
    except (OSError, AttributeError, TypeError, struct.error) as exc:
        raise VideoReadError(src, f"its encapsulated PixelData cannot be parsed ({exc})") from exc
    if video_format(hdr.transfer_syntax) is not None:  # one video stream, in any number of fragments
        if fragments < 1:
            raise VideoReadError(src, f"is truncated: its encapsulated PixelData holds no video stream; {fix}")
        return
    if bot is not None and bot != hdr.n_frames and hdr.n_frames > 1:
        raise VideoReadError(src, f"NumberOfFrames = {hdr.n_frames} but the PixelData basic offset table lists "
                                  f"{bot} frames; {fix}")
    if fragments < hdr.n_frames:
        raise VideoReadError(src, f"is truncated: NumberOfFrames = {hdr.n_frames} but the encapsulated PixelData "
                                  f"holds only {fragments} fragments (at most {fragments} frames); {fix}")


def _dicom_decode(p: Path, ds, idx_sorted: np.ndarray | None, hdr: _DicomHeader) -> np.ndarray:
    """Decoded pixels (YBR converted to RGB by pydicom), shaped [T, H, W] or [T, H, W, S]."""
    try:
        try:
            from pydicom.pixels import iter_pixels, pixel_array  # noqa: PLC0415  (pydicom >= 3)
        except ImportError:  # pragma: no cover - pydicom 2.x: decode everything, convert YBR ourselves
            arr = ds.pixel_array
            if hdr.n_frames == 1:
                arr = arr[None]
            if hdr.photometric in ("YBR_FULL", "YBR_FULL_422") and hdr.samples == 3:
                from pydicom.pixel_data_handlers.util import convert_color_space

                arr = convert_color_space(arr, hdr.photometric, "RGB", per_frame=True)
            return arr if idx_sorted is None else arr[idx_sorted]
        # decode from the file (pixel data read frame by frame); a deflated file is inflated whole by dcmread, so
        # its pixels are decoded from the dataset in memory (pydicom cannot seek into a deflated stream)
        source = ds if hdr.transfer_syntax == "1.2.840.10008.1.2.1.99" else str(p)
        if idx_sorted is None:
            arr = pixel_array(source)
            if hdr.n_frames == 1:
                arr = arr[None]
        else:
            arr = np.stack(list(iter_pixels(source, indices=[int(i) for i in idx_sorted])))
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        low = text.lower()
        if any(k in low for k in ("less than expected", "too short", "truncat", "cannot reshape", "end of file")):
            raise VideoReadError(str(p), f"is truncated: its pixel data is shorter than the header declares ({text})") from exc
        raise VideoReadError(str(p), f"pixel data could not be decoded ({type(exc).__name__}: {text})") from exc
    return arr


def _to_uint8(x: np.ndarray, bits: int) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    top = float(2**bits - 1) if bits > 0 else float(x.max() or 1)
    return np.clip(np.rint(x.astype(np.float32) * (255.0 / top)), 0, 255).astype(np.uint8)


def _dicom_to_rgb(p: Path, ds, arr: np.ndarray, hdr: _DicomHeader) -> tuple[np.ndarray, dict[str, Any]]:
    pi = hdr.photometric
    info: dict[str, Any] = {"photometric": pi, "transfer_syntax": hdr.transfer_syntax_name}
    if pi in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim == 4:
            arr = arr[..., 0]
        grey, info["grey_mapping"] = monochrome_to_grey(p, ds, arr)
        if pi == "MONOCHROME1":
            grey = 255 - grey
        return np.repeat(grey[..., None], 3, axis=-1), info
    if pi == "PALETTE COLOR":
        try:
            from pydicom.pixels import apply_color_lut  # noqa: PLC0415
        except ImportError:  # pragma: no cover - pydicom 2.x
            from pydicom.pixel_data_handlers.util import apply_color_lut
        if arr.ndim == 4:
            arr = arr[..., 0]
        try:
            rgb = apply_color_lut(arr, ds)
        except Exception as exc:  # noqa: BLE001
            raise VideoReadError(str(p), f"its palette colour lookup table cannot be applied ({exc})") from exc
        lut_bits = palette_bits(p, ds)
        info["palette_bits"] = lut_bits
        return _to_uint8(rgb, lut_bits), info
    if hdr.samples == 3 and pi in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise VideoReadError(str(p), f"decoded pixels have shape {arr.shape}, expected 3 samples per pixel")
        return _to_uint8(arr, hdr.bits_stored), info
    raise VideoReadError(
        str(p), f"photometric interpretation {pi!r} with {hdr.samples} samples per pixel is not supported "
                "(supported: MONOCHROME1/2, RGB, YBR_FULL, YBR_FULL_422, YBR_ICT/RCT, PALETTE COLOR)",
    )


class DicomReader(VideoReader):
    """A DICOM cine read with pydicom; the header is checked against the limits and against the pixel data
    before anything is decoded, and only the requested frames are decoded."""

    backend = "pydicom"

    def __init__(self, path: Path, limits: Limits):
        super().__init__(str(path), limits)
        _check_deflated_size(path, limits)
        ds, hdr = _dicom_header(path)
        src = str(path)
        check_frame_size(src, hdr.rows, hdr.columns, limits, field="Rows x Columns", error=VideoReadError)
        check_frame_count(src, hdr.n_frames, limits, field="NumberOfFrames", error=VideoReadError)
        check_decoder(path, hdr.transfer_syntax, hdr.transfer_syntax_name)
        _dicom_check_pixel_data(path, ds, hdr)
        check_grey_attributes(path, ds, hdr.photometric)
        self._path, self._ds, self._hdr = path, ds, hdr
        self.info = VideoInfo(src, hdr.n_frames, hdr.fps, hdr.rows, hdr.columns, "dicom", hdr.transfer_syntax_name,
                              "pydicom")
        self.metadata = {"photometric": hdr.photometric, "transfer_syntax": hdr.transfer_syntax_name,
                         "modality": str(ds.get("Modality", ""))}

    def _bytes_per_pixel(self) -> float:
        return max(3, self._hdr.samples * max(1, (self._hdr.bits_allocated + 7) // 8))

    def _read_sorted(self, wanted: np.ndarray) -> np.ndarray:
        hdr, src = self._hdr, self.source
        fmt = video_format(hdr.transfer_syntax)
        if fmt is not None:  # MPEG-2 / H.264 / HEVC: decode the elementary stream up to the last frame wanted
            self.metadata.update(video_info(fmt))
            return decode_video_stream(self._path, self._ds.PixelData, fmt, wanted, hdr.n_frames, hdr.rows,
                                       hdr.columns)
        partial = not np.array_equal(wanted, np.arange(hdr.n_frames))
        arr = _dicom_decode(self._path, self._ds, wanted if partial else None, hdr)
        if arr.shape[0] != len(wanted) or arr.shape[1:3] != (hdr.rows, hdr.columns):
            raise VideoReadError(src, f"decoded pixels have shape {arr.shape}, but the header declares "
                                      f"{len(wanted)} frames of {hdr.rows}x{hdr.columns}")
        rgb, info = _dicom_to_rgb(self._path, self._ds, arr, hdr)
        self.metadata.update(info)
        return np.ascontiguousarray(rgb)
