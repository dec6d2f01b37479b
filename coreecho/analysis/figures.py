"""Figures of results: agreement of predicted with true EF, and the curves of a training run.

* :func:`agreement_stats` — bias, standard deviation of the differences and the 95 % limits of agreement
  (Bland & Altman, Lancet 1986: ``bias ± 1.96 SD`` of ``pred - true``), with MAE, RMSE and R²;
* :func:`plot_agreement` — two panels: predicted vs true EF with the identity line, and the Bland–Altman plot
  (difference against mean) with the bias and the limits drawn and labelled;
* :func:`read_metrics_csv` / :func:`plot_training_curves` — the ``metrics.csv`` a training run writes (one
  row per epoch) as loss, validation-metric and learning-rate panels, the best validation epoch marked.

Plotting needs matplotlib (the ``viz`` or ``dev`` extra); :func:`agreement_stats` and :func:`read_metrics_csv`
do not. Figures are built with :class:`matplotlib.figure.Figure` (no pyplot state), so they are safe in threads
and never open a window.

Example:
    >>> import numpy as np
    >>> s = agreement_stats([40.0, 50.0, 60.0], [42.0, 51.0, 63.0])
    >>> round(s["bias"], 3), round(s["mae"], 3)
    (2.0, 2.0)
    >>> plot_agreement([40, 50, 60], [42, 51, 63], "/tmp/agreement.png")  # doctest: +SKIP
    PosixPath('/tmp/agreement.png')
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from coreecho.errors import InputError, MissingDependencyError

__all__ = ["agreement_stats", "plot_agreement", "read_metrics_csv", "plot_training_curves", "LOA_Z"]

#: Multiple of the difference's standard deviation that gives the 95 % limits of agreement.
LOA_Z = 1.96


def _vector(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    return v


def _pairs(true: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _vector(true), _vector(pred)
    if t.shape != p.shape:
        raise InputError("pred", f"expected one prediction per true value ({len(t)}), got {len(p)}")
    ok = np.isfinite(t) & np.isfinite(p)
    if ok.sum() < 2:
        raise InputError("true, pred", f"need at least 2 finite pairs, got {int(ok.sum())}")
    return t[ok], p[ok]


def agreement_stats(true: Any, pred: Any) -> dict[str, float]:
    """Agreement of ``pred`` with ``true`` over the finite pairs.

    Returns:
        ``n``, ``bias`` (mean of ``pred - true``), ``sd`` (its standard deviation, ``ddof=1``), ``loa_low`` and
        ``loa_high`` (``bias ∓ 1.96 sd``), ``mae``, ``rmse``, ``r2`` (``1 - SS_res / SS_tot``; NaN when the true
        values are all equal) and ``pearson_r`` (NaN when either side is constant).

    Example:
        >>> s = agreement_stats([10.0, 20.0, 30.0, 40.0], [12.0, 19.0, 33.0, 41.0])
        >>> s["n"], round(s["bias"], 2), round(s["loa_high"], 2)
        (4, 1.25, 4.6)
    """
    t, p = _pairs(true, pred)
    d = p - t
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    ss_tot = float(((t - t.mean()) ** 2).sum())
    r = float(np.corrcoef(t, p)[0, 1]) if t.std() > 0 and p.std() > 0 else float("nan")
    return {"n": int(len(t)), "bias": bias, "sd": sd, "loa_low": bias - LOA_Z * sd, "loa_high": bias + LOA_Z * sd,
            "mae": float(np.abs(d).mean()), "rmse": float(np.sqrt((d ** 2).mean())),
            "r2": 1.0 - float((d ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan"), "pearson_r": r}


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError as err:
        raise MissingDependencyError("matplotlib", "viz", "plotting figures") from err
    return Figure


def _save(fig: Any, path: str | os.PathLike, dpi: int) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi)
    return p


def plot_agreement(true: Any, pred: Any, path: str | os.PathLike, *, title: str | None = None,
                   unit: str = "EF (%)", limits: tuple[float, float] | None = None, dpi: int = 120) -> Path:
    """Write a two-panel agreement figure: predicted vs true with the identity line, and the Bland–Altman plot.

    Left: one point per video, the identity line ``pred = true`` (dashed) and the least-squares line. Right:
    ``pred - true`` against ``(pred + true) / 2`` with the bias (solid) and the 95 % limits of agreement
    (``bias ± 1.96 SD``, dashed), each labelled with its value. The title carries n, MAE, RMSE and R².

    Args:
        true: reference values ``[N]`` (e.g. the EchoNet-Dynamic EF labels).
        pred: predictions ``[N]``; pairs where either is NaN are left out (and counted in the title).
        path: PNG (or any matplotlib format) to write; folders are created.
        title: first title line (default ``"predicted vs true"``).
        unit: axis unit label.
        limits: axis range of the scatter panel (default: ``(0, 100)`` when every value lies there, else the data
            range with a margin).
        dpi: resolution.

    Returns:
        The path written.

    Raises:
        InputError: lengths differ, or fewer than 2 finite pairs.
        MissingDependencyError: matplotlib is not installed.

    Example:
        >>> plot_agreement(result.truth, result.pred, "runs/eval/agreement.png")  # doctest: +SKIP
    """
    t_all = _vector(true)
    t, p = _pairs(true, pred)
    dropped = len(t_all) - len(t)
    s = agreement_stats(t, p)
    Figure = _figure_class()
    fig = Figure(figsize=(11.0, 4.9), dpi=dpi)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.25]})
    if limits is None:
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        limits = (0.0, 100.0) if lo >= 0 and hi <= 100 else (lo - 0.05 * (hi - lo + 1), hi + 0.05 * (hi - lo + 1))
    size = float(np.clip(900.0 / np.sqrt(len(t)), 4.0, 30.0))
    left.plot(limits, limits, color="0.3", ls="--", lw=1.2, label="identity (pred = true)", zorder=1)
    left.scatter(t, p, s=size, alpha=0.6, color="tab:blue", linewidths=0, zorder=2, label=f"videos (n={s['n']})")
    if t.std() > 0:
        slope, intercept = np.polyfit(t, p, 1)
        xs = np.array(limits)
        left.plot(xs, slope * xs + intercept, color="tab:orange", lw=1.4, zorder=3,
                  label=f"least squares: pred = {slope:.2f}·true {intercept:+.1f}")
    left.set_xlim(limits)
    left.set_ylim(limits)
    left.set_aspect("equal")
    left.set_xlabel(f"true {unit}")
    left.set_ylabel(f"predicted {unit}")
    left.legend(loc="upper left", fontsize=8, framealpha=0.9)
    left.set_title("predicted vs true", fontsize=10)
    left.grid(alpha=0.25)

    mean, diff = (p + t) / 2.0, p - t
    right.scatter(mean, diff, s=size, alpha=0.6, color="tab:blue", linewidths=0, zorder=2)
    right.axhline(0.0, color="0.6", lw=0.8, zorder=1)
    lines = [(s["bias"], "-", f"bias {s['bias']:+.2f}"),
             (s["loa_high"], "--", f"+1.96 SD {s['loa_high']:+.2f}"),
             (s["loa_low"], "--", f"-1.96 SD {s['loa_low']:+.2f}")]
    for y, style, text in lines:
        right.axhline(y, color="tab:red", ls=style, lw=1.3, zorder=3)
    span = max(abs(diff).max(), abs(s["loa_high"]), abs(s["loa_low"]), 1.0) * 1.25
    right.set_ylim(-span, span)
    x0, x1 = float(mean.min()), float(mean.max())
    pad = 0.05 * (x1 - x0 + 1.0)
    right.set_xlim(x0 - pad, x1 + 0.32 * (x1 - x0 + 1.0))  # room on the right for the line labels
    for y, _style, text in lines:
        right.annotate(text, xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                       textcoords="offset points", ha="right", va="bottom", fontsize=8, color="tab:red")
    right.set_xlabel(f"mean of predicted and true {unit}")
    right.set_ylabel(f"predicted - true {unit}")
    right.set_title("Bland–Altman: bias and 95% limits of agreement", fontsize=10)
    right.grid(alpha=0.25)
    head = title or "predicted vs true"
    r2 = "n/a" if math.isnan(s["r2"]) else f"{s['r2']:.3f}"
    summary = f"n={s['n']}  MAE {s['mae']:.2f}  RMSE {s['rmse']:.2f}  R² {r2}" + \
        (f"  ({dropped} pair{'s' if dropped != 1 else ''} with NaN left out)" if dropped else "")
    fig.suptitle(f"{head}\n{summary}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)


# ------------------------------------------------------------------------------------------------ training
def read_metrics_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The columns of a training run's ``metrics.csv`` as float arrays (empty cells are NaN).

    Raises:
        InputError: the file cannot be read, has no ``epoch`` column or no rows.

    Example:
        >>> cols = read_metrics_csv("runs/stage2/metrics.csv")  # doctest: +SKIP
        >>> cols["epoch"], cols["val_mae"]  # doctest: +SKIP
    """
    p = Path(path)
    try:
        with open(p, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(str(p), f"cannot read the metrics file ({err})") from err
    if not rows or "epoch" not in rows[0]:
        raise InputError(str(p), "expected a metrics.csv with an 'epoch' column and one row per epoch")

    def number(text: Any) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            return float("nan")

    return {key: np.array([number(r.get(key)) for r in rows]) for key in rows[0] if key}


def _groups(columns: dict[str, np.ndarray]) -> list[tuple[str, list[str], bool]]:
    """(panel title, columns, log scale) of the panels worth drawing."""
    names = [k for k, v in columns.items() if k not in ("epoch", "seconds") and np.isfinite(v).any()]
    train = [k for k in names if k.startswith("train_")]
    val_r2 = [k for k in names if k.startswith("val_") and k.endswith("r2")]
    val = [k for k in names if k.startswith("val_") and k not in val_r2]
    lr = [k for k in names if k == "lr" or k.startswith("lr_")]
    other = [k for k in names if k not in train + val + val_r2 + lr]
    panels = [("training loss", train, False), ("validation error", val, False), ("validation R²", val_r2, False),
              ("learning rate", lr, True), ("other", other, False)]
    return [g for g in panels if g[1]]


def plot_training_curves(metrics_csv: str | os.PathLike, path: str | os.PathLike, *, title: str | None = None,
                         dpi: int = 120) -> Path:
    """Write the curves of a training run: one panel per kind of column of its ``metrics.csv``.

    Panels (those with data): ``train_*`` (the loss per epoch), ``val_*`` errors (MAE, RMSE), ``val_*r2``, and the
    learning rates (``lr``/``lr_*``, log scale). Epochs are counted from 1 as the training log counts them
    (``metrics.csv``'s ``epoch`` column counts from 0). The epoch with the lowest ``val_mae`` (when logged) is
    marked by a dotted line in every panel and named in the title.

    Args:
        metrics_csv: the ``metrics.csv`` of a run (``coreecho train ... --out RUN`` writes ``RUN/metrics.csv``).
        path: PNG to write; folders are created.
        title: first title line (default: the run folder's name).
        dpi: resolution.

    Returns:
        The path written.

    Example:
        >>> plot_training_curves("runs/stage2/metrics.csv", "runs/stage2/curves.png")  # doctest: +SKIP
    """
    cols = read_metrics_csv(metrics_csv)
    epochs = cols["epoch"] + 1  # 1-based, as the training log and the CLI count passes (metrics.csv counts from 0)
    groups = _groups(cols)
    if not groups:
        raise InputError(str(metrics_csv), "has no metric columns with numbers to plot")
    Figure = _figure_class()
    n = len(groups)
    ncols = n if n <= 2 else 2
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(5.0 * ncols + 0.4, 3.4 * nrows + 0.5), dpi=dpi)
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).reshape(-1)
    for ax in axes[n:]:
        ax.set_visible(False)
    best = None
    if "val_mae" in cols and np.isfinite(cols["val_mae"]).any():
        i = int(np.nanargmin(cols["val_mae"]))
        best = (epochs[i], cols["val_mae"][i])
    for ax, (name, keys, log) in zip(axes, groups):
        for k, key in enumerate(keys):
            y = cols[key]
            ok = np.isfinite(y)
            ax.plot(epochs[ok], y[ok], marker="o" if ok.sum() <= 30 else None, ms=3, lw=1.4, color=f"C{k}",
                    ls=("-", "--", ":", "-.")[k % 4],  # equal series (two learning rates) stay visible
                    label=key)
        if best is not None:
            ax.axvline(best[0], color="0.4", ls=":", lw=1.0)
        if log:
            ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.25)
        ax.legend(fontsize=8, loc="best")
        if len(epochs) and float(np.nanmax(epochs)) - float(np.nanmin(epochs)) < 12:
            ax.set_xticks(np.unique(epochs[np.isfinite(epochs)]).astype(int))
    head = title or (Path(metrics_csv).resolve().parent.name or "training run")
    tail = f"best val_mae {best[1]:.3f} at epoch {int(best[0])} (dotted)" if best is not None else \
        f"{len(epochs)} epochs"
    fig.suptitle(f"{head}: {tail}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)
