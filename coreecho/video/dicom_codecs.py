"""Which package decodes which DICOM transfer syntax, the typed error when it is missing, and the decoding of
encapsulated MPEG-2 / H.264 / HEVC cines with PyAV.

The ``dicom`` extra installs permissively licensed decoders only (see ``docs/input-formats.md``):

========================================  ==========================================  =============================
transfer syntax                           decoder (pydicom plugin)                    licence
========================================  ==========================================  =============================
uncompressed, deflated, RLE Lossless      pydicom itself (pylibjpeg-rle: faster RLE)  MIT
JPEG Baseline / Extended (8-bit)          pillow (python-gdcm for 12-bit Extended)    MIT-CMU (BSD-3 for GDCM)
JPEG Lossless (Process 14, SV1)           python-gdcm                                 Apache-2.0 wrapper, BSD-3 GDCM
JPEG-LS lossless and near-lossless        pyjpegls (CharLS)                           MIT (CharLS: BSD-3)
JPEG 2000 lossless and lossy, HTJ2K       pylibjpeg + pylibjpeg-openjpeg (OpenJPEG)   MIT (OpenJPEG: BSD-2)
MPEG-2, H.264 (MPEG-4 AVC), HEVC          PyAV (a core dependency; FFmpeg)            BSD-3 (FFmpeg: LGPL-2.1+)
========================================  ==========================================  =============================

pylibjpeg-libjpeg (GPLv3) would also decode JPEG Lossless and JPEG-LS; it is not installed by the extra (a MIT
library should not pull a GPL dependency), but pydicom uses it when a user installs it.

Example:
    >>> decoder_package("1.2.840.10008.1.2.4.80")
    'pyjpegls'
    >>> video_format("1.2.840.10008.1.2.4.102")
    'h264'
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from coreecho.errors import DecoderMissingError, VideoReadError

__all__ = ["DECODER_PACKAGES", "VIDEO_SYNTAXES", "decoder_package", "video_format", "check_decoder",
           "decode_video_stream", "video_info"]

#: transfer syntax UID -> the package of the ``dicom`` extra that decodes it
DECODER_PACKAGES: dict[str, str] = {
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",  # RLE Lossless (pydicom's own numpy decoder also works)
    "1.2.840.10008.1.2.4.50": "pillow",  # JPEG Baseline (8-bit)
    "1.2.840.10008.1.2.4.51": "python-gdcm",  # JPEG Extended (12-bit; pillow decodes 8-bit)
    "1.2.840.10008.1.2.4.57": "python-gdcm",  # JPEG Lossless, Process 14
    "1.2.840.10008.1.2.4.70": "python-gdcm",  # JPEG Lossless, Process 14 SV1
    "1.2.840.10008.1.2.4.80": "pyjpegls",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pyjpegls",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",  # HTJ2K
}

#: encapsulated video transfer syntaxes -> the elementary-stream format PyAV opens
VIDEO_SYNTAXES: dict[str, str] = {
    "1.2.840.10008.1.2.4.100": "mpegvideo",  # MPEG2 Main Profile / Main Level
    "1.2.840.10008.1.2.4.100.1": "mpegvideo",  # (fragmentable)
    "1.2.840.10008.1.2.4.101": "mpegvideo",  # MPEG2 Main Profile / High Level
    "1.2.840.10008.1.2.4.101.1": "mpegvideo",
    **{f"1.2.840.10008.1.2.4.{n}{s}": "h264" for n in (102, 103, 104, 105, 106) for s in ("", ".1")},  # H.264
    "1.2.840.10008.1.2.4.107": "hevc",  # HEVC/H.265 Main Profile / Level 5.1
    "1.2.840.10008.1.2.4.108": "hevc",  # HEVC/H.265 Main 10 Profile / Level 5.1
}


def decoder_package(uid: str) -> str:
    """The package of the ``dicom`` extra that decodes transfer syntax ``uid`` (``"pydicom"`` when none is needed)."""
    return DECODER_PACKAGES.get(str(uid), "pydicom")


def video_format(uid: str) -> str | None:
    """The PyAV demuxer name of an encapsulated video transfer syntax, or ``None`` for an image syntax."""
    return VIDEO_SYNTAXES.get(str(uid))


def _missing(p: Path, syntax_name: str, package: str, detail: str) -> DecoderMissingError:
    return DecoderMissingError(
        str(p), f"stores its pixels as {syntax_name}, which needs the decoder package '{package}' (not installed"
                f"{detail}). Install the DICOM decoders with `pip install \"coreecho[dicom]\"` (in a clone: `pip "
                f"install -e \".[dicom]\"`), or `pip install {package}`.",
        package=package, extra="dicom")


def check_decoder(p: Path, uid: str, syntax_name: str) -> None:
    """Raise before anything is decoded when transfer syntax ``uid`` cannot be decoded here: a
    :class:`~coreecho.errors.DecoderMissingError` naming the package and the ``dicom`` extra, or a
    :class:`~coreecho.errors.VideoReadError` for a syntax nothing decodes."""
    from pydicom.uid import UID  # noqa: PLC0415

    fmt = video_format(uid)
    if fmt is not None:
        import importlib.util  # noqa: PLC0415

        if importlib.util.find_spec("av") is None:
            raise _missing(p, syntax_name, "av", "; PyAV decodes MPEG-2/H.264/HEVC cines")
        return
    if not UID(uid).is_transfer_syntax:  # a private or mistyped UID: pydicom would raise a bare ValueError
        raise VideoReadError(str(p), f"names TransferSyntaxUID {uid!r}, which is not a DICOM transfer syntax; "
                                     "the file meta information is damaged - export the cine again")
    if not UID(uid).is_compressed:
        return
    try:
        from pydicom.pixels import get_decoder  # noqa: PLC0415  (pydicom >= 3)
    except ImportError:  # pragma: no cover - pydicom 2.x reports missing handlers when decoding
        return
    try:
        decoder = get_decoder(UID(uid))
    except NotImplementedError as exc:
        raise VideoReadError(str(p), f"stores its pixels as {syntax_name}, which no installed decoder reads; "
                                     "export the cine uncompressed, as JPEG / JPEG-LS / JPEG 2000 / RLE DICOM, as "
                                     "an MPEG-2/H.264/HEVC DICOM, or as an MP4/AVI video") from exc
    if not decoder.is_available:
        options = "; ".join(f"{k}: {', '.join(v)}" for k, v in decoder.missing_dependencies.items()) \
            if isinstance(decoder.missing_dependencies, dict) else "; ".join(decoder.missing_dependencies)
        raise _missing(p, syntax_name, decoder_package(uid), f"; pydicom's plugins for it need: {options}")


def _fragments(p: Path, pixel_data: bytes) -> bytes:
    """The concatenated fragments of encapsulated pixel data (one video elementary stream)."""
    from pydicom.encaps import generate_fragments  # noqa: PLC0415

    try:
        frags = list(generate_fragments(pixel_data))
    except Exception as exc:  # noqa: BLE001 - pydicom raises several kinds on broken item tags
        raise VideoReadError(str(p), f"its encapsulated PixelData cannot be parsed ({type(exc).__name__}: "
                                     f"{str(exc)[:200]})") from exc
    stream = b"".join(frags[1:])  # the first item is the basic offset table (usually empty for video)
    if not stream:
        raise VideoReadError(str(p), "its encapsulated PixelData holds no video stream; the file is truncated or "
                                     "empty; export it again")
    return stream


def decode_video_stream(p: Path, pixel_data: bytes, fmt: str, wanted: np.ndarray, n_frames: int, rows: int,
                        columns: int) -> np.ndarray:
    """Frames ``wanted`` (sorted, unique, < ``n_frames``) of an MPEG-2/H.264/HEVC elementary stream, as uint8 RGB
    ``[len(wanted), rows, columns, 3]``.

    Decoding stops after the last wanted frame; each decoded picture's size is checked against the header before it
    is converted, so a stream that lies costs one frame, not gigabytes.

    Raises:
        VideoReadError: the stream cannot be decoded, holds fewer frames than needed, or its pictures are not
            ``rows`` x ``columns``.
    """
    import av  # noqa: PLC0415

    src = str(p)
    stream = _fragments(p, pixel_data)
    last = int(wanted[-1]) if len(wanted) else -1
    keep = set(int(i) for i in wanted)
    out = np.empty((len(wanted), rows, columns, 3), np.uint8)
    got = 0
    index = -1
    try:
        with av.open(io.BytesIO(stream), format=fmt) as container:
            vs = container.streams.video[0]
            for frame in container.decode(vs):
                index += 1
                if frame.height != rows or frame.width != columns:
                    raise VideoReadError(src, f"its {fmt} stream has pictures of {frame.height}x{frame.width}, but "
                                              f"the header declares Rows x Columns = {rows}x{columns}")
                if index in keep:
                    out[got] = frame.to_ndarray(format="rgb24")
                    got += 1
                if index >= last or index + 1 >= n_frames:
                    break
    except VideoReadError:
        raise
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - PyAV/FFmpeg raise many kinds on broken streams
        raise VideoReadError(src, f"its {fmt} video stream cannot be decoded ({type(exc).__name__}: "
                                  f"{str(exc)[:200]})") from exc
    if got < len(wanted):
        raise VideoReadError(src, f"is truncated: NumberOfFrames = {n_frames}, but its {fmt} stream holds only "
                                  f"{index + 1} frames (frame {int(wanted[got])} was asked for); export it again")
    return out


def video_info(fmt: str) -> dict[str, Any]:
    """Metadata the reader reports for an encapsulated video."""
    return {"video_codec": {"mpegvideo": "MPEG-2", "h264": "H.264", "hevc": "HEVC"}.get(fmt, fmt)}
