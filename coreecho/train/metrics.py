"""Regression metrics of EF prediction: MAE, RMSE, R² and bootstrap 95% confidence intervals.

R² is ``1 - SS_res / SS_tot`` with ``SS_tot`` around the mean of the true values (scikit-learn's
``r2_score``). Confidence intervals resample videos with replacement (percentile bootstrap).

Example:
    >>> import numpy as np
    >>> m = regression_metrics(np.array([50., 60., 70.]), np.array([52., 58., 71.]), bootstrap=0)
    >>> round(m["mae"], 4), round(m["rmse"], 4), round(m["r2"], 4)
    (1.6667, 1.7321, 0.955)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreecho.errors import InputError

__all__ = ["mae", "rmse", "r2", "regression_metrics", "format_metrics"]


def _check(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape or t.size == 0:
        raise InputError("metrics", f"need equally long non-empty arrays, got {t.size} true and {p.size} predicted")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise InputError("metrics", "true or predicted values contain NaN or infinity")
    return t, p


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error. Example: ``mae([1, 2], [2, 2]) == 0.5``."""
    t, p = _check(y_true, y_pred)
    return float(np.abs(t - p).mean())


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error. Example: ``rmse([0, 0], [3, 4]) == 3.5355...``."""
    t, p = _check(y_true, y_pred)
    return float(np.sqrt(((t - p) ** 2).mean()))


def r2(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination (``nan`` when the true values are all equal). Example: ``r2([1, 3], [1, 3]) == 1``."""
    t, p = _check(y_true, y_pred)
    ss_tot = ((t - t.mean()) ** 2).sum()
    return float(1.0 - ((t - p) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan")


def _batched(t: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics of each row of ``[B, n]`` arrays."""
    err = t - p
    ss_tot = ((t - t.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2s = np.where(ss_tot > 0, 1.0 - (err**2).sum(axis=1) / ss_tot, np.nan)
    return {"mae": np.abs(err).mean(axis=1), "rmse": np.sqrt((err**2).mean(axis=1)), "r2": r2s}


def regression_metrics(y_true: Any, y_pred: Any, *, bootstrap: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> dict[str, Any]:
    """MAE, RMSE and R² with percentile-bootstrap confidence intervals.

    Args:
        y_true: true values (one per video).
        y_pred: predictions.
        bootstrap: resamples (``0``: no intervals).
        confidence: level of the intervals.
        seed: seed of the resampling.

    Returns:
        ``{"n", "mae", "rmse", "r2"}`` and, with ``bootstrap > 0``, ``"mae_ci"``, ``"rmse_ci"``, ``"r2_ci"``
        (``[low, high]``) and ``"bootstrap"``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> t = rng.uniform(20, 80, 200)
        >>> m = regression_metrics(t, t + rng.normal(0, 4, 200))
        >>> m["mae_ci"][0] < m["mae"] < m["mae_ci"][1]
        True
    """
    t, p = _check(y_true, y_pred)
    point = _batched(t[None], p[None])
    out: dict[str, Any] = {"n": int(t.size), **{k: float(v[0]) for k, v in point.items()}}
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        alpha = (1.0 - confidence) / 2.0
        stats: dict[str, list[np.ndarray]] = {"mae": [], "rmse": [], "r2": []}
        chunk = max(1, min(bootstrap, 2_000_000 // max(1, t.size)))
        done = 0
        while done < bootstrap:
            m = min(chunk, bootstrap - done)
            idx = rng.integers(0, t.size, size=(m, t.size))
            for k, v in _batched(t[idx], p[idx]).items():
                stats[k].append(v)
            done += m
        for k, parts in stats.items():
            values = np.concatenate(parts)
            values = values[np.isfinite(values)]
            out[f"{k}_ci"] = ([float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))]
                              if values.size else [float("nan"), float("nan")])
        out["bootstrap"] = int(bootstrap)
        out["confidence"] = float(confidence)
    return out


def format_metrics(m: dict[str, Any]) -> str:
    """One line per metric, with the interval when present.

    Example:
        >>> print(format_metrics({"n": 2, "mae": 1.0, "rmse": 1.5, "r2": 0.9}))
        n     2
        MAE   1.000
        RMSE  1.500
        R2    0.9000
    """
    lines = [f"n     {m['n']}"]
    for key, label, fmt in (("mae", "MAE ", "{:.3f}"), ("rmse", "RMSE", "{:.3f}"), ("r2", "R2  ", "{:.4f}")):
        line = f"{label}  {fmt.format(m[key])}"
        if f"{key}_ci" in m:
            lo, hi = m[f"{key}_ci"]
            line += f"  (95% CI {fmt.format(lo)} to {fmt.format(hi)})"
        lines.append(line)
    return "\n".join(lines)
