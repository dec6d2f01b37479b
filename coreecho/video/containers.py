"""Video-container readers: :class:`PyAVReader` (FFmpeg through PyAV) and :class:`DecordReader`.

Both refuse files whose container is not a video: FFmpeg opens text (``tty``), subtitle (``srt``...) and
single-image (``png_pipe``...) files as "videos"; only the formats of :data:`VIDEO_FORMATS` (and image
sequences of at least 2 images) are accepted. Opening counts the packets once (stopping at
``limits.max_frames + 1``); reading decodes only what the requested frames need and refuses, frame by frame,
any frame whose size differs from the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from coreecho.errors import VideoReadError
from coreecho.video.base import VideoInfo, VideoReader, missing_dependency
from coreecho.video.limits import Limits, check_frame_count, check_frame_size
from coreecho.video.mjpeg import MjpegSizes

__all__ = ["PyAVReader", "DecordReader", "VIDEO_FORMATS", "IMAGE_FORMATS"]

#: FFmpeg demuxer names accepted as video containers.
VIDEO_FORMATS: frozenset[str] = frozenset({
    "avi", "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "gif", "apng", "mpeg", "mpegts",
    "mpegvideo", "asf", "flv", "ogg", "nut", "mxf", "dv", "mjpeg", "h264", "hevc", "m4v", "yuv4mpegpipe",
    "ivf", "obu", "rm", "wtv", "dicom",
})
#: Image demuxers: accepted only as sequences of 2 or more images (one image is not a video).
IMAGE_FORMATS: frozenset[str] = frozenset({"image2", "image2pipe", "png_pipe", "jpeg_pipe", "jpegls_pipe", "bmp_pipe",
                                           "tiff_pipe", "webp_pipe", "j2k_pipe", "gif_pipe", "dpx_pipe", "pgm_pipe",
                                           "ppm_pipe"})
_ACCEPTED = "AVI, MP4/MOV, MKV/WebM, GIF, MPEG, ASF/WMV, FLV, OGG, MXF, DICOM or a multi-image sequence"


class _CannotOpen(VideoReadError):
    """The backend cannot open or identify the file at all (``backend="auto"`` may try another one)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _check_format(source: str, names: str, long_name: str, n_images: int | None = None) -> None:
    """Refuse containers that are not video: text, HTML, subtitles, audio, one image."""
    parts = set(names.split(","))
    what = f"'{names}' ({long_name})" if long_name else f"'{names}'"
    if parts & VIDEO_FORMATS:
        return
    if parts & IMAGE_FORMATS or any(p.endswith("_pipe") for p in parts):
        if n_images is None or n_images >= 2:
            return
        raise VideoReadError(source, f"container: FFmpeg reads it as a single image {what}, not a video; "
                                     f"expected {_ACCEPTED}")
    raise VideoReadError(source, f"container: FFmpeg reads it as {what}, which is not a video container (text, "
                                 f"HTML, subtitle and audio files are refused); expected {_ACCEPTED}")


