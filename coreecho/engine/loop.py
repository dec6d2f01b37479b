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
from coreecho.engine.items import Item, VideoItems, share_clips
from coreecho.engine.policy import clips_per_pass, default_workers, forward_bytes, is_compute_bound
from coreecho.errors import InputError
from coreecho.models.fused import cached_weights
from coreecho.precision import resolve_precision, to_device
from coreecho.video.model_input import to_model_input

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
            item.x = share_clips(item.x)
        except RuntimeError as err:
            item.x, item.error = None, _SharedMemoryFailed(str(err))
    return item


class _Part:
    """Clips waiting for a forward pass: all of an item's, or the rest of them (uint8 pixels or float32 input)."""

    __slots__ = ("x", "norm", "offsets")

    def __init__(self, x: torch.Tensor, norm: Any = None, offsets: torch.Tensor | None = None):
        self.x, self.norm, self.offsets = x, norm, offsets

    def split(self, k: int) -> tuple["_Part", "_Part"]:
        off = self.offsets
        return (_Part(self.x[:k], self.norm, None if off is None else off[:k]),
                _Part(self.x[k:], self.norm, None if off is None else off[k:]))


def _assemble(parts: list[_Part], device: torch.device) -> torch.Tensor:
    """The model input of one forward pass, made on ``device`` straight into one preallocated batch.

    uint8 parts are copied as uint8 (non-blocking from pinned memory to a GPU) and normalised (and cropped, if
    they carry offsets) where the model runs, in one pass each (:func:`coreecho.video.model_input.to_model_input`);
    float32 parts are copied in. No concatenated intermediate.
    """
    first = parts[0].x
    if len(parts) == 1 and first.dtype != torch.uint8:
        return to_device(first, device)
    frames = tuple(first.shape[1:4]) if first.dtype == torch.uint8 else tuple(first.shape[2:])
    out = torch.empty((sum(len(p.x) for p in parts), 3) + frames, dtype=torch.float32, device=device)
    row = 0
    for p in parts:
        k = len(p.x)
        if p.x.dtype == torch.uint8:
            to_model_input(p.x, *p.norm, offsets=p.offsets, out=out[row:row + k])
        else:
            out[row:row + k].copy_(p.x, non_blocking=True)
        row += k
    return out


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)  # workers decode; the model's process owns the cores' math


def _loader(items: torch.utils.data.Dataset, workers: int, pin: bool) -> Iterator[Item]:
    """The items in order: from worker processes, or decoded in this process with ``workers=0``.

    When the workers cannot go on — a worker was killed (e.g. by the out-of-memory killer), the system refused to
    start one (``EAGAIN``: too many processes or threads), or one cannot hand its clips over through shared memory —
    the workers are stopped and this and every later item are decoded in this process instead, with an
    :class:`EngineWarning`: the run goes on, a little slower. The items that were in flight are thereby retried
    once; one that succeeds carries a note saying so, one that fails again is that input's error row.
    """
    n = len(items)
    start = 0
    retried: range = range(0)
    if workers > 0:
        it: Any = None
        try:
            loader = torch.utils.data.DataLoader(items, batch_size=1, collate_fn=_first, num_workers=workers,
                                                 worker_init_fn=_one_thread, prefetch_factor=2, pin_memory=pin,
                                                 persistent_workers=False)
            it = iter(loader)
            for start in range(n):
                item = next(it)
                if isinstance(item.error, _SharedMemoryFailed):
                    reason = f"loader workers cannot pass decoded clips through shared memory ({item.error})"
                    break
                yield item
            else:
                return
        except Exception as err:  # noqa: BLE001 - a worker died or could not start: decode here instead
            reason = f"the loader workers stopped ({type(err).__name__}: {str(err).strip() or 'no message'})"
        it = None  # stops the workers that are left
        warnings.warn(f"{reason}; decoding the remaining {n - start} video(s) in this process", EngineWarning,
                      stacklevel=2)
        retried = range(start, min(n, start + 2 * workers + 1))  # what the workers held: decoded once more here
    for i in range(start, n):
        item = items[i]
        if i in retried and item.error is None and isinstance(item, Item):
            item.notes.append("decoded again in this process after the loader workers stopped")
        yield item


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
    from coreecho.validate import check_run_settings  # noqa: PLC0415 - the checks the CLI's options make

    checked = check_run_settings(batch_size=batch_size, workers=workers, precision=precision)
    batch_size, workers = checked["batch_size"], checked["workers"]
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
    _reserve_forward(items, width, pre, chunk, device)  # the forward pass's share of the memory budget
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
    queue: list[_Part] = []
    queued = 0
    done: list[torch.Tensor] = []

    def forward(parts: list[_Part]) -> None:
        with torch.inference_mode():
            done.append(encode(model, _assemble(parts, device), precision, device))

    def take(n: int) -> list[_Part]:
        """The first ``n`` queued clips (splitting an item's clips where the pass ends)."""
        nonlocal queued
        parts, got = [], 0
        while got < n:
            part = queue.pop(0)
            if got + len(part.x) > n:
                part, rest = part.split(n - got)
                queue.insert(0, rest)
            parts.append(part)
            got += len(part.x)
        queued -= got
        return parts

    def flush() -> Iterator[Any]:
        while queued:
            forward(take(min(chunk, queued)))
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
                    queue.append(_Part(x, item.norm, item.offsets) if x.dtype == torch.uint8 else _Part(x))
                    queued += x.shape[0]
                    while queued >= chunk:  # full passes now; the rest waits for the next item
                        forward(take(chunk))
                    if not queued:
                        yield from flush()
                if bar is not None:
                    bar.update(1)
            yield from flush()
        finally:
            if bar is not None:
                bar.close()


def _reserve_forward(items: Any, width: int, pre: Any, chunk: int, device: torch.device) -> None:
    """Check one forward pass of ``chunk`` clips against the memory budget (on a CPU, where activations live in
    host memory) and reserve it in the items' pipeline, which then counts it with each video's stages
    (:mod:`coreecho.video.budget`). Raises :class:`~coreecho.errors.MemoryBudgetError` before any item is read."""
    from coreecho.video.budget import check_budget  # noqa: PLC0415

    pipeline = getattr(items, "pipeline", None)
    if device.type != "cpu" or pre is None:
        return
    need = forward_bytes(width, pre, chunk)
    limits = getattr(pipeline, "limits", None)
    if limits is None:
        from coreecho.video.limits import Limits  # noqa: PLC0415

        limits = Limits()
    check_budget("batch_size", {"forward pass": need}, limits.max_bytes,
                 {"forward pass": f"{chunk} clips of {pre.frames} frames at {pre.size}x{pre.size}"})
    if pipeline is not None and hasattr(pipeline, "reserved_bytes"):
        pipeline.reserved_bytes = need


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
