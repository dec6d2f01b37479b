"""Agreement (scatter + Bland–Altman) and training-curve figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from coreecho.analysis.figures import agreement_stats, plot_agreement, plot_training_curves, read_metrics_csv
from coreecho.errors import InputError

BUNDLED = Path(__file__).resolve().parents[1] / "coreecho" / "weights" / "phantom-tiny" / "config.json"


def _image(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_agreement_stats_match_their_definitions():
    rng = np.random.default_rng(0)
    t = rng.uniform(15, 80, 200)
    p = 0.9 * t + 7 + rng.normal(0, 3, 200)
    s = agreement_stats(t, p)
    d = p - t
    assert s["n"] == 200
    assert s["bias"] == pytest.approx(d.mean())
    assert s["sd"] == pytest.approx(np.std(d, ddof=1))
    assert (s["loa_low"], s["loa_high"]) == pytest.approx((d.mean() - 1.96 * np.std(d, ddof=1),
                                                           d.mean() + 1.96 * np.std(d, ddof=1)))
    assert s["mae"] == pytest.approx(np.abs(d).mean()) and s["rmse"] == pytest.approx(np.sqrt((d ** 2).mean()))
    assert s["r2"] == pytest.approx(1 - (d ** 2).sum() / ((t - t.mean()) ** 2).sum())
    inside = (d >= s["loa_low"]) & (d <= s["loa_high"])
    assert 0.9 < inside.mean() < 0.99  # about 95 % of normal differences fall within the limits


def test_plot_agreement_writes_both_panels(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(1)
    t = rng.uniform(15, 80, 120)
    p = t + rng.normal(1.0, 4.0, 120)
    p[5] = np.nan
    out = plot_agreement(t, p, tmp_path / "sub" / "agreement.png", title="test")
    img = _image(out)
    assert img.shape == (588, 1320, 3)  # 11 x 4.9 inches at 120 dpi
    red = (img[..., 0] > 180) & (img[..., 1] < 80) & (img[..., 2] < 80)
    assert red.sum() > 500  # the bias and limit lines (tab:red) are drawn
    with pytest.raises(InputError):
        plot_agreement(t, p[:-1], tmp_path / "x.png")
    with pytest.raises(InputError):
        plot_agreement([50.0, np.nan], [51.0, 52.0], tmp_path / "x.png")


def _write_history(path: Path, rows: list[dict]) -> Path:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as fh:  # as coreecho.train writes metrics.csv
        w = csv.DictWriter(fh, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


def test_training_curves_of_the_bundled_models_run(tmp_path):
    pytest.importorskip("matplotlib")
    history = json.loads(BUNDLED.read_text())["metadata"]["history"]  # the stage-2 run that made phantom-tiny
    csv_path = _write_history(tmp_path / "metrics.csv", history)
    cols = read_metrics_csv(csv_path)
    assert cols["val_mae"] == pytest.approx([row["val_mae"] for row in history])
    out = plot_training_curves(csv_path, tmp_path / "curves.png")
    img = _image(out)
    assert img.shape == (876, 1248, 3)  # 2 x 2 panels: loss, validation error, R², learning rate
    assert (img < 250).any(axis=-1).mean() > 0.05  # drawn, not blank


def test_training_curves_with_one_panel_and_bad_files(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"epoch": e, "train_loss": 5.0 / (e + 1), "seconds": 1.0} for e in range(4)]
    out = plot_training_curves(_write_history(tmp_path / "m.csv", rows), tmp_path / "c.png")
    assert _image(out).shape == (468, 648, 3)  # one panel: 5.4 x 3.9 inches
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="epoch"):
        plot_training_curves(tmp_path / "bad.csv", tmp_path / "c.png")
    with pytest.raises(InputError):
        read_metrics_csv(tmp_path / "missing.csv")
