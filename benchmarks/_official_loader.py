"""Official-style data loading, written from the description of the CoReEcho research code, for benchmark baselines.

What the research code's EchoNet datasets do for every item, and what this module repeats:

* **whole-video decode**: every frame of the AVI is decoded to RGB uint8 ``(F, H, W, 3)`` (the research code uses
  OpenCV; OpenCV is not installed here, so PyAV decodes every frame instead, the same idiom as the naive rows of
  ``bench_io.py``), transposed to ``(3, F, H, W)`` and the *whole video* converted to float32;
* **clip sampling**: zero-padded at the end to ``frames * stride`` frames when shorter, one start drawn uniformly
  from the valid ones (training) or given (test), the clip taken by fancy indexing;
* **augmentation, albumentations-style** (training): the float clip goes back to uint8 ``(T, H, W, 3)``, every
  frame is zero-padded to ``size + pad`` (``PadIfNeeded``: centred) and cropped back to ``size`` at one random
  offset shared by all frames of the clip (``RandomCrop`` with the frames as additional targets), frame by frame,
  then concatenated and converted to float32 again;
* **normalisation on the CPU**, in place: ``(x - mean) / std`` per channel, in float32;
* **stage 1 reads each video twice per item** (two views: the whole item computed twice, decode included).

Nothing is imported from the research code or from albumentations; the functions below are written for timing and
produce the same kind of arrays (checked by ``bench_loader.py``, which prints their shapes next to coreecho's).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

__all__ = ["read_all_frames", "load_float_video", "sample_clips", "albumentations_pad_crop", "normalize_inplace",
           "OfficialStage1Dataset", "official_test_clips"]


def read_all_frames(path: str | os.PathLike) -> np.ndarray:
    """Every frame of a video as RGB uint8 ``(F, H, W, 3)``: the usual PyAV idiom, one ``to_ndarray`` per frame."""
    import av  # noqa: PLC0415

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def load_float_video(path: str | os.PathLike) -> np.ndarray:
    """The whole video as float32 ``(3, F, H, W)`` (decode everything, transpose, convert everything)."""
    return read_all_frames(path).transpose(3, 0, 1, 2).astype(np.float32)


def sample_clips(video: np.ndarray, starts: Sequence[int] | None, frames: int, stride: int,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Clips ``(K, 3, T, H, W)`` of a ``(3, F, H, W)`` video: end zero-padding to ``frames * stride``, then the
    given starts, or one start drawn with ``rng``."""
    c, f, h, w = video.shape
    if f < frames * stride:
        video = np.concatenate((video, np.zeros((c, frames * stride - f, h, w), video.dtype)), axis=1)
        f = video.shape[1]
    if starts is None:
        starts = [int(rng.integers(0, f - (frames - 1) * stride))]
    return np.stack([video[:, s + stride * np.arange(frames)] for s in starts])


def albumentations_pad_crop(clip: np.ndarray, size: int, padded: int, rng: np.random.Generator) -> np.ndarray:
    """Pad every frame to ``padded`` (zeros, centred) and crop ``size`` at one random offset, frame by frame.

    ``clip`` is float32 ``(3, T, H, W)``; like the research code this goes through uint8 ``(T, H, W, 3)`` and back.
    """
    frames_u8 = clip.transpose(1, 2, 3, 0).astype(np.uint8)
    t, h, w, c = frames_u8.shape
    top, left = (padded - h) // 2, (padded - w) // 2
    i, j = int(rng.integers(0, padded - size + 1)), int(rng.integers(0, padded - size + 1))
    out = []
    for frame in frames_u8:  # one "image target" after another
        canvas = np.zeros((padded, padded, c), np.uint8)
        canvas[top:top + h, left:left + w] = frame
        out.append(canvas[i:i + size, j:j + size][None])
    return np.concatenate(out, axis=0).astype(np.float32).transpose(3, 0, 1, 2)


def normalize_inplace(video: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``video -= mean; video /= std`` per channel (channel axis ``-4``: ``(3, T, H, W)`` or ``(K, 3, T, H, W)``),
    in place, float32."""
    video -= np.asarray(mean).reshape(3, 1, 1, 1)
    video /= np.asarray(std).reshape(3, 1, 1, 1)
    return video


class OfficialStage1Dataset:
    """Stage-1 items the research code's way: ``(view1, view2)``, each a full read of the video.

    Args:
        paths: the AVIs.
        labels: their EFs.
        frames, stride, size: clip length, frame step, side.
        padded: ``PadIfNeeded`` side (official: 124 for 112 px clips).
        mean, std: per-channel normalisation (0–255 units).
        seed: seed of the random starts and crops.
    """

    def __init__(self, paths: Sequence[Any], labels: Sequence[float], *, frames: int = 36, stride: int = 4,
                 size: int = 112, padded: int = 124, mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0), seed: int = 0):
        self.paths, self.labels = list(paths), [float(v) for v in labels]
        self.frames, self.stride, self.size, self.padded = frames, stride, size, padded
        self.mean, self.std = mean, std
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.paths)

    def view(self, index: int) -> dict[str, Any]:
        """One view: whole decode to float32, random clip, pad-and-crop, normalise."""
        video = load_float_video(self.paths[index])
        clip = sample_clips(video, None, self.frames, self.stride, self.rng)[0]
        clip = albumentations_pad_crop(clip, self.size, self.padded, self.rng)
        return {"image": normalize_inplace(clip, self.mean, self.std),
                "label": np.array([self.labels[index]], np.float32)}

    def __getitem__(self, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.view(index), self.view(index)


def official_test_clips(path: str | os.PathLike, starts: Sequence[int], *, frames: int = 36, stride: int = 4,
                        mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Normalised float32 test clips ``(K, 3, T, H, W)`` the research code's way (whole decode, float32, slice)."""
    clips = sample_clips(load_float_video(path), starts, frames, stride)
    return normalize_inplace(clips, mean, std)
