"""The loop: items decoded ahead in loader workers, clips gathered into forward passes, results in input order.

See :mod:`coreecho.engine` for the picture; :func:`stream` is the one loop of every forward pass over data.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from coreecho.allocator import keep_freed_memory
from coreecho.engine.forward import apply_head, encode
from coreecho.engine.items import Item, VideoItems
from coreecho.engine.policy import clips_per_pass, default_workers, is_compute_bound
from coreecho.errors import InputError
from coreecho.models.fused import cached_weights
from coreecho.precision import resolve_precision, to_device

__all__ = ["stream", "EngineWarning"]


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
        batch_size: clips per forward pass; ``None`` (the default everywhere in the library): the batch policy,
            :func:`clips_per_pass` for the items' preprocessing (``items.preprocess``, else the model config's).
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"`` (see :mod:`coreecho.precision`; on a CPU,
            ``"auto"`` is fp32 for a model that is not :func:`is_compute_bound`, where bf16 is slower).
        workers: loader worker processes; default :func:`default_workers`.
        errors: ``"raise"`` re-raises a failed item's error here; ``"nan"`` passes it to ``finish``.
        progress: show a progress bar (default: for 10+ items on a terminal).
        desc: progress bar label.
    """
    if errors not in ("raise", "nan"):
        raise InputError("errors", f"must be 'raise' or 'nan', got {errors!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or not 1 <= batch_size <= 4096):
        raise InputError("batch_size", f"must be an integer in 1..4096, got {batch_size!r}")
    device = next(model.parameters()).device
    width = model.encoder.embed_dim[0]
    pre = _preprocess_of(items, model)
    heavy = pre is not None and is_compute_bound(width, pre)
    if precision == "auto" and device.type == "cpu" and pre is not None and not heavy:
        precision = "fp32"  # bf16 autocast costs more than it saves on a micro model (phantom-tiny: 0.77x)
    precision = resolve_precision(precision, device)  # a typed error now, not in the middle of a batch
    if device.type == "cpu":
        keep_freed_memory()  # activation buffers reused, not page-faulted in again on every pass
    if batch_size is None and pre is None:
        raise InputError("batch_size", "neither the items nor the model say how clips are preprocessed, so the "
                                       "batch policy cannot size a pass; pass batch_size")
    chunk = batch_size or clips_per_pass(width, pre, device, precision)
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
        with torch.inference_mode():
            done.append(encode(model, to_device(x, device), precision, device))

    def flush() -> Iterator[Any]:
        nonlocal queue, queued
        for part in (torch.cat(queue).split(chunk) if queued else ()):
            forward(part)
        queue, queued = [], 0
        emb_all = torch.cat(done) if done else torch.zeros(0)
        done.clear()
        with torch.inference_mode():  # the head in the model's dtype: bf16 would round EFs to 0.25-point steps
            out_all = apply_head(model, emb_all).cpu().numpy() if len(emb_all) else np.zeros(0)
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


def _preprocess_of(items: Any, model: torch.nn.Module) -> Any:
    """The preprocessing that sizes a pass: the items' own (a dataset may resample whole sequences, e.g. CAMUS),
    else the model's config's, else ``None``."""
    pre = getattr(items, "preprocess", None)
    if pre is None:
        config = getattr(model, "config", None)
        pre = getattr(config, "preprocessing", None)
    return pre


def _progress(total: int, enabled: bool | None, desc: str) -> Any:
    if enabled is None:
        enabled = total >= 10 and sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc=desc, unit="video")
