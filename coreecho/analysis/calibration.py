"""Calibrated EF intervals and an out-of-distribution flag, fitted on held-out labelled videos.

:func:`calibrate` runs a model on held-out videos with known EF and fits two things that then travel with the
model's weights (``calibration.safetensors`` + a ``calibration`` entry in ``config.json``; the objects and their
file format are in :mod:`coreecho.analysis.conformal`, model folders in :mod:`coreecho.hub.folder`):

* a **split-conformal EF interval** (:class:`ConformalInterval`), locally adaptive: the nonconformity score
  of a video is ``|EF_true - EF_pred| / sigma(x)``, where ``sigma`` is a difficulty estimate, and the interval
  for a new video is ``EF_pred ± q · sigma(x)`` with ``q`` the ``ceil((n + 1) · level)``-th smallest of the
  ``n`` held-out scores (the finite-sample conformal quantile). Difficulty ``"knn"`` (default) is the mean
  absolute error of the ``k`` nearest videos in embedding space among a *separate* part of the held-out data;
  ``"spread"`` is the standard deviation of the per-clip EFs; ``"constant"`` gives a fixed-width interval.
* a :class:`~coreecho.analysis.shift.ShiftDetector` on the embeddings, its reference and its threshold taken
  from the same two disjoint parts of the held-out data (false-alarm rate set on the second part).

What the interval promises: if the calibration videos and a new video are exchangeable (drawn the same way,
from the same population, scanners and protocol), ``P(EF_true in [ef_low, ef_high]) >= level`` on average
over calibration sets and new videos (marginal coverage). It does not promise coverage for one given patient,
nor for a subgroup, nor for another site or vendor: recalibrate there (docs/calibration.md).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> emb = rng.normal(size=(400, 4)); true = rng.uniform(10, 80, 400)
    >>> pred = true + rng.normal(0, 1 + np.abs(emb[:, 0]), 400)
    >>> ci = ConformalInterval().fit(pred, true, embeddings=emb, difficulty="knn", k=10)
    >>> low, high = ci.interval(pred[:3], embeddings=emb[:3], level=0.9)
    >>> bool((low < high).all()), ci.n_calibration
    (True, 200)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coreecho.analysis.conformal import (DIFFICULTIES, FILE_NAME, FORMAT_NAME, FORMAT_VERSION, Calibration,
                                         ConformalInterval, conformal_rank, state_fingerprint)
from coreecho.analysis.shift import ShiftDetector
from coreecho.errors import DatasetError, InputError
from coreecho.data.camus import CAMUS
from coreecho.data.echonet import ClipDataset, EchoNetDynamic, VideoRegressionDataset
from coreecho.engine import DatasetItems, dataset_settings, stream
from coreecho.inference import get_model, inference_view, run

# ConformalInterval, Calibration and the file format live in coreecho.analysis.conformal (the weights layer reads
# and writes them without importing inference); they stay importable from here.
__all__ = ["ConformalInterval", "Calibration", "calibrate", "collect", "conformal_rank", "state_fingerprint",
           "DIFFICULTIES", "FILE_NAME", "FORMAT_NAME", "FORMAT_VERSION"]


# ------------------------------------------------------------------------------------------------ fitting
def collect(model: Any, data: Any, *, split: str = "val", labels: Sequence[float] | None = None,
            clips: int | str | None = None, batch_size: int | None = None, limit: int | None = None,
            progress: bool | None = None) -> dict[str, np.ndarray]:
    """Predictions, per-clip spreads, embeddings and true EFs of labelled videos.

    Args:
        model: a :class:`~coreecho.CoReEcho`.
        data: an EchoNet-Dynamic folder (``FileList.csv``), a CSV of videos (``path``, ``label`` columns), a
            CAMUS folder, a dataset object (EchoNet/CSV: its videos are read with the model's pipeline; CAMUS,
            HMC-QU or any dataset of :mod:`coreecho.data.contract` items: its own items, in evaluation mode), or a
            list of videos (paths or arrays) with ``labels``.
        split: split of an EchoNet-Dynamic folder (``"val"`` by default; never calibrate on training videos).
        labels: true EFs when ``data`` is a list of videos.
        clips: clip policy for videos (default: the model's).
        batch_size: clips per forward pass; ``None``: the engine's batch policy.
        limit: use only the first ``limit`` videos.
        progress: show a progress bar.

    Every forward pass runs through :func:`coreecho.engine.stream`.

    Returns:
        ``{"predicted", "ef_std", "embeddings", "true"}`` arrays (failed videos are dropped with a warning).
    """
    if isinstance(data, (str, os.PathLike)):
        data = _open_dataset(Path(data).expanduser(), split, model)
    if isinstance(data, (list, tuple)):
        if labels is None or len(labels) != len(data):
            raise InputError("labels", "a list of videos needs one true EF per video")
        videos, true = list(data), [float(v) for v in labels]
    elif isinstance(data, ClipDataset):  # EchoNet-Dynamic, a CSV: video files, read as predict_ef reads them
        videos = [str(r.path) for r in data.records]
        true = [float(r.label) for r in data.records]
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return _collect_items(model, data, limit, batch_size, progress)
    else:
        raise InputError("data", f"cannot calibrate on {type(data).__name__}; pass a dataset folder, a CSV, a "
                                 "dataset object or a list of videos with labels")
    if limit is not None:
        videos, true = videos[:limit], true[:limit]
    preds = list(run(videos, model, clips=clips, batch_size=batch_size, want_embeddings=True, errors="nan",
                     progress=progress, calibrated=False))
    ok = [i for i, p in enumerate(preds) if p.ok]
    if len(ok) < len(preds):
        warnings.warn(f"{len(preds) - len(ok)} of {len(preds)} calibration videos failed and are left out "
                      f"(first: {next(p for p in preds if not p.ok).error})", stacklevel=2)
    return {"predicted": np.array([preds[i].ef for i in ok], np.float64),
            "ef_std": np.array([preds[i].ef_std for i in ok], np.float64),
            "embeddings": np.stack([preds[i].embedding for i in ok]).astype(np.float64) if ok else np.zeros((0, 0)),
            "true": np.array([true[i] for i in ok], np.float64)}


def _open_dataset(path: Path, split: str, model: Any) -> Any:
    if path.is_file() and path.suffix.lower() == ".csv":
        return VideoRegressionDataset(path)
    if (path / "FileList.csv").is_file():
        return EchoNetDynamic(path, split=split, min_traced_frames=0)
    if path.is_dir():
        return CAMUS(path, preprocess=model.config.preprocessing)
    raise DatasetError(f"{path}: not an EchoNet-Dynamic folder (FileList.csv), a CSV of videos or a CAMUS folder")


def _collect_items(model: Any, dataset: Any, limit: int | None, batch_size: int | None,
                   progress: bool | None) -> dict[str, np.ndarray]:
    """Datasets whose items are preprocessed clips with a label (CAMUS, HMC-QU: :mod:`coreecho.data.contract`),
    through the engine, in evaluation mode (``clips=1`` unless set, no augmentation) for the call."""
    n = len(dataset) if limit is None else min(limit, len(dataset))

    def finish(item: Any, emb: Any, out: np.ndarray) -> tuple[float, float, np.ndarray, float]:
        return float(out.mean()), float(out.std()), emb.mean(0).numpy(), float(item.extra["label"])

    clips = 1 if getattr(dataset, "clips", None) is None else dataset.clips
    with dataset_settings(dataset, clips=clips, augment=False):
        rows = list(stream(DatasetItems(dataset, range(n)), inference_view(model), finish=finish,
                           batch_size=batch_size, progress=progress, desc="calibrate"))
    return {"predicted": np.array([r[0] for r in rows]), "ef_std": np.array([r[1] for r in rows]),
            "embeddings": np.stack([r[2] for r in rows]).astype(np.float64), "true": np.array([r[3] for r in rows])}


def calibrate(model: Any, data: Any = None, *, split: str = "val", labels: Sequence[float] | None = None,
              coverage: float = 0.9, false_alarm_rate: float = 0.05, difficulty: str = "knn", k: int = 10,
              detector: str = "pca", n_components: int = 10, reference_fraction: float = 0.5, seed: int = 0,
              clips: int | str | None = None, batch_size: int | None = None, limit: int | None = None,
              collected: dict[str, np.ndarray] | None = None, attach: bool = True,
              progress: bool | None = None, metadata: dict[str, Any] | None = None) -> Calibration:
    """Fit a conformal EF interval and a shift detector on held-out labelled videos, and attach them.

    The held-out videos are split once (``seed``) into a reference part (``reference_fraction``) and a
    calibration part: the reference holds the ``"knn"`` difficulty's neighbours and the shift detector's
    reference embeddings; the calibration part gives the interval's conformal scores and the detector's
    threshold. ``model.save_pretrained(folder)`` then writes the calibration with the weights.

    Args:
        model: a :class:`~coreecho.CoReEcho` or a name/path for :func:`coreecho.load_model`.
        data: see :func:`collect` (folder, CSV, dataset, or list of videos with ``labels``).
        split: split of an EchoNet-Dynamic folder.
        coverage: default nominal coverage of the interval (other levels can be asked per prediction).
        false_alarm_rate: share of in-distribution videos the detector may flag.
        difficulty: ``"knn"`` (embedding neighbourhood), ``"spread"`` (per-clip spread) or ``"constant"``.
        k: neighbours of the ``"knn"`` difficulty.
        detector: shift score ``"pca"`` (default), ``"knn"`` or ``"mahalanobis"``; ``None`` for no detector.
        n_components: principal axes of the ``"pca"`` score.
        collected: precomputed :func:`collect` output (skips running the model).
        attach: set ``model.calibration`` and ``model.shift_detector``.

    Returns:
        The :class:`Calibration`.

    Example:
        >>> cal = coreecho.calibrate("phantom-tiny", "EchoNet-Dynamic/", split="val")  # doctest: +SKIP
        >>> cal.interval.n_calibration  # doctest: +SKIP
        640
    """
    model = get_model(model)
    from coreecho.models.task import check_ef_regression

    check_ef_regression(model.config, "model", "calibrate (the interval is in EF points)")
    got = collected if collected is not None else collect(model, data, split=split, labels=labels, clips=clips,
                                                          batch_size=batch_size, limit=limit, progress=progress)
    n = len(got["true"])
    if n < 20:
        raise InputError("data", f"{n} labelled videos are too few to calibrate; use at least 20 (a few hundred "
                                 "for tight quantiles)")
    perm = np.random.default_rng(seed).permutation(n)
    n_ref = int(round(reference_fraction * n))
    split_idx = (perm[:n_ref], perm[n_ref:])
    interval = ConformalInterval().fit(got["predicted"], got["true"], ef_std=got["ef_std"],
                                       embeddings=got["embeddings"], difficulty=difficulty, k=k, split=split_idx)
    info = {"data": str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__,
            "split": split, "n_videos": n, "n_reference": int(n_ref), "n_calibration": int(n - n_ref), "seed": seed,
            "mae": float(np.mean(np.abs(got["predicted"] - got["true"])))}
    info.update(metadata or {})
    det = None
    if detector is not None:
        det = ShiftDetector().fit(got["embeddings"][split_idx[0]], got["embeddings"][split_idx[1]], method=detector,
                                  false_alarm_rate=false_alarm_rate, n_components=n_components,
                                  metadata={"calibration": info})
    cal = Calibration(interval, det, coverage=coverage, metadata=info)
    cal.fingerprint = state_fingerprint(model)
    if attach:
        model.calibration = cal
        model.shift_detector = det
    return cal