def _sniff(path: Path) -> str | None:
    """What the first bytes say the file is, when that is certainly not a video (used before decord)."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    for magic, kind in ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                        (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"BM", "a BMP image")):
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head and b"\x00" not in head:
        text = ""
        for cut in range(4):  # the 4096-byte window may end inside a multi-byte character
            try:
                text = head[:len(head) - cut].decode("utf-8")
                break
            except UnicodeDecodeError:
                continue
        if text and sum(c.isprintable() or c in "\r\n\t" for c in text) >= 0.95 * len(text):
            low = text.lstrip().lower()
            return "an HTML file" if low.startswith(("<!doctype html", "<html")) else "a text file"
    return None


# ----------------------------------------------------------------------------------------------------------
# PyAV


def import_av(source: str):
    try:
        import av  # noqa: PLC0415 - lazy on purpose
    except ImportError as exc:
        raise missing_dependency("av", None, f"Reading {source}", "Install it with `pip install av` (PyAV).") from exc
    return av


def _av_open(path: Path):
    """Open with FFmpeg and check the container format; :class:`_CannotOpen` when FFmpeg cannot open it."""
    av = import_av(str(path))
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise _CannotOpen(str(path), f"is not a readable video file (FFmpeg: {exc.strerror or exc}); "
                                     "check that it is a complete AVI/MP4/MOV/MKV/DICOM file") from exc
    try:
        fmt = container.format
        _check_format(str(path), fmt.name, getattr(fmt, "long_name", "") or "", n_images=None)
        if not container.streams.video:
            raise VideoReadError(str(path), "contains no video stream")
    except BaseException:
        container.close()
        raise
    return container


def _av_fps(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0:
            return float(rate)
    return None


@dataclass
class _AvProbe:
    n_frames: int
    declared: int
    fps: float | None
    height: int
    width: int
    codec: str
    intra_only: bool
    format: str


#: Compressed bytes of MJPEG packets a :class:`PyAVReader` keeps from its opening pass, so that ``read`` decodes
#: them without opening and demuxing the file again; a larger file is demuxed again instead.
KEEP_PACKET_BYTES = 32 * 1024**2


def _av_probe(container, path: Path, limits: Limits, keep: list | None = None) -> _AvProbe:
    """Count the packets of an opened container (no decoding), once; stops at ``limits.max_frames + 1``.

    ``keep``: a list that receives the MJPEG packets (in order) while their bytes stay under
    :data:`KEEP_PACKET_BYTES`; it is emptied (and the rest not kept) when they do not."""
    av = import_av(str(path))
    src = str(path)
    stream = container.streams.video[0]
    cc = stream.codec_context
    check_frame_size(src, int(cc.height), int(cc.width), limits, field="frame size (container header)",
                     error=VideoReadError)
    n = 0
    mjpeg = cc.name == "mjpeg"
    if not mjpeg:
        keep = None
    sizes = MjpegSizes(src)
    kept = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                if mjpeg:  # every MJPEG packet states its frame size: refuse size changes without decoding
                    sizes.check(memoryview(packet), n)
                    if keep is not None:
                        kept += packet.size
                        if kept <= KEEP_PACKET_BYTES:
                            keep.append(packet)
                        else:
                            keep.clear()
                            keep = None
                n += 1
                if n > limits.max_frames:
                    check_frame_count(src, n, limits, field=f"frame count (more than {limits.max_frames} packets)",
                                      error=VideoReadError)
    except av.error.FFmpegError as exc:
        raise VideoReadError(src, f"the container is corrupt after {n} frames (FFmpeg: {exc.strerror or exc})") from exc
    codec = cc.codec
    info = _AvProbe(n, int(stream.frames or 0), _av_fps(stream), int(cc.height), int(cc.width), codec.name,
                    bool(getattr(codec, "intra_only", False)), container.format.name)
    _check_format(src, info.format, getattr(container.format, "long_name", "") or "", n_images=n)
    if n == 0:
        raise VideoReadError(src, "contains no frames (0-frame video)")
    if info.declared and n < info.declared:
        raise VideoReadError(src, f"is truncated: its header declares {info.declared} frames but only {n} are "
                                  "present; the file was probably cut off while copying or writing - copy or "
                                  "export it again")
    return info


def _store(out: np.ndarray, k: int, frame, to_rgb, source: str, i: int) -> None:
    """Convert decoded frame ``i`` into row ``k`` of ``out``; refuse it (before converting) if its size differs."""
    h, w = out.shape[1:3]
    if (frame.height, frame.width) != (h, w):
        raise VideoReadError(source, f"frame {i} size is {frame.height}x{frame.width}, unlike the first frame "
                                     f"({h}x{w}); videos that change size mid-stream are not supported - export "
                                     "it again at one size")
    out[k] = to_rgb(frame)


@lru_cache(maxsize=1)
def _reformat_threads(av) -> dict:
    """``threads=1`` for swscale where this PyAV takes it: its default (one thread per CPU) costs more than the
    conversion of a small frame (about 3x on 112x112 frames), for the same pixels."""
    from av.video.reformatter import VideoReformatter  # noqa: PLC0415

    try:
        VideoReformatter().reformat(av.VideoFrame(16, 16, "yuv420p"), format="rgb24", threads=1)
    except TypeError:  # pragma: no cover - PyAV < 14
        return {}
    return {"threads": 1}


def _rgb_converter(av):
    """frame → uint8 RGB ``[H, W, 3]`` with one reformatter for a whole read."""
    try:
        from av.video.reformatter import VideoReformatter  # noqa: PLC0415
    except ImportError:  # pragma: no cover - very old PyAV
        return lambda frame: frame.to_ndarray(format="rgb24")
    reformatter, options = VideoReformatter(), _reformat_threads(av)
    return lambda frame: reformatter.reformat(frame, format="rgb24", **options).to_ndarray()


class PyAVReader(VideoReader):
    """A video container read with PyAV (FFmpeg).

    Opening checks the container format, the frame size and counts the packets (one pass, no decoding).
    ``read`` decodes only the packets of the requested frames for intra-only codecs (MJPEG, the codec of
    EchoNet-style AVIs), otherwise sequentially up to the last requested frame. An MJPEG file's packets (up to
    :data:`KEEP_PACKET_BYTES`) are kept from the opening pass with the open file until :meth:`close`, so its reads
    neither open nor demux it again; colour conversion runs on one thread (the same pixels, less CPU time).
    """

    backend = "pyav"

    def __init__(self, path: Path, limits: Limits):
        super().__init__(str(path), limits)
        self._path = path
        container = _av_open(path)
        packets: list = []
        try:
            self._probe = _av_probe(container, path, limits, keep=packets)
        except BaseException:
            container.close()
            raise
        # MJPEG (every frame one packet, decoded on its own): the packets of the opening pass are kept with the open
        # container, and ``read`` decodes the wanted ones with the stream's own decoder (no second open or demux)
        self._packets, self._container = (packets, container) if packets and self._probe.intra_only else (None, None)
        if self._container is None:
            container.close()
        pr = self._probe
        self.info = VideoInfo(str(path), pr.n_frames, pr.fps, pr.height, pr.width, "video", pr.codec, "pyav")
        self.metadata = {"codec": pr.codec, "container": pr.format}

    def _read_sorted(self, wanted: np.ndarray) -> np.ndarray:
        av = import_av(self.source)
        path, info, src = self._path, self.info, self.source
        to_rgb = _rgb_converter(av)

        out = np.empty((len(wanted), info.height, info.width, 3), dtype=np.uint8)
        if self._packets is not None:
            return self._decode_kept(wanted, out, to_rgb)
        need = {int(i): k for k, i in enumerate(wanted)}
        last = int(wanted[-1])
        got = 0
        try:
            container = av.open(str(path), mode="r")
        except av.error.FFmpegError as exc:
            raise VideoReadError(src, f"cannot be opened again for reading (FFmpeg: {exc.strerror or exc})") from exc
        try:
            stream = container.streams.video[0]
            if self._probe.intra_only:
                ctx = stream.codec_context
                try:
                    ctx.thread_type = "SLICE"  # no frame threading: one packet in, one frame out
                except Exception:  # noqa: BLE001 - older PyAV: the default is fine
                    pass
                i = 0
                for packet in container.demux(stream):
                    if not packet.size:
                        continue
                    if i in need:
                        frames = ctx.decode(packet)
                        if len(frames) != 1:
                            raise VideoReadError(src, f"frame {i} could not be decoded (corrupt or truncated data)")
                        _store(out, need[i], frames[0], to_rgb, src, i)
                        got += 1
                    if i >= last:
                        break
                    i += 1
            else:
                for i, frame in enumerate(container.decode(stream)):
                    if i in need:
                        _store(out, need[i], frame, to_rgb, src, i)
                        got += 1
                    if i >= last:
                        break
        except av.error.FFmpegError as exc:
            raise VideoReadError(src, f"decoding failed after {got} frames (FFmpeg: {exc.strerror or exc}); "
                                      "the file is corrupt or truncated") from exc
        finally:
            container.close()
        if got != len(wanted):
            raise VideoReadError(src, f"only {got} of the {len(wanted)} requested frames could be decoded "
                                      "(the file is corrupt or truncated)")
        return out

    def _decode_kept(self, wanted: np.ndarray, out: np.ndarray, to_rgb) -> np.ndarray:
        """Decode the kept MJPEG packets of frames ``wanted`` into ``out`` (one packet in, one frame out)."""
        av = import_av(self.source)
        src, packets = self.source, self._packets
        ctx = self._container.streams.video[0].codec_context
        try:
            ctx.thread_type = "SLICE"  # no frame threading: one packet in, one frame out
        except Exception:  # noqa: BLE001 - older PyAV: the default is fine
            pass
        k = 0
        try:
            for k, i in enumerate(wanted.tolist()):
                frames = ctx.decode(packets[i])
                if len(frames) != 1:
                    raise VideoReadError(src, f"frame {i} could not be decoded (corrupt or truncated data)")
                _store(out, k, frames[0], to_rgb, src, i)
        except av.error.FFmpegError as exc:
            raise VideoReadError(src, f"decoding failed after {k} frames (FFmpeg: {exc.strerror or exc}); "
                                      "the file is corrupt or truncated") from exc
        return out

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)  # a copy in another process opens the file again to read
        state["_container"] = state["_packets"] = None
        return state

    def close(self) -> None:
        """Release the file and the kept packets."""
        container, self._container, self._packets = self._container, None, None
        if container is not None:
            container.close()


# ----------------------------------------------------------------------------------------------------------
# decord


def _import_decord(source: str):
    try:
        import decord  # noqa: PLC0415
    except ImportError as exc:
        raise missing_dependency(
            "decord", None, f"Reading {source} with backend='decord'",
            "It has wheels for x86-64 Linux and Windows only (`pip install decord`); "
            "elsewhere use backend='pyav' or 'auto'.",
        ) from exc
    return decord


def _container_check_for_decord(path: Path, limits: Limits) -> None:
    """decord accepts what FFmpeg opens and rescales frames that change size, so check the container first."""
    kind = _sniff(path)
    if kind is not None:
        raise VideoReadError(str(path), f"container: it is {kind}, not a video; expected {_ACCEPTED}")
    try:
        av = import_av(str(path))
    except ImportError:
        return  # without PyAV only the byte signature can be checked
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError:
        return  # decord decides
    try:
        fmt = container.format
        _check_format(str(path), fmt.name, getattr(fmt, "long_name", "") or "", n_images=None)
        if not container.streams.video:
            raise VideoReadError(str(path), "contains no video stream")
        stream = container.streams.video[0]
        if stream.codec_context.name != "mjpeg":
            return
        sizes, n = MjpegSizes(str(path)), 0
        for packet in container.demux(stream):  # every MJPEG packet states its own frame size
            if not packet.size:
                continue
            sizes.check(memoryview(packet), n)
            n += 1
            if n > limits.max_frames:
                check_frame_count(str(path), n, limits, field=f"frame count (more than {limits.max_frames} packets)",
                                  error=VideoReadError)
    except av.error.FFmpegError:
        return
    finally:
        container.close()


class DecordReader(VideoReader):
    """A video container read with decord (``get_batch`` over runs of nearby frames).

    decord silently rescales frames whose size changes mid-stream; this reader refuses such files when
    the change can be seen (MJPEG packets, checked with PyAV when it is installed) and checks the shape of
    every decoded frame.
    """

    backend = "decord"

    def __init__(self, path: Path, limits: Limits):
        super().__init__(str(path), limits)
        decord = _import_decord(str(path))
        _container_check_for_decord(path, limits)
        try:
            vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        except Exception as exc:  # noqa: BLE001 - decord raises its own DECORDError/RuntimeError
            raise _CannotOpen(str(path), f"is not a readable video file (decord: {_first_line(exc)})") from exc
        n = len(vr)
        if n == 0:
            raise VideoReadError(str(path), "contains no frames (0-frame video)")
        check_frame_count(str(path), n, limits, field="frame count", error=VideoReadError)
        try:
            first = vr[0].shape
            vr.seek(0)
        except Exception as exc:  # noqa: BLE001
            raise VideoReadError(str(path), f"decord cannot decode its first frame: {_first_line(exc)}") from exc
        check_frame_size(str(path), int(first[0]), int(first[1]), limits, error=VideoReadError)
        fps = float(vr.get_avg_fps())
        self._vr = vr
        self.info = VideoInfo(str(path), n, fps if np.isfinite(fps) and fps > 0 else None, int(first[0]),
                              int(first[1]), "video", "", "decord")

    def _read_sorted(self, wanted: np.ndarray) -> np.ndarray:
        """decord's ``get_batch`` seeks for every non-consecutive index, which is slow on intra-only codecs, so
        nearby indices are grouped into runs decoded contiguously (a run is capped at 256 MiB of frames)."""
        h, w = self.info.height, self.info.width
        out = np.empty((len(wanted), h, w, 3), dtype=np.uint8)
        k = 0
        runs: list[list[int]] = []
        max_span = max(1, (256 * 1024**2) // (h * w * 3))
        for i in wanted.tolist():
            if runs and i - runs[-1][-1] <= 8 and i - runs[-1][0] < max_span:
                runs[-1].append(i)
            else:
                runs.append([i])
        try:
            for run in runs:
                block = self._vr.get_batch(list(range(run[0], run[-1] + 1))).asnumpy()
                for j, i in enumerate(run):
                    frame = block[i - run[0]]
                    if frame.shape != (h, w, 3):
                        raise VideoReadError(self.source, f"frame {i} size is {frame.shape[0]}x{frame.shape[1]}, "
                                                          f"unlike the first frame ({h}x{w}); videos that change "
                                                          "size mid-stream are not supported")
                    out[k + j] = frame
                k += len(run)
        except VideoReadError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise VideoReadError(self.source, f"decoding failed after {k} frames (decord: {_first_line(exc)})") from exc
        return out

    def close(self) -> None:
        self._vr = None
