"""Video-container backends: PyAV (FFmpeg) and decord, each with a cheap probe and a selective decoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coreecho.errors import VideoReadError
from coreecho.video.base import VideoInfo, _missing

# ----------------------------------------------------------------------------------------------------------
# video containers: PyAV


def _import_av(source: str):
    try:
        import av  # noqa: PLC0415 - lazy on purpose
    except ImportError as exc:
        raise _missing("av", None, f"Reading {source}", "Install it with `pip install av` (PyAV).") from exc
    return av


def _av_open(path: Path):
    av = _import_av(str(path))
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise VideoReadError(str(path), f"is not a readable video file (FFmpeg: {exc.strerror or exc}); "
                                        "check that it is a complete AVI/MP4/MOV/MKV/DICOM file") from exc
    if not container.streams.video:
        container.close()
        raise VideoReadError(str(path), "contains no video stream")
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


def _av_probe(path: Path) -> _AvProbe:
    av = _import_av(str(path))
    container = _av_open(path)
    try:
        stream = container.streams.video[0]
        declared = int(stream.frames or 0)
        codec = stream.codec_context.codec
        n = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    n += 1
        except av.error.FFmpegError as exc:
            raise VideoReadError(str(path), f"the container is corrupt after {n} frames (FFmpeg: {exc.strerror or exc})") from exc
        info = _AvProbe(n, declared, _av_fps(stream), int(stream.codec_context.height),
                        int(stream.codec_context.width), codec.name, bool(getattr(codec, "intra_only", False)))
    finally:
        container.close()
    if info.n_frames == 0:
        raise VideoReadError(str(path), "contains no frames (0-frame video)")
    if info.declared and info.n_frames < info.declared:
        raise VideoReadError(
            str(path),
            f"is truncated: its header declares {info.declared} frames but only {info.n_frames} are present; "
            "the file was probably cut off while copying or writing - copy or export it again",
        )
    if info.height <= 0 or info.width <= 0:
        raise VideoReadError(str(path), f"has an invalid frame size {info.height}x{info.width}")
    return info


def _av_decode(path: Path, probe: _AvProbe, wanted: np.ndarray) -> np.ndarray:
    """Decode the sorted unique frame numbers ``wanted`` with PyAV."""
    av = _import_av(str(path))
    try:
        from av.video.reformatter import VideoReformatter  # noqa: PLC0415

        reformatter = VideoReformatter()

        def to_rgb(frame) -> np.ndarray:
            return reformatter.reformat(frame, format="rgb24").to_ndarray()
    except ImportError:  # pragma: no cover - very old PyAV

        def to_rgb(frame) -> np.ndarray:
            return frame.to_ndarray(format="rgb24")

    out = np.empty((len(wanted), probe.height, probe.width, 3), dtype=np.uint8)
    if len(wanted) == 0:
        return out
    need = {int(i): k for k, i in enumerate(wanted)}
    last = int(wanted[-1])
    got = 0
    container = _av_open(path)
    try:
        stream = container.streams.video[0]
        if probe.intra_only:
            # every packet is a whole frame: decode only the packets of the wanted frames
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
                        raise VideoReadError(str(path), f"frame {i} could not be decoded (corrupt or truncated data)")
                    _store(out, need[i], to_rgb(frames[0]), path, i)
                    got += 1
                if i >= last:
                    break
                i += 1
        else:
            for i, frame in enumerate(container.decode(stream)):
                if i in need:
                    _store(out, need[i], to_rgb(frame), path, i)
                    got += 1
                if i >= last:
                    break
    except av.error.FFmpegError as exc:
        raise VideoReadError(str(path), f"decoding failed after {got} frames (FFmpeg: {exc.strerror or exc}); "
                                        "the file is corrupt or truncated") from exc
    finally:
        container.close()
    if got != len(wanted):
        raise VideoReadError(str(path), f"only {got} of the {len(wanted)} requested frames could be decoded "
                                        "(the file is corrupt or truncated)")
    return out


def _store(out: np.ndarray, k: int, rgb: np.ndarray, path: Path, i: int) -> None:
    if rgb.shape != out.shape[1:]:
        raise VideoReadError(str(path), f"frame {i} is {rgb.shape[1]}x{rgb.shape[0]}, unlike the first frame "
                                        f"({out.shape[2]}x{out.shape[1]}); videos that change size are not supported")
    out[k] = rgb


# ----------------------------------------------------------------------------------------------------------
# video containers: decord


def _import_decord(source: str):
    try:
        import decord  # noqa: PLC0415
    except ImportError as exc:
        raise _missing(
            "decord", None, f"Reading {source} with backend='decord'",
            "It has wheels for x86-64 Linux and Windows only (`pip install decord`); "
            "elsewhere use backend='pyav' or 'auto'.",
        ) from exc
    return decord


def _decord_open(path: Path):
    decord = _import_decord(str(path))
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as exc:  # noqa: BLE001 - decord raises its own DECORDError/RuntimeError
        raise VideoReadError(str(path), f"is not a readable video file (decord: {str(exc).splitlines()[0][:200]})") from exc


def _frame_size_without_decoding(path: Path) -> tuple[int, int] | None:
    """Frame size from the container header via PyAV (no decoding), or None when PyAV cannot tell."""
    try:
        import av  # noqa: PLC0415

        with av.open(str(path)) as container:
            if container.streams.video:
                cc = container.streams.video[0].codec_context
                if cc.height > 0 and cc.width > 0:
                    return int(cc.height), int(cc.width)
    except Exception:  # noqa: BLE001 - only a shortcut; decord decodes a frame otherwise
        return None
    return None


def _decord_probe(path: Path, vr=None) -> tuple[VideoInfo, Any]:
    vr = _decord_open(path) if vr is None else vr
    n = len(vr)
    if n == 0:
        raise VideoReadError(str(path), "contains no frames (0-frame video)")
    fps = float(vr.get_avg_fps())
    size = _frame_size_without_decoding(path)
    if size is None:
        try:
            size = tuple(vr[0].shape[:2])
            vr.seek(0)
        except Exception as exc:  # noqa: BLE001
            raise VideoReadError(str(path), f"decord cannot decode its first frame: {str(exc).splitlines()[0][:200]}") from exc
    info = VideoInfo(str(path), n, fps if np.isfinite(fps) and fps > 0 else None, int(size[0]), int(size[1]), "video", "")
    return info, vr


def _decord_decode(path: Path, vr, wanted: np.ndarray, height: int, width: int) -> np.ndarray:
    """Decode sorted unique ``wanted`` frames.

    decord's ``get_batch`` seeks for every non-consecutive index, which is slow on intra-only codecs, so
    nearby indices are grouped into runs decoded contiguously (a run is capped at 256 MiB of frames).
    """
    out = np.empty((len(wanted), height, width, 3), dtype=np.uint8)
    k = 0
    runs: list[list[int]] = []
    max_span = max(1, (256 * 1024**2) // (height * width * 3))  # a decoded run stays under 256 MiB
    for i in wanted.tolist():
        if runs and i - runs[-1][-1] <= 8 and i - runs[-1][0] < max_span:
            runs[-1].append(i)
        else:
            runs.append([i])
    try:
        for run in runs:
            block = vr.get_batch(list(range(run[0], run[-1] + 1))).asnumpy()
            sel = block[np.asarray(run) - run[0]]
            if sel.shape[1:] != out.shape[1:]:
                raise VideoReadError(str(path), f"frames change size ({sel.shape[1:3]} vs {out.shape[1:3]})")
            out[k:k + len(run)] = sel
            k += len(run)
    except VideoReadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise VideoReadError(str(path), f"decoding failed after {k} frames (decord: {str(exc).splitlines()[0][:200]})") from exc
    return out
