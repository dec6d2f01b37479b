"""Conformal EF intervals and the :class:`Calibration` a model carries, with its file format.

:class:`ConformalInterval` is the locally adaptive split-conformal interval and :class:`Calibration` the pair
(interval, :class:`~coreecho.analysis.shift.ShiftDetector`) that travels with a model's weights: its arrays in
``calibration.safetensors`` and its settings in the ``calibration`` entry of ``config.json``
(:mod:`coreecho.hub.folder` reads and writes model folders). Fitting them on held-out videos is
:func:`coreecho.analysis.calibration.calibrate`, which runs the model; this module only holds the numbers (numpy),
so the weights layer can read and write them without importing inference.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> pred, true = rng.uniform(10, 80, 100), rng.uniform(10, 80, 100)
    >>> cal = Calibration(ConformalInterval().fit(pred, true, difficulty="constant"), coverage=0.9)
    >>> sorted(cal.arrays())[:2], cal.interval.n_calibration
    (['interval.center', 'interval.reference'], 100)
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from coreecho._atomic import replace_atomically
from coreecho._version import __version__
from coreecho.analysis.shift import ShiftDetector
from coreecho.errors import ChecksumError, InputError, WeightsError

__all__ = ["ConformalInterval", "Calibration", "conformal_rank", "state_fingerprint", "DIFFICULTIES", "FILE_NAME",
           "FORMAT_NAME", "FORMAT_VERSION"]

#: Difficulty scores of the adaptive interval.
DIFFICULTIES = ("knn", "spread", "constant")
#: File of a model folder that holds the calibration arrays.
FILE_NAME = "calibration.safetensors"
FORMAT_NAME = "coreecho-calibration"
FORMAT_VERSION = 1


def conformal_rank(n: int, level: float) -> int:
    """``ceil((n + 1) · level)``: the rank of the finite-sample conformal quantile (``> n`` means unbounded)."""
    return math.ceil((n + 1) * level - 1e-9)


def state_fingerprint(model: Any) -> str:
    """sha256 over a model's state dict (names, dtypes, shapes, bytes): a calibration belongs to these weights."""
    import torch  # noqa: PLC0415 - only a model has a state dict; the numpy objects here do not need torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _vector(x: Any, name: str, n: int | None = None) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if n is not None and len(a) != n:
        raise InputError(name, f"expected {n} values, got {len(a)}")
    return a


