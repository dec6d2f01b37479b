"""Video input for coreecho: from a file or an array to the tensor a model sees, one way.

* :class:`ClipPipeline` (:mod:`coreecho.video.pipeline`) - **the** recipe for model input: reader → sampler →
  decode only the needed frames → fan crop, square pad, resize → clips → (training) augmentation → normalise
  → ``[K, 3, T, S, S]``. Get the one that matches a model's weights with ``model.pipeline()``.
* :func:`open_video` (:mod:`coreecho.video.readers`) - one reader per source (PyAV, decord, DICOM, ``.npy``,
  arrays): ``reader.info`` is probed once, ``reader.read(indices)`` decodes only those frames; every size is
  checked against :class:`Limits` first. :func:`read_video`, :func:`probe_video`, :func:`load_video`,
  :func:`as_frames` and :func:`write_video` (:mod:`coreecho.video.io`) wrap it.
* :mod:`coreecho.video.sampling` - clip sampling in one module: start policies (:func:`test_starts`,
  :func:`train_start`), samplers (:class:`EvenClips`, :class:`RandomClips`, :class:`FixedStarts`,
  :class:`AllClips`, :class:`EveryStart`, :class:`WholeSequence`) and :func:`as_sampler`.
* :mod:`coreecho.video.transforms` - the pipeline's pixel steps (to RGB, sector crop, pad, resize, normalise, fps);
  :mod:`coreecho.video.augment` - its training augmentation; :mod:`coreecho.video.clips` - raw uint8 clips for
  tools and benchmarks (not model input).

Names are imported on first use, so ``import coreecho.video`` is cheap; heavy decoders (PyAV, decord, pydicom)
and torch are imported only when a function needs them. ``read_clips``, ``extract_clips``, ``prepare_frames`` and
``normalize`` are deprecated here (they skip parts of the pipeline); they live on in their modules.

Example:
    >>> import numpy as np
    >>> from coreecho.models.config import PreprocessConfig
    >>> from coreecho.video import ClipPipeline
    >>> batch = ClipPipeline(PreprocessConfig(frames=8, stride=2, size=32))(np.zeros((40, 64, 48), np.uint8), 2)
    >>> batch.x.shape, batch.starts
    (torch.Size([2, 3, 8, 32, 32]), [0, 25])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coreecho._deprecation import deprecated_aliases
from coreecho._lazy import lazy_exports

_IO = "coreecho.video.io"
_SAMPLING = "coreecho.video.sampling"
_TRANSFORMS = "coreecho.video.transforms"
_LAZY = {
    "ClipPipeline": "coreecho.video.pipeline",
    "ClipBatch": "coreecho.video.pipeline",
    "open_video": "coreecho.video.readers",
    "READABLE_EXTENSIONS": "coreecho.video.limits",
    "VideoReader": "coreecho.video.base",
    "Limits": "coreecho.video.limits",
    "DEFAULT_LIMITS": "coreecho.video.limits",
    "MAX_CLIPS": "coreecho.video.limits",
    **{name: _IO for name in ("DEFAULT_MAX_BYTES", "DEFAULT_MAX_SIDE", "Video", "VideoInfo", "as_frames",
                               "load_video", "probe_video", "read_video", "write_video")},
    **{name: _SAMPLING for name in ("clip_indices", "max_start", "padded_length", "test_starts", "train_start",
                                     "ClipPlan", "Sampler", "EvenClips", "RandomClips", "FixedStarts", "AllClips",
                                     "EveryStart", "WholeSequence", "as_sampler")},
    **{name: _TRANSFORMS for name in ("crop_sector", "find_sector_bbox", "pad_to_square", "resample_fps",
                                       "resample_indices", "resize_frames", "to_rgb")},
    "ECHONET_MEAN": "coreecho.constants",
    "ECHONET_STD": "coreecho.constants",
}

#: Alternative recipes that skip parts of the pipeline (fan context, fps policy, batch limit): deprecated here.
_DEPRECATED = {
    "read_clips": "coreecho.video.clips",
    "extract_clips": "coreecho.video.clips",
    "prepare_frames": _TRANSFORMS,
    "normalize": _TRANSFORMS,
}
_HINT = "Model input comes from ClipPipeline (model.pipeline()), which this skips parts of; see docs/input-formats.md"

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from coreecho.constants import ECHONET_MEAN, ECHONET_STD
    from coreecho.video.base import VideoReader
    from coreecho.video.io import (DEFAULT_MAX_BYTES, DEFAULT_MAX_SIDE, Video, VideoInfo, as_frames, load_video,
                                   probe_video, read_video, write_video)
    from coreecho.video.limits import DEFAULT_LIMITS, MAX_CLIPS, READABLE_EXTENSIONS, Limits
    from coreecho.video.pipeline import ClipBatch, ClipPipeline
    from coreecho.video.readers import open_video
    from coreecho.video.sampling import (AllClips, ClipPlan, EvenClips, EveryStart, FixedStarts, RandomClips, Sampler,
                                         WholeSequence, as_sampler, clip_indices, max_start, padded_length,
                                         test_starts, train_start)
    from coreecho.video.transforms import (crop_sector, find_sector_bbox, pad_to_square, resample_fps,
                                           resample_indices, resize_frames, to_rgb)

_lazy_getattr, __dir__ = lazy_exports(__name__, _LAZY)
__getattr__ = deprecated_aliases(__name__, _DEPRECATED, hints=dict.fromkeys(_DEPRECATED, _HINT),
                                 fallback=_lazy_getattr)
