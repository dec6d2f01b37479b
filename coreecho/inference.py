"""EF and embeddings of whole videos: clip sampling, preprocessing from the config, batched forward passes.

The model's :class:`~coreecho.models.config.ModelConfig` decides everything: clip length and stride, input
size, mean/std, the default number of test clips and the training fps. Clips of many videos are batched
through one forward (``batch_size`` clips at a time, so memory stays bounded however long the list), under
:func:`torch.inference_mode`.

Example:
    >>> from coreecho.data.phantom import make_phantom
    >>> frames, meta = make_phantom(ef=55, seed=0)
    >>> model = coreecho.load_model("phantom-tiny")  # doctest: +SKIP
    >>> predict_ef(frames, model=model, return_details=True).clip_efs  # doctest: +SKIP
    array([54.1, 56.0, 55.2], dtype=float32)
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from coreecho._warnings import warn_user
from coreecho.engine import EncoderHead, VideoItems, stream
from coreecho.errors import InputError, NoSignalError, OutputError
from coreecho.hub.registry import DEFAULT_MODEL  # model used when none is given (re-exported)
from coreecho.hub.resolve import load_model
from coreecho.models.coreecho import CoReEcho
from coreecho.precision import maybe_compile, set_threads
from coreecho.validate import check_device, check_run_settings
from coreecho.video.pipeline import FPS_TOLERANCE  # re-exported: the pipeline owns the fps policy
from coreecho.video.base import NO_SIGNAL_NOTE

__all__ = ["Prediction", "predict_ef", "embed", "run", "get_model", "inference_view", "check_result", "DEFAULT_MODEL",
           "FPS_TOLERANCE"]



@dataclass
class Prediction:
    """Per-video details (``return_details=True``).

    Attributes:
        source: the path, or ``"item i"`` for in-memory input.
        ef: mean of the per-clip outputs (EF in % for EF models); NaN when ``error`` is set.
        clip_efs: head output of each clip.
        ef_std: standard deviation of ``clip_efs`` (0 for a single clip).
        starts: first frame of each clip (in the resampled time base when ``resample_fps`` is on).
        fps: the video's frame rate, or ``None`` when unknown.
        n_frames: number of frames in the video.
        embedding: mean of the clip embeddings (``embed`` only, else ``None``).
        clip_embeddings: per-clip embeddings (``embed`` only).
        warnings: notes about this video (fps far from training, short video padded).
        error: the message when this video failed (``errors="nan"``), else ``None``.
        shift_score: distribution-shift score of the video's embedding when the model carries a
            ``shift_detector`` (see :mod:`coreecho.analysis.shift`), else ``None``.
        is_shifted: whether that score exceeds the detector's calibrated threshold.
        ef_low, ef_high: conformal EF interval when the model carries a calibration
            (:mod:`coreecho.analysis.calibration`), else ``None``.
        coverage: its nominal coverage (e.g. 0.9), marginal over exchangeable videos; ``None`` without one.
    """

    source: str
    ef: float = float("nan")
    clip_efs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    ef_std: float = float("nan")
    starts: list[int] = field(default_factory=list)
    fps: float | None = None
    n_frames: int = 0
    embedding: np.ndarray | None = None
    clip_embeddings: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    shift_score: float | None = None
    is_shifted: bool | None = None
    ef_low: float | None = None
    ef_high: float | None = None
    coverage: float | None = None

    @property
    def ok(self) -> bool:
        """True when the video was processed."""
        return self.error is None


def _is_single(video: Any) -> bool:
    if isinstance(video, (str, os.PathLike)):
        return True
    if isinstance(video, (np.ndarray, torch.Tensor)):
        return True
    if isinstance(video, (list, tuple)):
        return False
    raise InputError("video", f"expected a path, an array/tensor of frames or a list of those; got "
                              f"{type(video).__name__}")


def run(videos: Sequence[Any], model: CoReEcho, *, clips: int | str | None = None,
        starts: Sequence[int] | Sequence[Sequence[int]] | None = None, batch_size: int | None = None,
        want_embeddings: bool = False, resample_fps: bool = False, fps: float | None = None,
        errors: str = "raise", progress: bool | None = None, coverage: float | None = None,
        calibrated: bool = True, precision: str = "fp32", threads: int | None = None,
        workers: int | None = None, compile: bool = False) -> Iterator[Prediction]:  # noqa: A002
    """Yield one :class:`Prediction` per video, in order, as soon as its clips have gone through the model.

    This is :func:`predict_ef`, :func:`embed` and ``coreecho predict`` without the packaging: use it to stream
    results (a crash or Ctrl-C then loses nothing already yielded). The work is done by :func:`coreecho.engine.stream`:
    loader workers run the model's :class:`~coreecho.video.pipeline.ClipPipeline` ahead of the model.

    Args:
        videos: paths and/or arrays.
        model: a :class:`~coreecho.CoReEcho` (never modified: see :func:`inference_view`).
        clips: clips per video (``int`` evenly spaced, ``"all"``, ``"every"``); default: ``model.config.test_clips``.
        starts: explicit clip starts: one list for all videos, or one list per video.
        batch_size: clips per forward pass; default: :func:`coreecho.engine.batch_policy` (by activation size on a
            CPU, by free memory on a GPU).
        want_embeddings: also return embeddings.
        resample_fps: resample videos whose fps is far from the training fps (nearest frame).
        fps: frame rate of in-memory arrays (files carry their own).
        errors: ``"raise"`` stops at the first bad video; ``"nan"`` records the error in the prediction and
            goes on.
        progress: show a progress bar (default: for 10+ videos on a terminal).
        coverage: nominal coverage of ``ef_low``/``ef_high`` (default: the calibration's, 0.9).
        calibrated: apply the model's calibration and shift detector (``False``: plain predictions, as
            :func:`coreecho.calibrate` needs).
        precision: ``"fp32"`` (default, exact), ``"bf16"``, ``"fp16"`` or ``"auto"`` (see :mod:`coreecho.precision`).
        threads: torch CPU threads for this call (``None``: leave as set).
        workers: loader worker processes decoding ahead (default: one per core, up to 4, for 2+ files).
        compile: run the encoder through ``torch.compile`` (see :func:`coreecho.precision.maybe_compile`; pays off
            for long runs of same-shaped batches, e.g. on a GPU).
    """
    checked = check_run_settings(clips=clips, batch_size=batch_size, coverage=coverage, precision=precision,
                                 threads=threads, workers=workers, fps=fps)  # as the CLI checks them, before any work
    clips, coverage, fps = checked["clips"], checked["coverage"], checked["fps"]
    detector = model.shift_detector if calibrated else None
    interval = model.calibration.interval if calibrated and model.calibration is not None else None
    level = q = None
    if interval is not None:
        level = model.calibration.coverage if coverage is None else float(coverage)
        q = interval.quantile(level)  # validates the level; warns once when it cannot be certified
    task = getattr(model.config, "task", "ef")
    items = VideoItems(videos, model.pipeline(train=False), clips=clips, starts=starts, resample_fps=resample_fps,
                       fps=fps)
    view = inference_view(model)
    if compile:
        view = EncoderHead(maybe_compile(view.encoder), view.head, view.config)

    def finish(item: Any, emb: torch.Tensor | None, out: np.ndarray | None) -> Prediction:
        if item.error is not None:
            return Prediction(source=item.source, error=str(item.error))
        blank = next((n for n in item.notes if n.startswith(NO_SIGNAL_NOTE)), None)
        if blank is not None and not want_embeddings:  # never a silent EF of a blank video
            err = NoSignalError(item.source, f"has {blank}; no EF is given for it (check the export)")
            if errors == "raise":
                raise err
            return Prediction(source=item.source, error=str(err))
        for note in item.notes:
            warn_user(f"{item.source}: {note}")
        pred = Prediction(source=item.source, fps=item.fps, n_frames=item.n_frames, starts=item.starts,
                          warnings=list(item.notes))
        pred.clip_efs = out.astype(np.float32)
        pred.ef = float(out.mean(axis=0)) if out.ndim == 1 else out.mean(axis=0)
        pred.ef_std = float(out.std(axis=0)) if out.ndim == 1 else out.std(axis=0)
        mean_emb = emb.mean(0).numpy()
        if want_embeddings:
            pred.clip_embeddings = emb.numpy()
            pred.embedding = mean_emb
        if detector is not None:
            score, shifted = detector.assess(mean_emb)
            pred.shift_score, pred.is_shifted = float(score), bool(shifted)
        if interval is not None and np.ndim(pred.ef) == 0 and np.isfinite(pred.ef):
            half = q * float(interval.sigma(ef_std=[pred.ef_std], embeddings=mean_emb[None])[0])
            low, high = np.clip([pred.ef - half, pred.ef + half], *interval.bounds)
            pred.ef_low, pred.ef_high, pred.coverage = float(low), float(high), level
        for note in check_result(pred, task, embedding=want_embeddings):
            warn_user(f"{item.source}: {note}")
        if pred.error is not None and errors == "raise":
            raise OutputError(f"{item.source}: {pred.error}")
        return pred

    before = set_threads(threads)
    try:
        yield from stream(items, view, finish=finish, batch_size=batch_size, precision=precision, workers=workers,
                          errors=errors, progress=progress)
    finally:
        set_threads(before)


def check_result(pred: Prediction, task: str = "ef", embedding: bool = False) -> list[str]:
    """Check a prediction's numbers; returns the notes about implausible values (idempotent).

    A non-finite output (NaN or inf EF, or embedding) turns the prediction into an error ("the model produced NaN
    for this video"). An EF outside 0–100 from an EF model (``task == "ef"``) is a note, added once to
    ``pred.warnings``. :func:`run` applies this to every prediction; calling it again only returns the notes.
    """
    if not pred.ok:
        return []
    values = np.concatenate([np.asarray(pred.clip_efs, np.float64).reshape(-1),
                             np.asarray(pred.ef, np.float64).reshape(-1)])
    bad = values[~np.isfinite(values)]
    if bad.size == 0 and embedding and pred.embedding is not None and not np.isfinite(pred.embedding).all():
        pred.error = "the model produced a non-finite embedding (NaN or inf) for this video; check the weights"
    elif bad.size:
        what = "NaN" if np.isnan(bad).any() else "inf"
        pred.error = (f"the model produced {what} for this video (non-finite output); the weights are probably "
                      "broken (check them with another video or model)")
    if pred.error:
        pred.ef = float("nan")
        return []
    notes = []
    if task == "ef" and np.ndim(pred.ef) == 0 and not 0.0 <= float(pred.ef) <= 100.0:
        notes.append(f"EF {float(pred.ef):.4g}% is outside 0-100: the model is extrapolating far from its training "
                     "data; check the video and the model")
    pred.warnings = list(pred.warnings) + [n for n in notes if n not in pred.warnings]
    return notes


def inference_view(model: CoReEcho) -> CoReEcho:
    """The model as inference must see it, without touching the caller's module.

    A model in eval mode is used as is (inference reads it and never writes it). A model left in training mode
    is copied once into eval mode, so that concurrent calls neither flip its mode nor update its BatchNorm
    statistics: results equal those of the model in eval mode, and its state dict is unchanged.
    """
    if not any(m.training for m in model.modules()):
        return model
    view = copy.deepcopy(model)
    view.eval()
    return view


def _collect(video: Any, model: CoReEcho, want_embeddings: bool, **kwargs: Any) -> list[Prediction]:
    single = _is_single(video)
    items = [video] if single else list(video)
    if not items:
        raise InputError("video", "the list of videos is empty")
    if single and kwargs.get("starts") is not None:
        kwargs["starts"] = list(kwargs["starts"])
    return list(run(items, model, want_embeddings=want_embeddings, **kwargs))


@functools.lru_cache(maxsize=4)
def _cached_model(name: str, device: str | None) -> CoReEcho:
    return load_model(name, device=device)


def get_model(model: CoReEcho | str | Path | None, device: str | torch.device | None = None) -> CoReEcho:
    """A model object, loading (once, cached) by name or path when given a string."""
    check_device(device)
    if isinstance(model, CoReEcho):
        return model if device is None else model.to(device)
    name = DEFAULT_MODEL if model is None else str(model)
    return _cached_model(name, None if device is None else str(device))


def predict_ef(video: Any, *, model: CoReEcho | str | None = None, clips: int | str | None = None,
               starts: Any = None, batch_size: int | None = None, return_details: bool = False,
               device: str | torch.device | None = None, **kwargs: Any) -> Any:
    """Ejection fraction (%) of a video, or of each video of a list.

    Args:
        video: a path (AVI/MP4/MOV/MKV/GIF, DICOM, ``.npy``), an array or tensor of raw frames ``(T, H, W)`` or
            ``(T, H, W, C)`` (uint8, or float in 0–255), or a list of those.
        model: a :class:`~coreecho.CoReEcho`, or a name/path for :func:`coreecho.load_model` (loaded once and
            cached); default ``"coreecho-echonet"``.
        clips: clips per video (evenly spaced) or ``"all"``; default: the model config's ``test_clips`` (3).
        starts: explicit clip starts (the official protocol): a list for one video, or one list per video.
        batch_size: clips per forward pass (default: the engine's policy, by activation size or GPU memory).
        return_details: return :class:`Prediction` objects instead of numbers.
        device: where to run when ``model`` is a name.
        **kwargs: ``precision`` (``"fp32"``, ``"bf16"``, ``"fp16"``, ``"auto"``), ``threads``, ``workers``,
            ``resample_fps``, ``fps`` (for arrays), ``errors`` (``"raise"``/``"nan"``), ``progress``, ``coverage``,
            ``calibrated`` (see :func:`run`).

    Returns:
        One video: a float (or a :class:`Prediction`). A list: a float array ``[N]`` (or a list of
        :class:`Prediction`).

    Example:
        >>> import coreecho
        >>> coreecho.predict_ef("a4c.avi", model="phantom-tiny")  # doctest: +SKIP
        57.3
    """
    m = get_model(model, device)
    preds = _collect(video, m, False, clips=clips, starts=starts, batch_size=batch_size, **kwargs)
    if return_details:
        return preds[0] if _is_single(video) else preds
    values = np.array([p.ef for p in preds], dtype=np.float64)
    return float(values[0]) if _is_single(video) else values


def embed(video: Any, *, model: CoReEcho | str | None = None, clips: int | str | None = None, starts: Any = None,
          batch_size: int | None = None, return_details: bool = False, device: str | torch.device | None = None,
          **kwargs: Any) -> Any:
    """Embedding of a video (mean over its clips), or of each video of a list.

    Arguments as in :func:`predict_ef`.

    Returns:
        One video: a float32 array ``[D]`` (512 for UniFormer-S). A list: ``[N, D]``. With
        ``return_details``, :class:`Prediction` objects with ``embedding`` and ``clip_embeddings``.

    Example:
        >>> import coreecho
        >>> coreecho.embed(["a.avi", "b.avi"], model="phantom-tiny").shape  # doctest: +SKIP
        (2, 512)
    """
    m = get_model(model, device)
    preds = _collect(video, m, True, clips=clips, starts=starts, batch_size=batch_size, **kwargs)
    if return_details:
        return preds[0] if _is_single(video) else preds
    if not all(p.ok for p in preds):
        dim = m.embed_dim
        rows = [p.embedding if p.ok else np.full(dim, np.nan, np.float32) for p in preds]
    else:
        rows = [p.embedding for p in preds]
    out = np.stack(rows).astype(np.float32)
    return out[0] if _is_single(video) else out
