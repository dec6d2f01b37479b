"""Distribution-shift detection on embeddings, with a false-alarm rate calibrated on held-out data.

A :class:`ShiftDetector` is fitted on embeddings of in-distribution videos (e.g. the training set) and gives
every new embedding an out-of-distribution score; a video is flagged when its score exceeds a threshold.

Scores (larger = further from the reference):

* ``"knn"`` — mean Euclidean distance to the ``k`` nearest reference embeddings. Non-parametric: it follows a
  curved or multi-modal reference set.
* ``"mahalanobis"`` — ``sqrt((x - mu)^T S^-1 (x - mu))`` with ``S`` the Ledoit-Wolf shrinkage covariance of the
  reference (:class:`sklearn.covariance.LedoitWolf`), well conditioned even with fewer videos than dimensions.
* ``"pca"`` — distance from the reference's principal subspace (the first ``n_components`` principal axes):
  the norm of the part of ``x - mu`` that those axes do not explain. A trained EF model packs its embeddings
  near a low-dimensional manifold (on ``phantom-tiny`` the first axis alone is the EF); a shifted input that
  still yields a plausible EF (a left-right flipped view) lands *off* that manifold, where kNN and Mahalanobis
  distances, dominated by the large in-manifold spread, barely notice it (docs/calibration.md).

Embeddings are first **standardised** (per-dimension mean and standard deviation of the reference) by default;
``normalization="l2"`` (unit-norm rows) and ``"none"`` are the alternatives. On phantoms with a tiny random
encoder, standardisation gave the highest AUROC for the hardest shift (left-right flipped views), see
``docs/analysis.md``.

Calibration: the threshold is the ``ceil((n + 1)(1 - rate))``-th smallest of ``n`` scores of *held-out*
in-distribution embeddings, the finite-sample (split-conformal) version of the ``1 - rate`` quantile: for
exchangeable data the probability that a fresh in-distribution video is flagged is at most ``rate`` (and
:attr:`ShiftDetector.expected_false_alarm_rate` gives it exactly). The held-out points are never part of the
reference: scoring reference points against a set that contains them gives a kNN distance with one zero (the
point itself) and an in-sample Mahalanobis distance, both biased low, so the threshold would be too low and
false alarms too frequent. Without an explicit calibration set, a random ``calibration_fraction`` of the
reference is held out and the rest is the reference (it is not refitted on everything afterwards, since a
larger reference shrinks kNN distances and would make the calibrated threshold no longer exact).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = ShiftDetector().fit(rng.normal(size=(200, 8)), method="knn", k=5)
    >>> bool(det.is_shifted(np.full(8, 6.0))), det.n_reference, det.n_calibration
    (True, 140, 60)
    >>> score, flagged = det.assess(rng.normal(size=8))

Length: one class (fit, calibrate, score, persist) and :func:`attach`; about 200 of its 550 lines are docstrings
with runnable examples, the code is about 350 lines.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from coreecho._atomic import replace_atomically
from coreecho._version import __version__
from coreecho.errors import CoReEchoError, ConfigError, InputError

__all__ = ["ShiftDetector", "attach", "METHODS", "NORMALIZATIONS", "ARRAYS", "FORMAT_NAME", "FORMAT_VERSION"]

#: Score methods.
METHODS = ("knn", "mahalanobis", "pca")
#: Embedding normalisations applied before scoring.
NORMALIZATIONS = ("standardize", "l2", "none")
#: ``format`` field of a saved detector's JSON.
FORMAT_NAME = "coreecho-shift-detector"
FORMAT_VERSION = 2  # 2: method "pca" and the "components" array; version-1 files still load

#: Names of the arrays a detector holds (:meth:`ShiftDetector.arrays`).
ARRAYS = ("reference", "center", "scale", "location", "precision", "calibration_scores", "components")


def _as_matrix(x: Any, name: str, dim: int | None = None) -> tuple[np.ndarray, bool]:
    """``[N, D]`` float64 and whether the input was a single vector."""
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    single = a.ndim == 1
    if single:
        a = a[None]
    if a.ndim != 2 or a.shape[1] < 1:
        raise InputError(name, f"expected embeddings [N, D] or one embedding [D], got shape {np.shape(x)}")
    if dim is not None and a.shape[1] != dim:
        raise InputError(name, f"embeddings have {a.shape[1]} dimensions but the detector was fitted on {dim}")
    return a, single


class ShiftDetector:
    """Out-of-distribution score and calibrated flag for embeddings (see the module docstring).

    Create with ``ShiftDetector()`` and call :meth:`fit`, or :meth:`load` a saved one.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(300, 16))
        >>> det = ShiftDetector().fit(x, method="mahalanobis")
        >>> det.method, det.dim, det.n_calibration
        ('mahalanobis', 16, 90)

    Attributes:
        method: ``"knn"``, ``"mahalanobis"`` or ``"pca"``.
        k: neighbours averaged by the kNN score.
        n_components: principal axes kept by the ``"pca"`` score.
        normalization: ``"standardize"``, ``"l2"`` or ``"none"``.
        false_alarm_rate: the requested rate of flagged in-distribution embeddings.
        threshold: scores above it are flagged.
        calibration_scores: the held-out scores the threshold came from (sorted).
        reference: the normalised reference embeddings (kNN) — kept for scoring.
        metadata: free-form provenance (model name, data), saved with the detector.
    """

    def __init__(self) -> None:
        self.method: str = "knn"
        self.k: int = 5
        self.n_components: int = 0
        self.normalization: str = "standardize"
        self.false_alarm_rate: float = 0.05
        self.threshold: float = float("nan")
        self.dim: int = 0
        self.n_reference: int = 0
        self.center = np.zeros(0)
        self.scale = np.zeros(0)
        self.reference = np.zeros((0, 0))
        self.location = np.zeros(0)
        self.precision = np.zeros((0, 0))
        self.calibration_scores = np.zeros(0)
        self.components = np.zeros((0, 0))
        self.metadata: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------ fitting
    def fit(self, reference: Any, calibration: Any = None, *, method: str = "knn", k: int = 5,
            false_alarm_rate: float = 0.05, normalization: str = "standardize", calibration_fraction: float = 0.3,
            seed: int = 0, metadata: dict[str, Any] | None = None, n_components: int = 10) -> "ShiftDetector":
        """Fit on in-distribution embeddings and calibrate the threshold.

        Args:
            reference: in-distribution embeddings ``[N, D]`` (numpy or torch).
            calibration: other in-distribution embeddings ``[M, D]`` for the threshold; when ``None`` a random
                ``calibration_fraction`` of ``reference`` is held out for it (and not used as reference).
            method: ``"knn"``, ``"mahalanobis"`` or ``"pca"``.
            k: neighbours for ``"knn"``.
            n_components: principal axes kept by ``"pca"`` (at most ``min(N - 1, D)``).
            false_alarm_rate: wanted share of in-distribution embeddings flagged, in (0, 1).
            normalization: ``"standardize"`` (default), ``"l2"`` or ``"none"``.
            calibration_fraction: share of ``reference`` held out when ``calibration`` is ``None``.
            seed: seed of that split.
            metadata: free-form JSON-ready provenance kept with the detector.

        Returns:
            ``self``.

        Raises:
            InputError: unknown method/normalisation, bad shapes, too few embeddings for ``k``.

        Example:
            >>> import numpy as np
            >>> x = np.random.default_rng(1).normal(size=(100, 4))
            >>> det = ShiftDetector().fit(x[:70], x[70:], method="mahalanobis", false_alarm_rate=0.1)
            >>> det.n_calibration, round(det.expected_false_alarm_rate, 4)
            (30, 0.0968)
        """
        if method not in METHODS:
            raise InputError(f"method={method!r}", f"expected one of {list(METHODS)}")
        if normalization not in NORMALIZATIONS:
            raise InputError(f"normalization={normalization!r}", f"expected one of {list(NORMALIZATIONS)}")
        if not (0.0 < float(false_alarm_rate) < 1.0):
            raise InputError(f"false_alarm_rate={false_alarm_rate!r}", "must be between 0 and 1 (exclusive)")
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise InputError(f"k={k!r}", "must be a positive integer")
        ref, _ = _as_matrix(reference, "reference")
        if not np.isfinite(ref).all():
            raise InputError("reference", "contains NaN or infinite values (drop failed videos first)")
        if calibration is None:
            if not (0.0 < calibration_fraction < 1.0):
                raise InputError(f"calibration_fraction={calibration_fraction!r}", "must be between 0 and 1")
            n_cal = int(round(calibration_fraction * len(ref)))
            if n_cal < 1 or len(ref) - n_cal < 2:
                raise InputError("reference", f"{len(ref)} embeddings are too few to hold out a calibration "
                                 "split; pass more embeddings or an explicit calibration set")
            perm = np.random.default_rng(seed).permutation(len(ref))
            cal, ref = ref[perm[:n_cal]], ref[perm[n_cal:]]
        else:
            cal, _ = _as_matrix(calibration, "calibration", ref.shape[1])
            if not np.isfinite(cal).all():
                raise InputError("calibration", "contains NaN or infinite values")
        if method == "pca" and not (isinstance(n_components, (int, np.integer)) and not isinstance(n_components, bool)
                                    and 1 <= n_components <= min(len(ref) - 1, ref.shape[1])):
            raise InputError(f"n_components={n_components!r}", f"must be an integer in 1..{min(len(ref) - 1, ref.shape[1])}"
                             " (fewer than the reference embeddings and their dimensions)")
        if method == "knn" and len(ref) < k:
            raise InputError("reference", f"{len(ref)} reference embeddings are fewer than k={k} neighbours")
        if len(ref) < 2:
            raise InputError("reference", "need at least 2 reference embeddings")

        self.method, self.k, self.normalization = method, int(k), normalization
        self.false_alarm_rate = float(false_alarm_rate)
        self.dim, self.n_reference = ref.shape[1], len(ref)
        self.metadata = dict(metadata or {})
        if normalization == "standardize":
            self.center = ref.mean(axis=0)
            sd = ref.std(axis=0)
            self.scale = np.where(sd > 1e-12 * max(1.0, float(np.abs(ref).max())), sd, 1.0)
        else:
            self.center, self.scale = np.zeros(self.dim), np.ones(self.dim)
        z = self._normalize(ref)
        self.components = np.zeros((0, self.dim))
        self.n_components = 0
        if method == "knn":
            self.reference = z
            self.location, self.precision = np.zeros(0), np.zeros((0, 0))
        elif method == "pca":
            self.location = z.mean(axis=0)
            _, _, vt = np.linalg.svd(z - self.location, full_matrices=False)
            self.n_components = int(n_components)
            self.components = np.ascontiguousarray(vt[:self.n_components])
            self.precision, self.reference = np.zeros((0, 0)), np.zeros((0, self.dim))
        else:
            from sklearn.covariance import LedoitWolf  # noqa: PLC0415

            lw = LedoitWolf().fit(z)
            self.location = np.asarray(lw.location_, dtype=np.float64)
            self.precision = np.asarray(lw.precision_, dtype=np.float64)
            self.reference = np.zeros((0, self.dim))
        self._calibrate(self._raw_score(self._normalize(cal)))
        return self

    def _calibrate(self, scores: np.ndarray) -> None:
        self.calibration_scores = np.sort(scores)
        n, rate = len(scores), self.false_alarm_rate
        rank = math.ceil((n + 1) * (1.0 - rate) - 1e-9)
        if rank > n:
            warnings.warn(
                f"{n} calibration embeddings cannot certify a false-alarm rate of {rate:g}: the threshold is "
                f"their maximum and about 1/(n+1) = {1 / (n + 1):.3f} of in-distribution videos will be flagged; "
                f"use at least {math.ceil(1 / rate) - 1} calibration embeddings", stacklevel=3)
            rank = n
        self.threshold = float(self.calibration_scores[rank - 1])

    # ------------------------------------------------------------------------------------------------ scoring
    @property
    def fitted(self) -> bool:
        """True once :meth:`fit` or :meth:`load` has run."""
        return self.dim > 0 and np.isfinite(self.threshold)

    @property
    def n_calibration(self) -> int:
        """Number of held-out embeddings the threshold was calibrated on."""
        return int(len(self.calibration_scores))

    @property
    def expected_false_alarm_rate(self) -> float:
        """Exact expected share of fresh in-distribution embeddings flagged, ``(n - r + 1) / (n + 1)`` for a
        threshold at rank ``r`` of ``n`` calibration scores (no ties, exchangeable data)."""
        n = self.n_calibration
        rank = int(np.searchsorted(self.calibration_scores, self.threshold, side="right"))
        return (n - rank + 1) / (n + 1) if n else float("nan")

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise CoReEchoError("this ShiftDetector is not fitted; call fit(reference_embeddings) or "
                                "ShiftDetector.load(path) first")

    def _normalize(self, x: np.ndarray) -> np.ndarray:
        if self.normalization == "l2":
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            return x / np.where(norm > 0, norm, 1.0)
        if self.normalization == "standardize":
            return (x - self.center) / self.scale
        return x

    def _raw_score(self, z: np.ndarray, chunk: int = 1024) -> np.ndarray:
        out = np.full(len(z), np.nan)
        ok = np.isfinite(z).all(axis=1)
        zs = z[ok]
        if self.method == "mahalanobis":
            d = zs - self.location
            out[ok] = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.precision, d), 0.0))
            return out
        if self.method == "pca":
            d = zs - self.location
            out[ok] = np.linalg.norm(d - (d @ self.components.T) @ self.components, axis=1)
            return out
        ref = self.reference
        ref_sq = np.einsum("ij,ij->i", ref, ref)
        res = np.empty(len(zs))
        for i in range(0, len(zs), chunk):
            q = zs[i:i + chunk]
            d2 = np.einsum("ij,ij->i", q, q)[:, None] + ref_sq[None] - 2.0 * q @ ref.T
            d = np.sqrt(np.maximum(d2, 0.0))
            res[i:i + chunk] = np.partition(d, self.k - 1, axis=1)[:, :self.k].mean(axis=1)
        out[ok] = res
        return out

    def score(self, embeddings: Any) -> np.ndarray | float:
        """Out-of-distribution score (larger = further from the reference).

        Args:
            embeddings: ``[N, D]`` or one ``[D]`` (numpy or torch). Rows with NaN (failed videos) score NaN.

        Returns:
            ``float64`` array ``[N]``, or a float for one embedding.

        Example:
            >>> import numpy as np
            >>> det = ShiftDetector().fit(np.random.default_rng(0).normal(size=(100, 3)), k=3)
            >>> det.score(np.zeros((4, 3))).shape
            (4,)
        """
        self._check_fitted()
        x, single = _as_matrix(embeddings, "embeddings", self.dim)
        s = self._raw_score(self._normalize(x))
        return float(s[0]) if single else s

    def is_shifted(self, embeddings: Any) -> np.ndarray | bool:
        """``score > threshold`` (NaN scores are not flagged); a bool for one embedding.

        Example:
            >>> import numpy as np
            >>> det = ShiftDetector().fit(np.random.default_rng(0).normal(size=(100, 3)), k=3)
            >>> det.is_shifted(np.array([[0.0, 0, 0], [9, 9, 9]])).tolist()
            [False, True]
        """
        s = self.score(embeddings)
        if isinstance(s, float):
            return bool(s > self.threshold)
        return s > self.threshold

    def p_value(self, embeddings: Any) -> np.ndarray | float:
        """Conformal p-value ``(1 + #{calibration scores >= s}) / (n + 1)``: small means unusual.

        Flagging ``p <= rate`` is equivalent to the calibrated threshold.

        Example:
            >>> import numpy as np
            >>> det = ShiftDetector().fit(np.random.default_rng(0).normal(size=(100, 3)), k=3)
            >>> round(det.p_value(np.full(3, 9.0)), 4)
            0.0323
        """
        s = self.score(embeddings)
        arr = np.atleast_1d(np.asarray(s, dtype=np.float64))
        n = self.n_calibration
        greater = n - np.searchsorted(self.calibration_scores, arr, side="left")
        p = np.where(np.isfinite(arr), (1.0 + greater) / (n + 1.0), np.nan)
        return float(p[0]) if isinstance(s, float) else p

    def assess(self, embedding: Any) -> tuple[float, bool]:
        """Score and flag of one embedding ``[D]`` (what ``predict_ef(..., return_details=True)`` reports).

        Example:
            >>> import numpy as np
            >>> det = ShiftDetector().fit(np.random.default_rng(0).normal(size=(100, 3)), k=3)
            >>> score, shifted = det.assess(np.zeros(3))
            >>> isinstance(score, float), shifted
            (True, False)
        """
        x, _ = _as_matrix(embedding, "embedding", self.dim if self.fitted else None)
        if len(x) != 1:
            raise InputError("embedding", f"assess takes one embedding [D]; got {len(x)} rows (use score())")
        s = float(self.score(x)[0])
        return s, bool(s > self.threshold)

    # ----------------------------------------------------------------------------------------- persistence
    def arrays(self) -> dict[str, np.ndarray]:
        """The detector's arrays by name (float64): what its file holds besides :meth:`to_dict`."""
        return {name: np.asarray(getattr(self, name), dtype=np.float64) for name in ARRAYS}

    def to_dict(self, include_arrays: bool = False) -> dict[str, Any]:
        """JSON-ready description: settings, threshold, sizes, calibration summary (and arrays as lists).

        Example:
            >>> import numpy as np
            >>> det = ShiftDetector().fit(np.random.default_rng(0).normal(size=(100, 3)), k=3)
            >>> d = det.to_dict()
            >>> d["method"], d["k"], d["n_reference"], d["n_calibration"]
            ('knn', 3, 70, 30)
        """
        self._check_fitted()
        cal = self.calibration_scores
        data: dict[str, Any] = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "coreecho_version": __version__,
            "method": self.method, "k": self.k, "n_components": self.n_components, "normalization": self.normalization, "dim": self.dim,
            "false_alarm_rate": self.false_alarm_rate, "threshold": self.threshold,
            "expected_false_alarm_rate": self.expected_false_alarm_rate,
            "n_reference": self.n_reference, "n_calibration": self.n_calibration,
            "calibration_summary": {"min": float(cal.min()), "median": float(np.median(cal)),
                                    "max": float(cal.max())},
            "metadata": self.metadata,
        }
        if include_arrays:
            data["arrays"] = {name: getattr(self, name).tolist() for name in ARRAYS}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], arrays: dict[str, Any] | None = None,
                  source: str = "detector") -> "ShiftDetector":
        """Rebuild from :meth:`to_dict` output (arrays from ``data["arrays"]`` or ``arrays``)."""
        if data.get("format") != FORMAT_NAME:
            raise ConfigError(f"{source}: expected a coreecho shift detector (format {FORMAT_NAME!r}), found "
                              f"format {data.get('format')!r}")
        if not isinstance(data.get("format_version"), int) or data["format_version"] > FORMAT_VERSION:
            raise ConfigError(f"{source}: detector format_version {data.get('format_version')!r} is newer than "
                              f"this coreecho ({__version__}) understands; upgrade coreecho")
        arrays = arrays if arrays is not None else data.get("arrays")
        if arrays is None:
            raise ConfigError(f"{source}: the detector's arrays are missing")
        det = cls()
        try:
            det.method, det.k, det.normalization = str(data["method"]), int(data["k"]), str(data["normalization"])
            det.n_components = int(data.get("n_components", 0))
            det.false_alarm_rate, det.threshold = float(data["false_alarm_rate"]), float(data["threshold"])
            det.dim, det.n_reference = int(data["dim"]), int(data["n_reference"])
            det.metadata = dict(data.get("metadata") or {})
            for name in ARRAYS:
                if name == "components" and name not in arrays:  # format version 1
                    det.components = np.zeros((0, det.dim))
                    continue
                setattr(det, name, np.asarray(arrays[name], dtype=np.float64))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{source}: invalid shift detector ({type(err).__name__}: {err})") from err
        if det.method not in METHODS or det.normalization not in NORMALIZATIONS:
            raise ConfigError(f"{source}: unknown method {det.method!r} or normalization {det.normalization!r}")
        det._check_fields(source)
        needed = {"knn": det.reference, "mahalanobis": det.precision, "pca": det.components}[det.method]
        if det.method == "pca" and needed.shape[0] != det.n_components:
            raise ConfigError(f"{source}: {needed.shape[0]} principal axes stored but n_components={det.n_components}")
        if needed.ndim != 2 or needed.shape[1] != det.dim or det.center.shape != (det.dim,):
            raise ConfigError(f"{source}: array shapes do not match dim={det.dim}")
        return det

    def _check_fields(self, source: str) -> None:
        """Ranges and finite values of a rebuilt detector (:class:`ConfigError` naming the field)."""
        if not (np.isfinite(self.threshold) and 0.0 < self.false_alarm_rate < 1.0):
            raise ConfigError(f"{source}: threshold must be finite and false_alarm_rate in (0, 1), found "
                              f"{self.threshold!r} and {self.false_alarm_rate!r}")
        if self.k < 1 or self.dim < 1 or self.n_reference < 1 or (self.method == "knn" and self.k > self.n_reference):
            raise ConfigError(f"{source}: k, dim and n_reference must be positive (k <= n_reference for knn), found "
                              f"k={self.k}, dim={self.dim}, n_reference={self.n_reference}")
        for name in ARRAYS:
            if not np.isfinite(getattr(self, name)).all():
                raise ConfigError(f"{source}: the detector's {name} holds NaN or infinite values")

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<stem>.json`` (settings, threshold, sha256 of the arrays) and ``<stem>.safetensors`` (arrays).

        The one format of a detector: its settings (:meth:`to_dict`) as JSON and its float64 arrays
        (:meth:`arrays`) as safetensors, no pickle. A model folder stores a detector the same way, inside its
        calibration (``config.json`` + ``calibration.safetensors``, see :mod:`coreecho.analysis.conformal`).
        Files written by earlier versions (``<stem>.json`` + ``<stem>.npz``) still load.

        Args:
            path: ``name``, ``name.json`` or ``name.safetensors``; both files are written next to each other.

        Returns:
            The path of the JSON file.

        Example:
            >>> import numpy as np, tempfile, pathlib
            >>> det = ShiftDetector().fit(np.random.default_rng(0).normal(size=(100, 3)), k=3)
            >>> p = det.save(pathlib.Path(tempfile.mkdtemp()) / "shift_detector")
            >>> p.name, ShiftDetector.load(p).threshold == det.threshold
            ('shift_detector.json', True)
        """
        from safetensors.numpy import save_file  # noqa: PLC0415 - only when a file is written

        json_path, arrays_path = _paths(path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        arrays = self.arrays()
        replace_atomically(arrays_path, lambda tmp: save_file(arrays, str(tmp), metadata={"format": FORMAT_NAME}),
                           path=True)  # atomic: a kill leaves the previous files
        data = self.to_dict()
        data["arrays_file"] = arrays_path.name
        data["arrays_sha256"] = hashlib.sha256(arrays_path.read_bytes()).hexdigest()
        replace_atomically(json_path, lambda fh: fh.write(json.dumps(data, indent=2) + "\n"))
        return json_path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ShiftDetector":
        """Read a detector written by :meth:`save` (give the ``.json``, the arrays file or the common stem).

        Raises:
            ConfigError: missing or malformed files, or arrays that do not match the JSON's checksum.
        """
        json_path, arrays_path = _paths(path)
        try:
            data = json.loads(json_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{json_path}: cannot read the shift detector ({err})") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{json_path}: expected a JSON object")
        arrays_path = json_path.with_name(Path(str(data.get("arrays_file", arrays_path.name))).name)
        try:
            raw = arrays_path.read_bytes()
        except OSError as err:
            raise ConfigError(f"{arrays_path}: cannot read the shift detector's arrays ({err})") from err
        expected = data.get("arrays_sha256")
        if expected and hashlib.sha256(raw).hexdigest() != expected:
            raise ConfigError(f"{arrays_path}: sha256 does not match {json_path.name}; the two files do not belong "
                              "together (re-save the detector)")
        return cls.from_dict(data, _read_arrays(arrays_path, raw), source=str(json_path))

    def __repr__(self) -> str:
        if not self.fitted:
            return "ShiftDetector(unfitted)"
        extra = {"knn": f", k={self.k}", "pca": f", n_components={self.n_components}"}.get(self.method, "")
        return (f"ShiftDetector(method={self.method!r}{extra}, normalization={self.normalization!r}, dim={self.dim}, "
                f"n_reference={self.n_reference}, n_calibration={self.n_calibration}, "
                f"false_alarm_rate={self.false_alarm_rate:g}, threshold={self.threshold:.4g})")


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix.lower() in (".json", ".safetensors", ".npz") else p
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")


def _read_arrays(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    """The arrays of a detector file: safetensors, or the ``.npz`` of earlier versions (read without pickle)."""
    import io  # noqa: PLC0415

    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.numpy import load  # noqa: PLC0415

    try:
        if path.suffix.lower() == ".npz":
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                return {name: npz[name] for name in ARRAYS if name in npz.files}
        return {name: value for name, value in load(raw).items() if name in ARRAYS}
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise ConfigError(f"{path}: invalid shift detector arrays ({err})") from err


def attach(model: Any, detector: ShiftDetector | None) -> Any:
    """Set a fitted detector as the model's declared ``shift_detector`` (``None`` removes it).

    Detailed predictions (``predict_ef(..., return_details=True)``) then report ``shift_score`` and
    ``is_shifted`` from ``detector.assess(embedding)``. The detector is not part of the model's
    ``state_dict``; ``model.save_pretrained`` writes it into the folder's calibration file (or save it alone
    with :meth:`ShiftDetector.save`).

    Args:
        model: a :class:`~coreecho.CoReEcho`.
        detector: a fitted :class:`ShiftDetector` whose dimension equals ``model.embed_dim``, or ``None``.

    Returns:
        The model.

    Example:
        >>> import numpy as np
        >>> from coreecho import CoReEcho  # doctest: +SKIP
        >>> model = coreecho.load_model("phantom-tiny")  # doctest: +SKIP
        >>> det = ShiftDetector().fit(model.embed(train_videos))  # doctest: +SKIP
        >>> attach(model, det).shift_detector is det  # doctest: +SKIP
        True
    """
    if detector is None:
        model.shift_detector = None
        return model
    if not isinstance(detector, ShiftDetector):
        raise InputError("detector", f"expected a ShiftDetector, got {type(detector).__name__}")
    detector._check_fitted()
    dim = getattr(model, "embed_dim", None)
    if dim is not None and int(dim) != detector.dim:
        raise InputError("detector", f"was fitted on {detector.dim}-d embeddings but the model's embeddings have "
                                     f"{dim} dimensions; fit it on embeddings of this model")
    model.shift_detector = detector
    return model
