"""Calibration: conformal EF intervals and shift detection shipped with the weights (issue 14).

Statistical checks are honest: with the threshold/quantile at rank ``r`` of ``n`` exchangeable calibration
scores, the number of covered (or flagged) fresh videos among ``m`` follows a Beta-Binomial law (binomial noise
plus the calibration draw); the tests assert within its 99.9 % two-sided interval, which a miscalibrated
interval leaves.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from coreecho.analysis.calibration import Calibration, ConformalInterval, calibrate, conformal_rank
from coreecho.errors import ChecksumError, InputError, WeightsError

FRESH_SEED = 6_000_000  # examples/calibrate_phantom.py calibrates on 5_000_000.. and reports on 6_000_000..


def _law(m: int, n: int, level: float):
    from scipy.stats import betabinom

    r = conformal_rank(n, level)
    return betabinom(m, r, n + 1 - r)


def _heteroscedastic(rng, n):
    emb = rng.normal(size=(n, 4))
    true = rng.uniform(10, 80, n)
    return emb, true, true + rng.normal(0, 0.5 + 2 * np.abs(emb[:, 0]), n)


def test_conformal_interval_is_exact_and_adaptive():
    rng = np.random.default_rng(0)
    cover, expected, w_easy, w_hard = [], [], [], []
    for _ in range(20):
        emb, true, pred = _heteroscedastic(rng, 900)
        ci = ConformalInterval().fit(pred[:400], true[:400], embeddings=emb[:400], k=15)
        low, high = ci.interval(pred[400:], embeddings=emb[400:], level=0.9)
        cover.append(((true[400:] >= low) & (true[400:] <= high)).mean())
        expected.append(conformal_rank(ci.n_calibration, 0.9) / (ci.n_calibration + 1))
        easy = np.abs(emb[400:, 0]) < 0.5
        w_easy.append((high - low)[easy].mean())
        w_hard.append((high - low)[np.abs(emb[400:, 0]) > 1.5].mean())
    assert abs(np.mean(cover) - np.mean(expected)) < 0.015, (np.mean(cover), np.mean(expected))
    assert np.mean(w_easy) < 0.6 * np.mean(w_hard)


@pytest.mark.parametrize("difficulty", ["spread", "constant"])
def test_other_difficulties(difficulty):
    rng = np.random.default_rng(1)
    emb, true, pred = _heteroscedastic(rng, 600)
    spread = 0.5 + 2 * np.abs(emb[:, 0])
    ci = ConformalInterval().fit(pred[:300], true[:300], ef_std=spread[:300], difficulty=difficulty)
    low, high = ci.interval(pred[300:], ef_std=spread[300:], level=0.8)
    law = _law(300, ci.n_calibration, 0.8)
    covered = int(((true[300:] >= low) & (true[300:] <= high)).sum())
    assert law.ppf(0.0005) <= covered <= law.ppf(0.9995)
    assert (low >= 0).all() and (high <= 100).all()


def test_interval_validation():
    rng = np.random.default_rng(2)
    emb, true, pred = _heteroscedastic(rng, 40)
    with pytest.raises(InputError, match="difficulty"):
        ConformalInterval().fit(pred, true, difficulty="magic")
    with pytest.raises(InputError, match="embeddings"):
        ConformalInterval().fit(pred, true)
    ci = ConformalInterval().fit(pred, true, embeddings=emb, k=5)
    with pytest.raises(InputError, match="coverage"):
        ci.quantile(1.5)
    with pytest.warns(UserWarning, match="cannot certify"):
        assert math.isinf(ci.quantile(0.99))


# ----------------------------------------------------------------------------------------- persistence
@pytest.fixture
def calibrated_tiny(tiny_model):
    rng = np.random.default_rng(3)
    n, dim = 80, tiny_model.embed_dim
    got = {"predicted": rng.uniform(10, 80, n), "ef_std": rng.uniform(0.1, 2, n),
           "embeddings": rng.normal(size=(n, dim)), "true": rng.uniform(10, 80, n)}
    got["true"] = got["predicted"] + rng.normal(0, 3, n)
    cal = calibrate(tiny_model, collected=got, n_components=5)
    return tiny_model, cal


def test_save_load_roundtrip_bit_for_bit(calibrated_tiny, tmp_path):
    from coreecho import load_model
    from coreecho.data.phantom import make_phantom

    model, cal = calibrated_tiny
    folder = model.save_pretrained(tmp_path / "m")
    entry = json.loads((folder / "config.json").read_text())["calibration"]
    assert entry["format"] == "coreecho-calibration" and entry["format_version"] == 1
    assert (folder / entry["file"]).is_file() and len(entry["sha256"]) == 64
    back = load_model(folder, device="cpu")
    for name, arr in cal.arrays().items():
        got = back.calibration.arrays()[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape and got.tobytes() == arr.tobytes(), name
    assert back.shift_detector.threshold == cal.detector.threshold
    frames, _ = make_phantom(ef=50, seed=1, n_frames=40)
    a = model.predict_ef(frames, return_details=True)
    b = back.predict_ef(frames, return_details=True)
    assert (a.ef_low, a.ef_high, a.coverage, a.shift_score, a.is_shifted) == \
        (b.ef_low, b.ef_high, b.coverage, b.shift_score, b.is_shifted)
    assert a.ef_low <= a.ef <= a.ef_high and a.coverage == 0.9
    wide = back.predict_ef(frames, return_details=True, coverage=0.95)
    assert wide.ef_high - wide.ef_low >= b.ef_high - b.ef_low and wide.coverage == 0.95
    # saving the loaded model again writes the same calibration file
    again = back.save_pretrained(tmp_path / "m2")
    assert (again / "calibration.safetensors").read_bytes() == (folder / "calibration.safetensors").read_bytes()


def test_tampered_calibration_is_refused(calibrated_tiny, tmp_path):
    from coreecho import load_model

    model, _ = calibrated_tiny
    folder = model.save_pretrained(tmp_path / "m")
    path = folder / "calibration.safetensors"
    data = bytearray(path.read_bytes())
    data[-9] ^= 0x01  # one bit of one array value
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="sha256"):
        load_model(folder, device="cpu")
    path.unlink()
    with pytest.raises(WeightsError, match="calibration file"):
        load_model(folder, device="cpu")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["calibration"]["format_version"] = 99
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="newer"):
        load_model(folder, device="cpu")


def test_replaced_weights_or_changed_model_do_not_keep_a_stale_calibration(calibrated_tiny, tmp_path):
    import torch

    from coreecho import load_model

    model, _ = calibrated_tiny
    folder = model.save_pretrained(tmp_path / "m")
    other = model.save_pretrained(tmp_path / "other")
    with torch.no_grad():
        next(model.head.parameters()).add_(1.0)  # fine-tuned after calibration
    with pytest.warns(UserWarning, match="weights changed"):
        plain = model.save_pretrained(tmp_path / "changed")
    assert "calibration" not in json.loads((plain / "config.json").read_text())
    assert not (plain / "calibration.safetensors").exists()
    (other / "model.safetensors").write_bytes((plain / "model.safetensors").read_bytes())
    with pytest.raises(ChecksumError, match="weights were replaced"):
        load_model(other, device="cpu")
    assert load_model(folder, device="cpu").calibration is not None


def test_uncalibrated_model_says_so_once(tiny_model, tmp_path):
    from coreecho import load_model

    folder = tiny_model.save_pretrained(tmp_path / "plain")
    with pytest.warns(UserWarning, match="carries no calibration") as rec:
        model = load_model(folder, device="cpu")
    assert sum("carries no calibration" in str(w.message) for w in rec) == 1
    from coreecho.data.phantom import make_phantom

    d = model.predict_ef(make_phantom(seed=2, n_frames=40)[0], return_details=True)
    assert d.ef_low is None and d.ef_high is None and d.coverage is None and d.is_shifted is None


def test_cli_predict_has_calibration_columns(calibrated_tiny, tmp_path):
    import csv

    from coreecho.cli import main
    from coreecho.data.phantom import make_phantom

    model, _ = calibrated_tiny
    folder = model.save_pretrained(tmp_path / "m")
    np.save(tmp_path / "v.npy", make_phantom(seed=3, n_frames=40)[0])
    assert main(["predict", str(tmp_path / "v.npy"), "--model", str(folder), "--output", str(tmp_path / "o.csv"),
                 "--quiet"]) == 0
    row = next(csv.DictReader(open(tmp_path / "o.csv")))
    assert float(row["ef_low"]) <= float(row["ef"]) <= float(row["ef_high"])
    assert row["coverage"] == "0.9" and row["is_shifted"] in ("0", "1") and row["shift_score"]


def test_calibrate_cli_on_a_csv_of_videos(tiny_model, tmp_path):
    from coreecho.cli import main
    from coreecho.data.phantom import make_phantom

    folder = tiny_model.save_pretrained(tmp_path / "m")
    lines = ["path,label"]
    for i in range(24):
        frames, meta = make_phantom(seed=700 + i, n_frames=36, size=64)
        np.save(tmp_path / f"v{i}.npy", frames)
        lines.append(f"v{i}.npy,{meta.ef:.3f}")
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    assert main(["calibrate", str(folder), "--data", str(tmp_path / "list.csv"), "--detector", "knn"]) == 0
    entry = json.loads((folder / "config.json").read_text())["calibration"]
    assert entry["metadata"]["n_videos"] == 24 and entry["shift"]["method"] == "knn"


# ------------------------------------------------------------------------------------ shipped phantom-tiny
def _hostile(videos, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "black": [np.zeros_like(v) for v in videos],
        "white": [np.full_like(v, 255) for v in videos],
        "noise": [rng.integers(0, 256, v.shape, dtype=np.uint8) for v in videos],
        "flipped": [np.ascontiguousarray(v[:, :, ::-1]) for v in videos],
        "inverted": [255 - v for v in videos],
    }


def _shipped_check(n_fresh: int, n_hostile: int):
    from coreecho import load_model
    from coreecho.analysis.calibration import collect
    from coreecho.data.phantom import make_phantom

    model = load_model("phantom-tiny", device="cpu")
    cal = model.calibration
    assert isinstance(cal, Calibration) and cal.interval is not None and cal.detector is not None, \
        "phantom-tiny ships without calibration: run python examples/calibrate_phantom.py"
    out = [make_phantom(seed=FRESH_SEED + i) for i in range(n_fresh)]
    videos = [f for f, _ in out]
    fresh = collect(model, videos, labels=[m.ef for _, m in out])
    hostile = {k: model.embed(v) for k, v in _hostile(videos[:n_hostile]).items()}
    return model, cal, fresh, hostile


def _assert_shipped(model, cal, fresh, hostile):
    m = len(fresh["true"])
    for level in (0.8, 0.9, 0.95):
        low, high = cal.interval.interval(fresh["predicted"], ef_std=fresh["ef_std"],
                                          embeddings=fresh["embeddings"], level=level)
        covered = int(((fresh["true"] >= low) & (fresh["true"] <= high)).sum())
        law = _law(m, cal.interval.n_calibration, level)
        assert law.ppf(0.0005) <= covered <= law.ppf(0.9995), (level, covered, m)
    sigma = cal.interval.sigma(ef_std=fresh["ef_std"], embeddings=fresh["embeddings"])
    low, high = cal.interval.interval(fresh["predicted"], ef_std=fresh["ef_std"], embeddings=fresh["embeddings"])
    easy = sigma <= np.median(sigma)
    err = np.abs(fresh["predicted"] - fresh["true"])
    assert (high - low)[easy].mean() < (high - low)[~easy].mean()
    assert err[easy].mean() < err[~easy].mean()  # the difficulty score tracks the real error
    det = cal.detector
    for kind, emb in hostile.items():
        assert det.is_shifted(emb).mean() >= 0.95, kind
    from scipy.stats import betabinom

    n = det.n_calibration
    rank = int(np.searchsorted(det.calibration_scores, det.threshold, side="right"))
    law = betabinom(m, n + 1 - rank, rank)
    alarms = int(det.is_shifted(fresh["embeddings"]).sum())
    assert law.ppf(0.0005) <= alarms <= law.ppf(0.9995), (alarms, law.mean())


@pytest.mark.slow  # the default suite's time budget; the 'many phantoms' variant below is slow too
def test_shipped_phantom_tiny_calibration_on_fresh_phantoms(one_thread):
    _assert_shipped(*_shipped_check(n_fresh=40, n_hostile=20))


@pytest.mark.slow
def test_shipped_phantom_tiny_calibration_on_many_fresh_phantoms():
    _assert_shipped(*_shipped_check(n_fresh=200, n_hostile=60))
