"""The one inference loop: decode ahead in workers, batched forward passes, ordered predictions.

``predict_ef``, ``embed``, ``coreecho predict/embed/evaluate`` and the evaluation and calibration code are thin calls
into :func:`stream`::

    items (videos, or a dataset)  →  loader: worker processes run the model's ClipPipeline ahead of the model
                                  →  clips gathered into forward passes of `batch_policy` clips
                                     (by activation size on a CPU, by free memory on a GPU), in `precision`
                                  →  one Prediction per item, in input order, as soon as its clips are done

Memory is bounded: each worker keeps at most ``prefetch`` videos ready, and the model sees one pass of clips at
a time. Per-video failures (:class:`~coreecho.errors.CoReEchoError`) come back as error predictions when
``errors="nan"``, or are raised in the caller's process when ``errors="raise"``.

Example:
    >>> import numpy as np, coreecho
    >>> from coreecho.engine import stream
    >>> model = coreecho.load_model("phantom-tiny")  # doctest: +SKIP
    >>> [p.ef for p in stream([np.zeros((60, 64, 64), np.uint8)], model)]  # doctest: +SKIP
    [31.2]
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from coreecho.errors import CoReEchoError, InputError

__all__ = ["stream", "batch_policy", "clips_per_pass", "default_workers", "VideoItems", "DatasetItems", "EncoderHead",
           "Item",
           "is_compute_bound", "EngineWarning", "CPU_ACTIVATION_BYTES", "GPU_MEMORY_FRACTION", "MAX_BATCH"]

#: Bytes of first-stage activations per forward pass on a CPU: larger batches fall out of the cache and get slower
#: per clip. UniFormer-S at 36×112×112 (3.6 MB of float32 per clip) runs 1 clip per pass in fp32 and 2 in bf16, the
#: fastest on 2 cores (fp32: 0.32 s/clip at 1, 0.33 at 2, 0.34 at 4; bf16: 0.17 at 1, 0.12–0.14 at 2–4).
CPU_ACTIVATION_BYTES = 4 * 2**20
#: Share of the free GPU memory one forward pass may use.
GPU_MEMORY_FRACTION = 0.5
#: Largest number of clips per forward pass.
MAX_BATCH = 256


@dataclass
class Item:
    """One item of an inference stream: its clips (or the error that prevented them) and what is known of it.

    Attributes:
        index: position in the input.
        source: the path, or the name of in-memory input.
        x: float32 clips ``[K, 3, T, S, S]``, or ``None`` when ``error`` is set.
        starts: clip starts.
        n_frames: frames in the video.
        fps: its frame rate, or ``None``.
        notes: warnings for the user (issued by the caller's process).
        error: the exception that made the item fail.
        extra: anything the item source wants to carry (e.g. a label).
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

    def __getitem__(self, index: int) -> Item:
        video = self.videos[index]
        name = source_name(video, index)
        starts = self.starts[index] if self.per_video else self.starts
        policy = list(starts) if starts is not None else self.clips
        try:
            batch = self.pipeline(video, policy, fps=self.fps, name=name, resample_fps=self.resample_fps)
        except CoReEchoError as err:
            return Item(index, name, error=err)
        return Item(index, name, batch.x, [int(s) for s in batch.starts], batch.n_frames, batch.fps,
                    list(batch.warnings))


class DatasetItems(torch.utils.data.Dataset):
    """Items of an evaluation-mode dataset (dicts with ``"video"`` ``[K, 3, T, S, S]``, ``"name"``, ``"starts"``,
    ``"index"`` and a label) as :class:`Item`; the label goes to ``extra["label"]``.

    Args:
        dataset: e.g. :class:`~coreecho.data.echonet.EchoNetDynamic` with ``clips=k`` or ``starts=...``.
        indices: the items to run (default: all).
    """

    def __init__(self, dataset: Any, indices: Sequence[int] | None = None):
        self.dataset = dataset
        self.indices = list(range(len(dataset))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Item:
        index = self.indices[position]
        try:
            it = self.dataset[index]
        except CoReEchoError as err:
            return Item(index, str(self.dataset.records[index].name), error=err)
        x = it["video"] if it["video"].dim() == 5 else it["video"][None]
        label = it.get("ef", it.get("label"))
        starts = it.get("starts")
        return Item(index, str(it["name"]), x, [] if starts is None else [int(s) for s in starts],
                    extra={"label": None if label is None else float(label)})


class EncoderHead(torch.nn.Module):
    """An encoder and a head seen as one model by :func:`stream` (shares their parameters; copies nothing).

    Used for a compiled encoder (``torch.compile`` wraps it without touching the caller's model) and for
    training-time validation, where the encoder and head are separate modules.
    """

    def __init__(self, encoder: torch.nn.Module, head: torch.nn.Module, config: Any = None):
        super().__init__()
        self.encoder, self.head, self.config = encoder, head, config


class EngineWarning(RuntimeWarning):
    """The engine changed how it runs to get past a problem of the machine (e.g. decoding moved into this process).

    Not about one video: the CLI shows these even while it files per-video warnings into the output's columns.
    """


class _SharedMemoryFailed(Exception):
    """A worker could not put its decoded clips into shared memory (a file-size limit, no ``/dev/shm``...)."""


def _first(batch: list[Item]) -> Item:
    """The loader's collate function, run in the worker: one item, its clips moved to shared memory here.

    torch would do the move while sending the item, in a thread of the worker where a failure is printed and the
    item never arrives, so that the main process waits forever. Done here, a failure becomes an item that says so
    (see :func:`_loader`).
    """
    item = batch[0]
    if item.x is not None and torch.utils.data.get_worker_info() is not None:
        try:
            item.x.share_memory_()
        except RuntimeError as err:
            item.x, item.error = None, _SharedMemoryFailed(str(err))
    return item


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)  # workers decode; the model's process owns the cores' math


def default_workers(n_items: int, in_memory: bool = False, *, device: torch.device | None = None,
                    compute_bound: bool = False) -> int:
    """Loader worker processes by default.

    None for one item or in-memory arrays. Otherwise one per core, up to 4, except for a compute-bound model on a
    CPU (:func:`is_compute_bound`, e.g. UniFormer-S): there the cores left to workers are those torch's threads do
    not use, because decoding workers would slow the network more than they save (measured on 2 cores: 9 videos,
    27 clips, 7.2 s with no worker, 8.3 s with 1 or 2).

    Example:
        >>> default_workers(1), default_workers(10, in_memory=True)
        (0, 0)
    """
    if n_items < 2 or in_memory:
        return 0
    cores = os.cpu_count() or 1
    if compute_bound and (device is None or device.type == "cpu"):
        return max(0, min(4, cores - torch.get_num_threads()))
    return max(0, min(4, cores))


def batch_policy(model: torch.nn.Module, device: torch.device | None = None, precision: str = "fp32") -> int:
    """Clips per forward pass for a model (see :func:`clips_per_pass`).

    Example:
        >>> from coreecho import CoReEcho
        >>> batch_policy(CoReEcho(), torch.device("cpu")), batch_policy(CoReEcho(), torch.device("cpu"), "bf16")
        (1, 2)
    """
    device = device if device is not None else next(model.parameters()).device
    return clips_per_pass(model.encoder.embed_dim[0], model.config.preprocessing, device, precision)


def _first_stage_elements(width: int, preprocess: Any) -> int:
    """Activation elements of one clip after the first patch embedding (the largest map of a UniFormer)."""
    return width * max(1, preprocess.frames // 2) * (preprocess.size // 4) ** 2


def is_compute_bound(width: int, preprocess: Any) -> bool:
    """Whether one clip's float32 first stage fills :data:`CPU_ACTIVATION_BYTES` (UniFormer-S: yes; phantom-tiny: no).

    Such a model keeps every core busy on a CPU, so decoding workers only compete with it (:func:`default_workers`).

    Example:
        >>> from coreecho.models.config import PreprocessConfig
        >>> is_compute_bound(64, PreprocessConfig()), is_compute_bound(8, PreprocessConfig(size=64))
        (True, False)
    """
    return 2 * 4 * _first_stage_elements(width, preprocess) > CPU_ACTIVATION_BYTES


def clips_per_pass(width: int, preprocess: Any, device: torch.device, precision: str = "fp32") -> int:
    """Clips per forward pass, the one policy of every inference path.

    On a CPU: as many clips as fit :data:`CPU_ACTIVATION_BYTES` of first-stage activations, 4 bytes an element in
    fp32 and 2 under bf16/fp16 autocast (the convolutions' and matrix products' outputs), so bf16 runs twice the
    clips in the same cache. The 64-px micro model of ``phantom-tiny`` gets faster up to large batches. On a GPU:
    as many as fit :data:`GPU_MEMORY_FRACTION` of the free memory, estimated from the first stage's float32
    activations (the largest), at most :data:`MAX_BATCH`. ``precision`` is a resolved one (not ``"auto"``).

    Example:
        >>> from coreecho.models.config import PreprocessConfig
        >>> cpu = torch.device("cpu")
        >>> clips_per_pass(64, PreprocessConfig(), cpu), clips_per_pass(64, PreprocessConfig(), cpu, "bf16")
        (1, 2)
    """
    first = _first_stage_elements(width, preprocess)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        per_clip = first * 4 * 24  # float32 activations of the first stage, ~24 live tensors of that size
        return int(max(1, min(MAX_BATCH, free * GPU_MEMORY_FRACTION // per_clip)))
    per_clip = first * (4 if precision == "fp32" else 2)
    return int(max(1, min(MAX_BATCH, CPU_ACTIVATION_BYTES // per_clip)))


def _loader(items: torch.utils.data.Dataset, workers: int, pin: bool) -> Iterator[Item]:
    """The items in order: from worker processes, or decoded in this process with ``workers=0``.

    When a worker cannot hand its clips over through shared memory, the workers are stopped and this and every
    later item are decoded in this process instead, with a warning: the run goes on, a little slower.
    """
    n = len(items)
    start = 0
    if workers > 0:
        loader = torch.utils.data.DataLoader(items, batch_size=1, collate_fn=_first, num_workers=workers,
                                             worker_init_fn=_one_thread, prefetch_factor=2, pin_memory=pin,
                                             persistent_workers=False)
        it = iter(loader)
        for start in range(n):
            item = next(it)
            if isinstance(item.error, _SharedMemoryFailed):
                del it  # stops the workers
                warnings.warn(f"loader workers cannot pass decoded clips through shared memory ({item.error}); "
                              f"decoding the remaining {n - start} video(s) in this process", EngineWarning,
                              stacklevel=2)
                break
            yield item
        else:
            return
    for i in range(start, n):
        yield items[i]


def stream(items: torch.utils.data.Dataset | Sequence[Any], model: torch.nn.Module, *,
           finish: Callable[[Item, torch.Tensor, np.ndarray], Any] | None = None,
           batch_size: int | None = None, precision: str = "fp32", workers: int | None = None,
           errors: str = "raise", progress: bool | None = None, desc: str = "predict") -> Iterator[Any]:
    """Run items through the model; yield one result per item, in input order.

    Args:
        items: a dataset of :class:`Item` (e.g. :class:`VideoItems`), or a sequence of them.
        model: the model (an eval-mode view: see :func:`coreecho.inference.inference_view`).
        finish: ``finish(item, clip_embeddings, clip_outputs)`` → the result for a done item (default: the
            triple itself); it is called with ``None`` arrays for failed items.
        batch_size: clips per forward pass; default :func:`batch_policy`.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"`` (see :mod:`coreecho.precision`; on a CPU,
            ``"auto"`` is fp32 for a model that is not :func:`is_compute_bound`, where bf16 is slower).
        workers: loader worker processes; default :func:`default_workers`.
        errors: ``"raise"`` re-raises a failed item's error here; ``"nan"`` passes it to ``finish``.
        progress: show a progress bar (default: for 10+ items on a terminal).
        desc: progress bar label.
    """
    from coreecho.allocator import keep_freed_memory  # noqa: PLC0415
    from coreecho.models.fused import cached_weights  # noqa: PLC0415
    from coreecho.precision import autocast_context, resolve_precision, to_device  # noqa: PLC0415

    if errors not in ("raise", "nan"):
        raise InputError("errors", f"must be 'raise' or 'nan', got {errors!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or not 1 <= batch_size <= 4096):
        raise InputError("batch_size", f"must be an integer in 1..4096, got {batch_size!r}")
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    config = getattr(model, "config", None)
    heavy = config is not None and is_compute_bound(model.encoder.embed_dim[0], config.preprocessing)
    if precision == "auto" and device.type == "cpu" and config is not None and not heavy:
        precision = "fp32"  # bf16 autocast costs more than it saves on a micro model (phantom-tiny: 0.77x)
    precision = resolve_precision(precision, device)  # a typed error now, not in the middle of a batch
    if device.type == "cpu":
        keep_freed_memory()  # activation buffers reused, not page-faulted in again on every pass
    chunk = batch_size or batch_policy(model, device, precision)
    n = len(items)
    in_memory = isinstance(items, VideoItems) and any(not isinstance(v, (str, os.PathLike)) for v in items.videos)
    if workers is None:
        workers = default_workers(n, in_memory, device=device, compute_bound=heavy)
    workers = int(workers)
    if workers < 0:
        raise InputError("workers", f"must be >= 0, got {workers}")
    finish = finish or (lambda item, emb, out: (item, emb, out))
    bar = _progress(n, progress, desc)
    pending: list[tuple[Item, int]] = []  # items whose clips are queued or computed, with their clip counts
    queue: list[torch.Tensor] = []
    queued = 0
    done: list[torch.Tensor] = []

    def forward(x: torch.Tensor) -> None:
        with torch.inference_mode(), autocast_context(precision, device):
            done.append(model.encoder(to_device(x, device).to(dtype)).float())

    def flush() -> Iterator[Any]:
        nonlocal queue, queued
        for part in (torch.cat(queue).split(chunk) if queued else ()):
            forward(part)
        queue, queued = [], 0
        emb_all = torch.cat(done) if done else torch.zeros(0)
        done.clear()
        with torch.inference_mode():  # the head in the model's dtype: bf16 would round EFs to 0.25-point steps
            out_all = model.head(emb_all.to(dtype)).float().cpu().numpy() if len(emb_all) else np.zeros(0)
        emb_all = emb_all.cpu()
        offset = 0
        for item, k in pending:
            result = finish(item, emb_all[offset:offset + k], out_all[offset:offset + k])
            offset += k
            yield result
        pending.clear()

    with cached_weights():  # bf16 casts of fused layers kept for this run only (coreecho.models.fused)
        try:
            loader = _loader(items, workers, pin=device.type == "cuda")
            while True:
                try:
                    item = next(loader)
                except StopIteration:
                    break
                except Exception:  # the loader itself failed (a worker died): deliver what was decoded, then stop
                    yield from flush()
                    raise
                if item.error is not None:
                    if errors == "raise":
                        raise item.error
                    yield from flush()
                    yield finish(item, None, None)
                else:
                    x, item.x = item.x, None  # the queue holds the clips; the item only its facts
                    pending.append((item, x.shape[0]))
                    queue.append(x)
                    queued += x.shape[0]
                    while queued >= chunk:  # full passes now; the rest waits for the next item
                        whole = torch.cat(queue)
                        forward(whole[:chunk])
                        rest = whole[chunk:]
                        queue, queued = ([rest] if len(rest) else []), len(rest)
                    if not queued:
                        yield from flush()
                if bar is not None:
                    bar.update(1)
            yield from flush()
        finally:
            if bar is not None:
                bar.close()


def _progress(total: int, enabled: bool | None, desc: str) -> Any:
    import sys  # noqa: PLC0415

    if enabled is None:
        enabled = total >= 10 and sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc=desc, unit="video")
