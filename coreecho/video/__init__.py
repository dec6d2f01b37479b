"""Video input for coreecho: reading files and arrays, preprocessing frames, and sampling clips.

* :func:`open_video` - one reader per source (PyAV, decord, DICOM, ``.npy``, arrays): ``reader.info`` is probed
  once, ``reader.read(indices)`` decodes only those frames; every size is checked against :class:`Limits` first.
* :mod:`coreecho.video.io` - :func:`read_video` (AVI/MP4/MOV/MKV/GIF via PyAV or decord, DICOM via pydicom,
  ``.npy``), :func:`probe_video`, :func:`as_frames` for in-memory arrays and tensors, :func:`write_video`.
* :mod:`coreecho.video.transforms` - to RGB, ultrasound sector crop, pad, resize to 112, normalise, fps.
* :mod:`coreecho.video.sampling` - training and test clip starts, clip extraction with zero padding, and
  :func:`read_clips`, which decodes only the frames the clips need.

Heavy decoders (PyAV, decord, pydicom) and torch are imported only when a function needs them.

Example:
    >>> import numpy as np
    >>> from coreecho.video import extract_clips, test_starts
    >>> frames = np.zeros((150, 112, 112, 3), np.uint8)
    >>> extract_clips(frames, test_starts(150)).shape
    (3, 36, 112, 112, 3)
"""

from coreecho.video.base import VideoReader
from coreecho.video.io import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SIDE,
    Video,
    VideoInfo,
    as_frames,
    load_video,
    probe_video,
    read_video,
    write_video,
)
from coreecho.video.limits import DEFAULT_LIMITS, Limits
from coreecho.video.readers import open_video
from coreecho.video.sampling import (
    clip_indices,
    extract_clips,
    max_start,
    padded_length,
    read_clips,
    test_starts,
    train_start,
)
from coreecho.video.transforms import (
    ECHONET_MEAN,
    ECHONET_STD,
    crop_sector,
    find_sector_bbox,
    normalize,
    pad_to_square,
    prepare_frames,
    resample_fps,
    resample_indices,
    resize_frames,
    to_rgb,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SIDE",
    "ECHONET_MEAN",
    "ECHONET_STD",
    "Limits",
    "Video",
    "VideoInfo",
    "VideoReader",
    "as_frames",
    "clip_indices",
    "crop_sector",
    "extract_clips",
    "find_sector_bbox",
    "load_video",
    "max_start",
    "normalize",
    "open_video",
    "pad_to_square",
    "padded_length",
    "prepare_frames",
    "probe_video",
    "read_clips",
    "read_video",
    "resample_fps",
    "resample_indices",
    "resize_frames",
    "test_starts",
    "to_rgb",
    "train_start",
    "write_video",
]
