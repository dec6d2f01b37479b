"""What the engine runs: :class:`Item` (one video's clips, or its error), made from videos (:class:`VideoItems`) or
from an evaluation-mode dataset (:class:`DatasetItems`), and :class:`EncoderHead`, an encoder and a head seen as
one model.

Example:
    >>> import numpy as np
    >>> from coreecho.models.config import PreprocessConfig
    >>> from coreecho.video.pipeline import ClipPipeline
    >>> pipe = ClipPipeline(PreprocessConfig(frames=4, size=32))
    >>> items = VideoItems([np.zeros((40, 32, 32), np.uint8)], pipe, clips=2)
    >>> items[0].x.shape, items[0].x.dtype, items[0].source
    (torch.Size([2, 4, 32, 32, 3]), torch.uint8, 'item 0')
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from coreecho.errors import CoReEchoError, DatasetError, InputError, VideoReadError

__all__ = ["Item", "VideoItems", "DatasetItems", "EncoderHead", "dataset_settings", "source_name", "item_error",
           "share_clips"]


@dataclass
class Item:
    """One item of an inference stream: its clips (or the error that prevented them) and what is known of it.

    Attributes:
        index: position in the input.
        source: the path, or the name of in-memory input.
        x: the clips: uint8 pixels ``[K, T, S, S, 3]`` with ``norm`` set (what the pipeline's workers hand over, a
            quarter of the float32 bytes; the engine makes the model input where the model runs,
            :func:`coreecho.video.model_input.to_model_input`), or float32 model input ``[K, 3, T, S, S]`` with
            ``norm`` ``None``; ``None`` when ``error`` is set.
        starts: clip starts.
        n_frames: frames in the video.
        fps: its frame rate, or ``None``.
        notes: warnings for the user (issued by the caller's process).
        error: the exception that made the item fail.
        extra: anything the item source wants to carry (e.g. a label).
        norm: ``(mean, std)`` of uint8 ``x``.
        offsets: crop offsets of uint8 ``x`` (int64 ``[K, 2]``, :func:`coreecho.video.augment.draw_offsets`), or
            ``None``.
    """

    index: int
    source: str
    x: torch.Tensor | None = None
    starts: list[int] = field(default_factory=list)
    n_frames: int = 0
    fps: float | None = None
    notes: list[str] = field(default_factory=list)
    error: BaseException | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    offsets: torch.Tensor | None = None

    def pin_memory(self) -> "Item":
        """Called by a pinning DataLoader: the clips in page-locked memory, for a non-blocking copy to the GPU."""
        if self.x is not None and not self.x.is_pinned():
            self.x = self.x.pin_memory()
        return self


def share_clips(x: torch.Tensor) -> torch.Tensor:
    """``x`` in shared memory, as a loader worker hands it over (the same values, shape and dtype; contiguous).

    With torch's ``file_descriptor`` sharing strategy on Linux (the default there), the bytes go into a new
    anonymous memory file with ``write`` calls and the tensor maps that file: the kernel fills the file's pages
    directly, where ``Tensor.share_memory_`` maps a new file first and takes a page fault for every 4 KiB it copies
    in (about twice the CPU time for a 112 px item). Anywhere else, and if the system refuses, it is
    ``share_memory_``. A failure of that raises ``RuntimeError`` (no shared memory to be had).

    Example:
        >>> x = torch.arange(24, dtype=torch.uint8).reshape(2, 3, 4)
        >>> y = share_clips(x)
        >>> torch.equal(x, y), y.is_shared()
        (True, True)
    """
    if x.is_shared():
        return x
    x = x.contiguous()
    size = x.numel() * x.element_size()
    if (size > 0 and hasattr(os, "memfd_create") and x.device.type == "cpu"
            and torch.multiprocessing.get_sharing_strategy() == "file_descriptor"):
        try:
            data = memoryview(x.reshape(-1).view(torch.uint8).numpy())
            fd = os.memfd_create("coreecho-clips", os.MFD_CLOEXEC)
            try:
                os.ftruncate(fd, size)
                done = 0
                while done < len(data):
                    wrote = os.pwrite(fd, data[done:], done)
                    if wrote <= 0:  # never loop on a write that makes no progress: torch's own way instead
                        raise OSError("no progress writing the shared-memory file")
                    done += wrote
                storage = torch.UntypedStorage._new_shared_fd_cpu(fd, size)  # maps (a duplicate of) the file
            finally:
                os.close(fd)
            return torch.empty(0, dtype=x.dtype).set_(storage, 0, x.shape, x.stride())
        except (OSError, AttributeError, TypeError, ValueError, RuntimeError):
            pass  # e.g. a full /dev/shm or a seccomp filter: torch's own way says why, if it fails too
    return x.share_memory_()


def item_error(name: str, err: BaseException) -> CoReEchoError:
    """The error of one input that failed, as a :class:`~coreecho.errors.CoReEchoError` that survives pickling
    (it comes back from a loader worker) and names the input.

    coreecho's own errors are kept; any other exception — a decoder plugin's ``TypeError``, a ``ValueError`` from a
    DICOM attribute, a ``MemoryError`` — becomes a :class:`~coreecho.errors.VideoReadError` saying its type and
    message, so that one bad file is one error row and the run goes on.

    Example:
        >>> str(item_error("a.dcm", TypeError("bad operand")))
        'a.dcm: TypeError while reading or preparing it: bad operand'
    """
    if isinstance(err, CoReEchoError):
        return err
    message = str(err).strip() or "(no message)"
    return VideoReadError(name, f"{type(err).__name__} while reading or preparing it: {message}")


def _dataset_name(dataset: Any, index: int) -> str:
    try:
        return str(dataset.records[index].name)
    except Exception:  # noqa: BLE001 - a dataset without records: its position names it
        return f"item {index}"


def source_name(item: Any, index: int) -> str:
    """How an input is named in results: its path, or ``"item i"`` for in-memory input."""
    return str(item) if isinstance(item, (str, os.PathLike)) else f"item {index}"


class VideoItems(torch.utils.data.Dataset):
    """Videos → :class:`Item` through a :class:`~coreecho.video.pipeline.ClipPipeline` (runs in loader workers).

    Args:
        videos: paths and/or arrays.
        pipeline: the model's test-time pipeline.
        clips: clip policy for every video.
        starts: ``None``, one list of starts for every video, or one list per video.
        resample_fps: see :class:`~coreecho.video.pipeline.ClipPipeline`.
        fps: frame rate of in-memory arrays.
    """

    def __init__(self, videos: Sequence[Any], pipeline: Any, *, clips: Any = None, starts: Any = None,
                 resample_fps: bool = False, fps: float | None = None):
        self.videos = list(videos)
        self.pipeline = pipeline
        self.clips = clips
        self.per_video = starts is not None and len(starts) > 0 and not np.isscalar(starts[0])
        if self.per_video and len(starts) != len(self.videos):
            raise InputError("starts", f"got {len(starts)} start lists for {len(self.videos)} videos")
        self.starts = starts
        self.resample_fps, self.fps = resample_fps, fps

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def preprocess(self) -> Any:
        """The pipeline's :class:`~coreecho.models.config.PreprocessConfig` (sizes the engine's passes)."""
        return self.pipeline.config

    def __getitem__(self, index: int) -> Item:
        video = self.videos[index]
        name = source_name(video, index)
        starts = self.starts[index] if self.per_video else self.starts
        policy = list(starts) if starts is not None else self.clips
        try:
            batch = self.pipeline(video, policy, fps=self.fps, name=name, resample_fps=self.resample_fps,
                                  output="pixels")
        except Exception as err:  # noqa: BLE001 - one input's failure, whatever raised it, is that input's row
            return Item(index, name, error=item_error(name, err))
        pre = self.pipeline.config
        return Item(index, name, torch.from_numpy(batch.pixels), [int(s) for s in batch.starts], batch.n_frames,
                    batch.fps, list(batch.warnings), norm=(tuple(pre.mean), tuple(pre.std)),
                    offsets=None if batch.offsets is None else torch.from_numpy(batch.offsets))


class DatasetItems(torch.utils.data.Dataset):
    """Items of an evaluation-mode dataset as :class:`Item`; the label goes to ``extra["label"]``.

    The items follow the dataset item contract (:class:`coreecho.data.contract.EvalItem`: ``"video"``
    ``[K, 3, T, S, S]``, ``"label"``, ``"name"``, ``"starts"``); a training-mode item (a 4-D video) is a
    :class:`~coreecho.errors.DatasetError`.

    Args:
        dataset: e.g. :class:`~coreecho.data.echonet.EchoNetDynamic` with ``clips=k`` or fixed starts, or
            :class:`~coreecho.data.camus.CAMUS` with ``clips=1``.
        indices: the items to run (default: all).
    """

    def __init__(self, dataset: Any, indices: Sequence[int] | None = None):
        self.dataset = dataset
        self.indices = list(range(len(dataset))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def preprocess(self) -> Any:
        """The dataset's :class:`~coreecho.models.config.PreprocessConfig` (sizes the engine's passes)."""
        return getattr(self.dataset, "preprocess", None)

    def __getitem__(self, position: int) -> Item:
        index = self.indices[position]
        try:
            with dataset_settings(self.dataset, handover="pixels"):  # uint8 from datasets that can hand it over
                it = self.dataset[index]
            pixels = it.get("pixels")
            shape = tuple((it["video"] if pixels is None else pixels).shape)
            if len(shape) != 5:
                raise DatasetError(f"item {it['name']!r}: the engine runs evaluation-mode items (video [K, 3, T, S, "
                                   f"S], coreecho.data.contract), got a video of shape {shape}; give the dataset "
                                   "clips=k or fixed starts")
        except Exception as err:  # noqa: BLE001 - one item's failure is that item's row
            name = _dataset_name(self.dataset, index)
            return Item(index, name, error=item_error(name, err))
        facts = dict(starts=[int(s) for s in it["starts"]], extra={"label": float(it["label"])})
        if pixels is None:
            return Item(index, str(it["name"]), it["video"], **facts)
        norm = it["norm"].tolist()
        return Item(index, str(it["name"]), pixels, norm=(tuple(norm[0]), tuple(norm[1])), offsets=it["offsets"],
                    **facts)


@contextlib.contextmanager
def dataset_settings(dataset: Any, **settings: Any) -> Iterator[Any]:
    """Give ``dataset`` the settings it has among ``settings`` while the block runs, then restore them.

    How a caller puts a dataset in evaluation mode for :class:`DatasetItems` (``clips=k``, ``augment=False``:
    :class:`coreecho.data.contract.EvalDataset`) without keeping a modified dataset. Attributes the dataset
    lacks are skipped (e.g. ``clip_policy`` on a sequence dataset).

    Example:
        >>> class D: clips = None
        >>> d = D()
        >>> with dataset_settings(d, clips=1, clip_policy="even"):
        ...     d.clips, hasattr(d, "clip_policy")
        (1, False)
        >>> d.clips is None
        True
    """
    saved = {k: getattr(dataset, k) for k in settings if hasattr(dataset, k)}
    for k in saved:
        setattr(dataset, k, settings[k])
    try:
        yield dataset
    finally:
        for k, v in saved.items():
            setattr(dataset, k, v)


class EncoderHead(torch.nn.Module):
    """An encoder and a head seen as one model by :func:`stream` (shares their parameters; copies nothing).

    Used for a compiled encoder (``torch.compile`` wraps it without touching the caller's model) and for
    training-time validation, where the encoder and head are separate modules.
    """

    def __init__(self, encoder: torch.nn.Module, head: torch.nn.Module, config: Any = None):
        super().__init__()
        self.encoder, self.head, self.config = encoder, head, config