class ConformalInterval:
    """Locally adaptive split-conformal interval for a scalar prediction (see the module docstring).

    Attributes:
        difficulty: ``"knn"``, ``"spread"`` or ``"constant"``.
        k: neighbours of the ``"knn"`` difficulty.
        floor: added to every difficulty so that ``sigma > 0`` (5 % of the median difficulty).
        scores: sorted nonconformity scores of the calibration part.
        reference, reference_errors, center, scale: the ``"knn"`` difficulty's standardised embeddings and
            absolute errors (the other part of the held-out data).
        bounds: the interval is clipped to this range (``(0, 100)`` for EF).
    """

    def __init__(self) -> None:
        self.difficulty = "knn"
        self.k = 10
        self.floor = 0.0
        self.bounds = (0.0, 100.0)
        self.scores = np.zeros(0)
        self.reference = np.zeros((0, 0))
        self.reference_errors = np.zeros(0)
        self.center = np.zeros(0)
        self.scale = np.zeros(0)

    @property
    def n_calibration(self) -> int:
        """Number of held-out videos the quantiles come from."""
        return int(len(self.scores))

    def fit(self, predicted: Any, true: Any, *, ef_std: Any = None, embeddings: Any = None,
            difficulty: str = "knn", k: int = 10, reference_fraction: float = 0.5, seed: int = 0,
            bounds: tuple[float, float] = (0.0, 100.0), split: tuple[np.ndarray, np.ndarray] | None = None,
            ) -> "ConformalInterval":
        """Fit on held-out predictions and labels.

        Args:
            predicted, true: predicted and true EF of ``n`` held-out videos.
            ef_std: per-clip spread of each prediction (difficulty ``"spread"``).
            embeddings: ``[n, D]`` embeddings (difficulty ``"knn"``).
            difficulty: ``"knn"``, ``"spread"`` or ``"constant"``.
            k: neighbours for ``"knn"``.
            reference_fraction: share of the videos used as the ``"knn"`` reference (disjoint from the
                conformal scores, so that exchangeability holds); ignored by the other difficulties.
            seed: seed of that split.
            bounds: clip intervals to this range.
            split: explicit ``(reference_indices, calibration_indices)`` instead of a random split.
        """
        if difficulty not in DIFFICULTIES:
            raise InputError(f"difficulty={difficulty!r}", f"expected one of {list(DIFFICULTIES)}")
        pred = _vector(predicted, "predicted")
        y = _vector(true, "true", len(pred))
        if not (np.isfinite(pred).all() and np.isfinite(y).all()):
            raise InputError("predicted/true", "contain NaN or infinite values (drop failed videos first)")
        err = np.abs(y - pred)
        self.difficulty, self.k, self.bounds = difficulty, int(k), (float(bounds[0]), float(bounds[1]))
        cal = np.arange(len(pred))
        if difficulty == "knn":
            if embeddings is None:
                raise InputError("embeddings", "the 'knn' difficulty needs the embeddings of the videos")
            emb = np.asarray(embeddings, dtype=np.float64)
            if emb.ndim != 2 or len(emb) != len(pred):
                raise InputError("embeddings", f"expected [{len(pred)}, D], got {emb.shape}")
            if split is None:
                perm = np.random.default_rng(seed).permutation(len(pred))
                n_ref = int(round(reference_fraction * len(pred)))
                split = (perm[:n_ref], perm[n_ref:])
            ref, cal = np.asarray(split[0]), np.asarray(split[1])
            if len(ref) < self.k or len(cal) < 1:
                raise InputError("embeddings", f"{len(pred)} videos are too few for k={self.k} neighbours plus "
                                 "a calibration part; use more held-out videos or a smaller k")
            self.center = emb[ref].mean(axis=0)
            sd = emb[ref].std(axis=0)
            self.scale = np.where(sd > 1e-12, sd, 1.0)
            self.reference = (emb[ref] - self.center) / self.scale
            self.reference_errors = err[ref]
            self.floor = 0.0
            raw = self._raw(None, emb[cal])
        elif difficulty == "spread":
            if ef_std is None:
                raise InputError("ef_std", "the 'spread' difficulty needs the per-clip spread of each prediction")
            raw = _vector(ef_std, "ef_std", len(pred))
        else:
            raw = np.ones(len(pred))
        self.floor = 0.05 * float(np.median(raw)) if np.median(raw) > 0 else 1e-3
        if difficulty == "constant":
            self.floor = 0.0
        self.scores = np.sort(err[cal] / (raw + self.floor))
        return self

    def _raw(self, ef_std: Any, embeddings: Any) -> np.ndarray:
        if self.difficulty == "knn":
            z = (np.atleast_2d(np.asarray(embeddings, dtype=np.float64)) - self.center) / self.scale
            ref = self.reference
            d2 = (np.einsum("ij,ij->i", z, z)[:, None] + np.einsum("ij,ij->i", ref, ref)[None]
                  - 2.0 * z @ ref.T)
            idx = np.argpartition(d2, self.k - 1, axis=1)[:, :self.k]
            return self.reference_errors[idx].mean(axis=1)
        if self.difficulty == "spread":
            return np.atleast_1d(np.asarray(ef_std, dtype=np.float64))
        return np.ones(len(np.atleast_1d(ef_std)) if ef_std is not None else len(np.atleast_2d(embeddings)))

    def sigma(self, *, ef_std: Any = None, embeddings: Any = None) -> np.ndarray:
        """Difficulty ``sigma(x)`` of videos (larger = wider interval)."""
        if self.difficulty == "constant" and ef_std is None and embeddings is None:
            return np.ones(1)
        if self.difficulty == "knn" and embeddings is None:
            raise InputError("embeddings", "this interval's difficulty is 'knn': pass the embeddings")
        if self.difficulty == "spread" and ef_std is None:
            raise InputError("ef_std", "this interval's difficulty is 'spread': pass the per-clip spread")
        return self._raw(ef_std, embeddings) + self.floor

    def quantile(self, level: float) -> float:
        """The conformal quantile ``q`` for a coverage ``level`` (``inf`` when too few calibration videos)."""
        if not 0.0 < float(level) < 1.0:
            raise InputError(f"coverage={level!r}", "must be between 0 and 1 (exclusive)")
        rank = conformal_rank(self.n_calibration, level)
        if rank > self.n_calibration:
            warnings.warn(f"{self.n_calibration} calibration videos cannot certify {level:.0%} coverage; the "
                          f"interval is unbounded (needs at least {math.ceil(level / (1 - level))})", stacklevel=3)
            return math.inf
        return float(self.scores[rank - 1])

    def interval(self, predicted: Any, *, ef_std: Any = None, embeddings: Any = None,
                 level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` arrays: ``predicted ± q(level) · sigma``, clipped to :attr:`bounds`."""
        pred = _vector(predicted, "predicted")
        half = self.quantile(level) * self.sigma(ef_std=ef_std, embeddings=embeddings)
        return np.clip(pred - half, *self.bounds), np.clip(pred + half, *self.bounds)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores, "reference": self.reference, "reference_errors": self.reference_errors,
                "center": self.center, "scale": self.scale}

    def settings(self) -> dict[str, Any]:
        return {"difficulty": self.difficulty, "k": self.k, "floor": self.floor, "bounds": list(self.bounds),
                "n_calibration": self.n_calibration, "n_reference": int(len(self.reference_errors))}

    @classmethod
    def restore(cls, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> "ConformalInterval":
        ci = cls()
        ci.difficulty, ci.k, ci.floor = str(settings["difficulty"]), int(settings["k"]), float(settings["floor"])
        ci.bounds = (float(settings["bounds"][0]), float(settings["bounds"][1]))
        for name, value in arrays.items():
            setattr(ci, name, np.asarray(value, dtype=np.float64))
        if ci.difficulty not in DIFFICULTIES or ci.n_calibration < 1:
            raise WeightsError(f"invalid calibration interval (difficulty {ci.difficulty!r}, "
                               f"{ci.n_calibration} scores)")
        ci._check_fields(settings)
        return ci

    def _check_fields(self, settings: dict[str, Any]) -> None:
        """Every field of a restored interval in range and finite (``ValueError`` naming the field)."""
        import math  # noqa: PLC0415

        k = settings["k"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"interval.k must be a positive integer, found {k!r}")
        if not math.isfinite(self.floor) or self.floor < 0:
            raise ValueError(f"interval.floor must be a finite number >= 0, found {settings['floor']!r}")
        lo, hi = self.bounds
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"interval.bounds must be two finite numbers, low < high, found {settings['bounds']!r}")
        for name in ("scores", "reference", "reference_errors", "center", "scale"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"interval.{name} holds NaN or infinite values")
        if self.difficulty == "knn":
            ref = self.reference
            if ref.ndim != 2 or len(ref) != len(self.reference_errors) or k > len(ref):
                raise ValueError(f"interval.reference must be [n, D] with n = {len(self.reference_errors)} errors "
                                 f"and n >= k = {k}, found shape {ref.shape}")
            if self.center.shape != (ref.shape[1],) or self.scale.shape != (ref.shape[1],) or (self.scale <= 0).any():
                raise ValueError(f"interval.center and interval.scale must be {ref.shape[1]} values (the embedding "
                                 f"width), scale positive; found {self.center.shape} and {self.scale.shape}")


class Calibration:
    """What a model carries to say how far to trust it: an EF interval and a shift detector.

    Attributes:
        interval: a :class:`ConformalInterval` or ``None``.
        detector: a :class:`~coreecho.analysis.shift.ShiftDetector` or ``None``.
        coverage: default nominal coverage of ``ef_low``/``ef_high`` (0.9).
        metadata: provenance (data, split, number of videos, seeds, coreecho version).
    """

    def __init__(self, interval: ConformalInterval | None = None, detector: Any = None, *,
                 coverage: float = 0.9, metadata: dict[str, Any] | None = None) -> None:
        self.interval, self.detector = interval, detector
        self.coverage = float(coverage)
        self.metadata = dict(metadata or {})
        self.fingerprint: str | None = None  # state_fingerprint of the weights it was fitted for

    def apply(self, ef: float, ef_std: float, embedding: np.ndarray, coverage: float | None = None,
              ) -> dict[str, Any]:
        """``ef_low``, ``ef_high``, ``coverage``, ``shift_score``, ``is_shifted`` for one video."""
        out: dict[str, Any] = {}
        if self.interval is not None and np.isfinite(ef):
            level = self.coverage if coverage is None else float(coverage)
            low, high = self.interval.interval([ef], ef_std=[ef_std], embeddings=embedding[None], level=level)
            out.update(ef_low=float(low[0]), ef_high=float(high[0]), coverage=level)
        if self.detector is not None:
            score, shifted = self.detector.assess(embedding)
            out.update(shift_score=float(score), is_shifted=bool(shifted))
        return out

    # --------------------------------------------------------------------------------------- persistence
    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, float64, keyed ``interval.*`` and ``shift.*`` (what ``calibration.safetensors`` holds)."""
        out: dict[str, np.ndarray] = {}
        if self.interval is not None:
            out.update({f"interval.{k}": v for k, v in self.interval.arrays().items()})
        if self.detector is not None:
            out.update({f"shift.{k}": v for k, v in self.detector.arrays().items()})
        return {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in out.items()}

    def save(self, folder: str | os.PathLike) -> dict[str, Any]:
        """Write ``calibration.safetensors`` into ``folder``; return the ``config.json`` entry (with its sha256)."""
        from safetensors.numpy import save_file  # noqa: PLC0415

        folder = Path(folder)
        arrays = self.arrays()
        # atomic (a kill leaves the previous file); one metadata key: Rust orders a map at random
        replace_atomically(folder / FILE_NAME, lambda tmp: save_file(arrays, str(tmp), metadata={
            "format": FORMAT_NAME}), path=True)
        entry: dict[str, Any] = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "coreecho_version": __version__,
            "file": FILE_NAME, "sha256": hashlib.sha256((folder / FILE_NAME).read_bytes()).hexdigest(),
            "coverage": self.coverage,
            "interval": None if self.interval is None else self.interval.settings(),
            "shift": None if self.detector is None else self.detector.to_dict(),
            "metadata": self.metadata,
        }
        return entry

    @classmethod
    def load(cls, folder: str | os.PathLike, entry: dict[str, Any]) -> "Calibration":
        """Read ``calibration.safetensors`` named by a ``config.json`` entry, verifying its sha256.

        Raises:
            ChecksumError: the file's sha256 differs from the entry's (tampered or mismatched file).
            WeightsError: missing or unreadable file, unknown format or newer version.
        """
        from safetensors import SafetensorError  # noqa: PLC0415
        from safetensors.numpy import load  # noqa: PLC0415

        if not isinstance(entry, dict) or entry.get("format") != FORMAT_NAME:
            raise WeightsError(f"{folder}: config.json's 'calibration' entry is not a coreecho calibration")
        version = entry.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise WeightsError(f"{folder}: calibration format_version {version!r} is newer than this coreecho "
                               f"({__version__}) understands; upgrade coreecho")
        name = str(entry.get("file", FILE_NAME))
        path = Path(folder) / Path(name).name
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise WeightsError(f"{path}: config.json names a calibration file that cannot be read ({err}); "
                               "copy it with the weights or recalibrate (coreecho calibrate)") from err
        actual = hashlib.sha256(raw).hexdigest()
        if actual != entry.get("sha256"):
            raise ChecksumError(f"{path}: sha256 is {actual} but config.json records {entry.get('sha256')}; the "
                                "calibration was modified or does not belong to this model. Restore it, or "
                                "recalibrate (coreecho calibrate).")
        try:
            arrays = load(raw)
        except (SafetensorError, ValueError) as err:
            raise WeightsError(f"{path}: not a readable safetensors file ({err})") from err
        odd = {k: str(v.dtype) for k, v in arrays.items() if not np.issubdtype(v.dtype, np.floating)}
        if odd:  # coreecho writes float64 only: integers or booleans here mean another tool wrote this file
            raise WeightsError(f"{path}: calibration arrays must hold floating-point values, found "
                               f"{', '.join(f'{k} ({d})' for k, d in sorted(odd.items()))}; recalibrate "
                               "(coreecho calibrate)")
        interval = detector = None
        try:
            if entry.get("interval") is not None:
                interval = ConformalInterval.restore(entry["interval"], {
                    k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("interval.")})
            if entry.get("shift") is not None:
                detector = ShiftDetector.from_dict(entry["shift"], {
                    k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("shift.")}, source=str(path))
        except (KeyError, TypeError, ValueError) as err:
            raise WeightsError(f"{path}: invalid calibration ({type(err).__name__}: {err})") from err
        except WeightsError as err:
            if str(path) in str(err):
                raise
            raise WeightsError(f"{path}: {err}") from err
        coverage = entry.get("coverage", 0.9)
        if isinstance(coverage, bool) or not isinstance(coverage, (int, float)) or not 0.0 < float(coverage) < 1.0:
            raise WeightsError(f"{path}: config.json's calibration coverage must be a number between 0 and 1 "
                               f"(exclusive), found {coverage!r}")
        if not isinstance(entry.get("metadata") or {}, dict):
            raise WeightsError(f"{path}: config.json's calibration metadata must be an object")
        return cls(interval, detector, coverage=float(coverage), metadata=dict(entry.get("metadata") or {}))

    def check_width(self, dim: int, source: str) -> None:
        """Raise :class:`~coreecho.errors.WeightsError` naming ``source`` when the calibration's embeddings are not
        ``dim`` wide (the model's embedding width): it was fitted on another model."""
        widths = {}
        if self.interval is not None and self.interval.difficulty == "knn":
            widths["interval.reference"] = int(self.interval.reference.shape[1])
        if self.detector is not None:
            widths["shift.dim"] = int(self.detector.dim)
        wrong = {k: v for k, v in widths.items() if v != int(dim)}
        if wrong:
            raise WeightsError(f"{source}: the calibration's embeddings are {', '.join(f'{k} = {v}' for k, v in wrong.items())} "
                               f"wide but the model's are {dim}; it belongs to another model (recalibrate: "
                               "coreecho calibrate)")

    def __repr__(self) -> str:
        parts = []
        if self.interval is not None:
            parts.append(f"interval={self.interval.difficulty!r} n={self.interval.n_calibration} "
                         f"coverage={self.coverage:g}")
        if self.detector is not None:
            parts.append(f"shift={self.detector.method!r} false_alarm_rate={self.detector.false_alarm_rate:g}")
        return f"Calibration({', '.join(parts) or 'empty'})"
