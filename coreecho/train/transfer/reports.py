"""What transfer runs report: the paper's metrics per fold and pooled, their summary, and CoReEcho's numbers.

* regression: Pearson correlation, MAE, RMSE and R², overall and per image quality when the dataset has one
  (CAMUS: ``good``, ``medium``, ``poor`` and ``good+medium``, the subset CoReEcho reports);
* classification: F1, accuracy, sensitivity, specificity, precision (class 1 positive) and ROC AUC.

Example:
    >>> aggregate([{"mae": 4.0}, {"mae": 6.0}])["mae"]["mean"]
    5.0
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coreecho.errors import InputError
from coreecho.train.metrics import regression_metrics

__all__ = ["PAPER_RESULTS", "MODE_NAMES", "HEADLINE", "TransferResult", "regression_report",
           "classification_report", "aggregate"]

#: CoReEcho's transfer results (arXiv 2403.10164): CAMUS on good+medium quality (10 folds), HMC-QU (5 folds).
#: Classification metrics are fractions (the paper prints percentages).
PAPER_RESULTS: dict[tuple[str, str], dict[str, float]] = {
    ("camus", "full"): {"pearson": 0.807, "mae": 5.29},
    ("camus", "mlp"): {"pearson": 0.730, "mae": 6.28},
    ("hmcqu", "full"): {"f1": 0.9291, "accuracy": 0.9064, "specificity": 0.8607},
    ("hmcqu", "mlp"): {"f1": 0.8955, "accuracy": 0.8518},
}
#: How each recipe is named in reports.
MODE_NAMES = {"linear": "linear probing", "mlp": "MLP probing", "full": "full fine-tuning"}
#: The metrics a report shows first, per task.
HEADLINE = {"regression": ("pearson", "mae", "rmse", "r2"),
            "classification": ("f1", "accuracy", "sensitivity", "specificity", "precision", "auc")}


def _nan() -> float:
    return float("nan")


def _pearson(t: np.ndarray, p: np.ndarray) -> float:
    if t.size < 2 or t.std() == 0 or p.std() == 0:
        return _nan()
    return float(np.corrcoef(t, p)[0, 1])


def regression_report(y_true: Any, y_pred: Any, strata: dict[str, Sequence[str]] | None = None) -> dict[str, float]:
    """Pearson r, MAE, RMSE, R² and ``n``, overall and per stratum value (keys ``"mae[quality=good]"``...).

    A ``quality`` stratum with good and medium items also gets the combined ``good+medium`` subset.

    Example:
        >>> m = regression_report([50, 60, 70], [52, 58, 71], {"quality": ["good", "good", "poor"]})
        >>> round(m["mae"], 3), round(m["pearson"], 3), m["n[quality=good]"]
        (1.667, 0.978, 2)
    """
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)

    def one(mask: np.ndarray) -> dict[str, float]:
        if not mask.any():
            return {}
        m = regression_metrics(t[mask], p[mask], bootstrap=0)
        return {"n": int(mask.sum()), "pearson": _pearson(t[mask], p[mask]), "mae": m["mae"], "rmse": m["rmse"],
                "r2": m["r2"]}

    out: dict[str, float] = dict(one(np.ones(t.size, dtype=bool)))
    for name, values in (strata or {}).items():
        vals = np.asarray([str(v) for v in values])
        subsets = {v: vals == v for v in sorted(set(vals.tolist()))}
        if name == "quality" and {"good", "medium"} <= set(subsets):
            subsets["good+medium"] = (vals == "good") | (vals == "medium")
        for value, mask in subsets.items():
            for k, v in one(mask).items():
                out[f"{k}[{name}={value}]"] = v
    return out


def classification_report(y_true: Any, y_pred: Any, score: Any = None) -> dict[str, float]:
    """F1, accuracy, sensitivity, specificity, precision (class 1 = positive), ROC AUC (from ``score``) and ``n``.

    Undefined ratios (e.g. specificity without negatives) are NaN. Multi-class labels report accuracy and
    macro F1 only.

    Example:
        >>> m = classification_report([1, 1, 0, 0], [1, 0, 0, 0], score=[0.9, 0.4, 0.2, 0.1])
        >>> m["accuracy"], m["sensitivity"], m["specificity"], round(m["f1"], 3), m["auc"]
        (0.75, 0.5, 1.0, 0.667, 1.0)
    """
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape or t.size == 0:
        raise InputError("metrics", f"need equally long non-empty arrays, got {t.size} and {p.size}")

    def ratio(a: float, b: float) -> float:
        return float(a / b) if b > 0 else _nan()

    out: dict[str, float] = {"n": int(t.size), "accuracy": float((t == p).mean())}
    if max(t.max(), p.max()) > 1:
        from sklearn.metrics import f1_score  # noqa: PLC0415

        out["f1"] = float(f1_score(t, p, average="macro"))
        return out
    tp = float(((t == 1) & (p == 1)).sum())
    tn = float(((t == 0) & (p == 0)).sum())
    fp = float(((t == 0) & (p == 1)).sum())
    fn = float(((t == 1) & (p == 0)).sum())
    out.update({"f1": ratio(2 * tp, 2 * tp + fp + fn), "sensitivity": ratio(tp, tp + fn),
                "specificity": ratio(tn, tn + fp), "precision": ratio(tp, tp + fp), "auc": _nan()})
    if score is not None and len(np.unique(t)) == 2:
        from sklearn.metrics import roc_auc_score  # noqa: PLC0415

        out["auc"] = float(roc_auc_score(t, np.asarray(score, dtype=np.float64).reshape(-1)))
    return out


def aggregate(per_fold: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation over folds of every metric (NaNs ignored; ``n`` keys summed).

    Example:
        >>> aggregate([{"mae": 4.0, "n": 5}, {"mae": 6.0, "n": 5}])["mae"]
        {'mean': 5.0, 'sd': 1.4142135623730951, 'folds': 2}
    """
    keys: list[str] = []
    for d in per_fold:
        keys += [k for k in d if k not in keys]
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = np.array([d.get(k, np.nan) for d in per_fold], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if k == "n" or k.startswith("n["):
            out[k] = {"total": int(vals.sum()), "folds": int(vals.size)}
            continue
        mean = float(vals.mean()) if vals.size else _nan()
        sd = float(vals.std(ddof=1)) if vals.size > 1 else (0.0 if vals.size else _nan())
        out[k] = {"mean": mean, "sd": sd, "folds": int(vals.size)}
    return out


@dataclass
class TransferResult:
    """Cross-validated transfer metrics.

    Example:
        >>> r = TransferResult("csv", "mlp", "regression", [{"mae": 4.0}, {"mae": 6.0}],
        ...                    aggregate([{"mae": 4.0}, {"mae": 6.0}]), {"mae": 5.0})
        >>> r.summary["mae"]["mean"], r.headline("mae")
        (5.0, 5.0)

    Attributes:
        dataset: dataset name (``camus``, ``hmcqu``, ``csv``...).
        mode: recipe.
        task: ``regression`` or ``classification``.
        folds: per-fold metrics (see :func:`regression_report` / :func:`classification_report`).
        summary: metric → ``{"mean", "sd", "folds"}`` over folds (``n`` keys: ``{"total", "folds"}``).
        pooled: metrics of all out-of-fold predictions together.
        predictions: one dict per item: ``name``, ``patient``, ``fold``, ``true``, ``pred`` (and ``score``, the
            probability of class 1, for classification), plus the strata values.
        config: the :class:`TransferConfig` and run details (model, seconds).
        paper: CoReEcho's published numbers for this dataset and recipe, when there are any.
    """

    dataset: str
    mode: str
    task: str
    folds: list[dict[str, float]]
    summary: dict[str, dict[str, float]]
    pooled: dict[str, float]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes ``None``)."""
        def clean(v: Any) -> Any:
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, (np.floating, float)):
                return None if not math.isfinite(float(v)) else float(v)
            if isinstance(v, np.integer):
                return int(v)
            return v

        return clean(asdict(self))

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as indented JSON."""
        from coreecho._atomic import replace_atomically

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        return replace_atomically(p, lambda fh: fh.write(text))

    def headline(self, metric: str) -> float:
        """Mean over folds of a metric, on CAMUS's good+medium subset when the results have one."""
        for key in (f"{metric}[quality=good+medium]", metric):
            if key in self.summary:
                return float(self.summary[key]["mean"])
        return _nan()

    def table(self) -> str:
        """A printable table: mean ± sd over folds, pooled, and the paper's numbers."""
        pct = self.task == "classification"

        def fmt(v: float, key: str) -> str:
            if v is None or not math.isfinite(v):
                return "-"
            base = key.split("[")[0]
            if pct and base != "auc":
                return f"{100 * v:.2f}"
            return f"{v:.3f}" if base in ("pearson", "r2", "auc") else f"{v:.2f}"

        n_total = self.summary.get("n", {}).get("total", len(self.predictions))
        lines = [f"{self.dataset} | {MODE_NAMES.get(self.mode, self.mode)} | {self.task} | "
                 f"{len(self.folds)} folds | {n_total} videos",
                 f"{'metric':<34} {'mean ± sd over folds':>22} {'pooled':>9} {'paper':>8}"]
        subset = "[quality=good+medium]" if any(k.endswith("[quality=good+medium]") for k in self.summary) else ""
        keys = [k for k in self.summary if k.split("[")[0] in HEADLINE[self.task]]
        keys.sort(key=lambda k: ("[" in k, k.split("[", 1)[1] if "[" in k else "",
                                 HEADLINE[self.task].index(k.split("[")[0])))
        for k in keys:
            s = self.summary[k]
            paper = None
            if self.paper and k.split("[")[0] in self.paper and k == k.split("[")[0] + subset:
                paper = self.paper[k.split("[")[0]]
            ms = f"{fmt(s['mean'], k)} ± {fmt(s['sd'], k)}" if math.isfinite(s["mean"]) else "-"
            lines.append(f"{k:<34} {ms:>22} {fmt(self.pooled.get(k, _nan()), k):>9} "
                         f"{fmt(paper, k) if paper is not None else '':>8}")
        if pct:
            lines.append("(classification metrics in %; AUC as a fraction)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
