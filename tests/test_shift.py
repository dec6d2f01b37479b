"""ShiftDetector: separation of shifted phantoms, calibrated false-alarm rate, persistence, wiring.

The phantom tests embed short clips (8 frames, stride 4, 64x64) with a fixed-seed tiny *random* encoder.
A random UniFormer already maps echo structure (fan, chambers, speckle) to a compact region of embedding
space: over encoder seeds 0-3 the worst per-shift AUROC was 0.93 (kNN) / 0.97 (Mahalanobis) for left-right
flipped views and 1.0 for noise, 90-degree rotation and non-echo videos (see docs/analysis.md). Seed 0 is
used here, so the test is deterministic.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from coreecho.analysis.shift import ShiftDetector, attach
from coreecho.errors import ConfigError, CoReEchoError, InputError

N_FRAMES, SIZE = 32, 64
N_REFERENCE, N_FRESH, N_SHIFTED = 64, 60, 10


def _phantom(seed: int) -> np.ndarray:
    from coreecho.data.phantom import make_phantom

    return make_phantom(seed=seed, n_frames=N_FRAMES, size=SIZE)[0]


def _noisy(frames: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(frames + rng.normal(0.0, 60.0, frames.shape), 0, 255).astype(np.uint8)


def _flipped(frames: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frames[:, :, ::-1])


def _rotated(frames: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(frames, 1, axes=(1, 2)))


def _shapes(seed: int) -> np.ndarray:
    """Not an echo: coloured discs drifting over a sinusoidal texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] * (112.0 / SIZE)
    tint = rng.uniform(0, 255, 3) / 255.0
    texture = np.sin(xx / rng.uniform(3, 9)) * np.cos(yy / rng.uniform(3, 9)) * 40.0 + 100.0
    discs = [(rng.uniform(10, 100, 2), rng.uniform(-2, 2, 2), rng.uniform(5, 20), rng.uniform(0, 255, 3))
             for _ in range(5)]
    out = np.empty((N_FRAMES, SIZE, SIZE, 3), np.uint8)
    for t in range(N_FRAMES):
        img = texture[..., None] * tint + 60.0
        for centre, velocity, radius, colour in discs:
            c = centre + velocity * t
            img[(xx - c[0]) ** 2 + (yy - c[1]) ** 2 < radius**2] = colour
        out[t] = np.clip(img, 0, 255)
    return out


@pytest.fixture(scope="module")
def phantom_embeddings():
    from conftest import tiny_config

    from coreecho import CoReEcho
    from coreecho.models.config import PreprocessConfig

    torch.manual_seed(0)
    model = CoReEcho(tiny_config(preprocessing=PreprocessConfig(frames=8, stride=4, size=SIZE))).eval()

    def emb(videos):
        return model.embed(videos, clips=1)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny 3-D convolutions: one thread is faster, and immune to a busy machine
    try:
        fresh_videos = [_phantom(1000 + s) for s in range(N_FRESH)]
        shifted = {
            "noise": emb([_noisy(v, i) for i, v in enumerate(fresh_videos[:N_SHIFTED])]),
            "flip": emb([_flipped(v) for v in fresh_videos[N_SHIFTED:2 * N_SHIFTED]]),
            "rot90": emb([_rotated(v) for v in fresh_videos[2 * N_SHIFTED:3 * N_SHIFTED]]),
            "non-echo": emb([_shapes(s) for s in range(N_SHIFTED)]),
        }
        reference, fresh = emb([_phantom(s) for s in range(N_REFERENCE)]), emb(fresh_videos)
    finally:
        torch.set_num_threads(threads)
    return {"reference": reference, "fresh": fresh, "shifted": shifted, "model": model}


def _auroc(negative: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(negative)), np.ones(len(positive))]
    return float(roc_auc_score(y, np.r_[negative, positive]))


@pytest.mark.parametrize("method", ["knn", "mahalanobis"])
def test_shifted_phantoms_are_separated(phantom_embeddings, method):
    det = ShiftDetector().fit(phantom_embeddings["reference"], method=method, k=5)
    fresh = det.score(phantom_embeddings["fresh"])
    aurocs = {name: _auroc(fresh, det.score(e)) for name, e in phantom_embeddings["shifted"].items()}
    pooled = _auroc(fresh, np.concatenate([det.score(e) for e in phantom_embeddings["shifted"].values()]))
    assert pooled >= 0.9, (pooled, aurocs)
    assert min(aurocs.values()) >= 0.9, aurocs
    # the obvious shifts are flagged by the calibrated threshold
    for name in ("noise", "rot90", "non-echo"):
        assert det.is_shifted(phantom_embeddings["shifted"][name]).mean() >= 0.8, name


@pytest.mark.parametrize("method", ["knn", "mahalanobis"])
def test_false_alarm_rate_on_fresh_phantoms(phantom_embeddings, method):
    from scipy.stats import betabinom

    det = ShiftDetector().fit(phantom_embeddings["reference"], method=method, k=5, false_alarm_rate=0.05)
    assert det.n_calibration == 19 and det.n_reference == 45
    n, m = det.n_calibration, N_FRESH
    rank = int(np.searchsorted(det.calibration_scores, det.threshold, side="right"))
    alarms = int(det.is_shifted(phantom_embeddings["fresh"]).sum())
    # With the threshold at rank r of n exchangeable calibration scores, the number of alarms among m fresh
    # in-distribution points is Beta-Binomial(m, n + 1 - r, r): binomial noise plus the calibration draw.
    law = betabinom(m, n + 1 - rank, rank)
    assert law.ppf(0.0005) <= alarms <= law.ppf(0.9995), (alarms, law.mean())
    assert det.expected_false_alarm_rate <= 0.05 + 1e-12


def test_false_alarm_rate_is_exact_on_gaussians():
    """Averaged over many calibration draws, the alarm rate equals the expected rate (conformal exactness)."""
    rng = np.random.default_rng(0)
    rates, expected = [], []
    for _ in range(40):
        x = rng.normal(size=(600, 6))
        det = ShiftDetector().fit(x[:300], x[300:400], method="knn", k=5, false_alarm_rate=0.1)
        rates.append(det.is_shifted(x[400:]).mean())
        expected.append(det.expected_false_alarm_rate)
    # 40 x 200 fresh points; the spread of the mean is about 0.03/sqrt(40) (calibration) + binomial
    assert abs(np.mean(rates) - np.mean(expected)) < 0.02, (np.mean(rates), np.mean(expected))
    assert np.mean(expected) <= 0.1


def test_in_sample_calibration_would_be_biased():
    """Why calibration points are held out: scored against a reference containing them, they look too close."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 8))
    det = ShiftDetector().fit(x[:200], x[200:300], method="knn", k=5, false_alarm_rate=0.1)
    in_sample = det.score(x[:200])  # each reference point is its own nearest neighbour (distance 0)
    held_out_rate = det.is_shifted(x[300:]).mean()
    in_sample_threshold = np.quantile(in_sample, 0.9)
    in_sample_rate = (det.score(x[300:]) > in_sample_threshold).mean()
    assert held_out_rate < 0.2 and in_sample_rate > 0.3


def test_normalizations_and_scores():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5)) * np.array([1, 10, 100, 0.1, 1])
    for norm in ("standardize", "l2", "none"):
        for method in ("knn", "mahalanobis"):
            det = ShiftDetector().fit(x, method=method, normalization=norm, k=3)
            s = det.score(x[:7])
            assert s.shape == (7,) and s.dtype == np.float64 and np.isfinite(s).all()
            assert isinstance(det.score(x[0]), float)
            assert isinstance(det.is_shifted(x[0]), bool)
            p = det.p_value(x[:7])
            assert ((p > 0) & (p <= 1)).all()
    det = ShiftDetector().fit(torch.from_numpy(x).float(), k=3)  # torch input
    assert det.dim == 5


def test_nan_rows_score_nan_and_are_not_flagged():
    x = np.random.default_rng(3).normal(size=(100, 4))
    det = ShiftDetector().fit(x, k=3)
    q = np.vstack([x[:2], np.full((1, 4), np.nan)])
    s = det.score(q)
    assert np.isnan(s[2]) and np.isfinite(s[:2]).all()
    assert not det.is_shifted(q)[2]


def test_validation_errors():
    x = np.random.default_rng(4).normal(size=(100, 4))
    with pytest.raises(InputError, match="method"):
        ShiftDetector().fit(x, method="lof")
    with pytest.raises(InputError, match="normalization"):
        ShiftDetector().fit(x, normalization="whiten")
    with pytest.raises(InputError, match="k=200"):
        ShiftDetector().fit(x, k=200)
    with pytest.raises(InputError, match="false_alarm_rate"):
        ShiftDetector().fit(x, false_alarm_rate=1.5)
    with pytest.raises(InputError, match="dimensions"):
        ShiftDetector().fit(x, np.zeros((10, 3)))
    with pytest.raises(InputError, match="NaN"):
        ShiftDetector().fit(np.vstack([x, np.full((1, 4), np.nan)]))
    with pytest.raises(CoReEchoError, match="not fitted"):
        ShiftDetector().score(x)
    det = ShiftDetector().fit(x, k=3)
    with pytest.raises(InputError, match="dimensions"):
        det.score(np.zeros((2, 7)))
    with pytest.raises(InputError, match="one embedding"):
        det.assess(x[:3])
    with pytest.warns(UserWarning, match="cannot certify"):
        ShiftDetector().fit(x[:20], x[20:25], k=3, false_alarm_rate=0.05)


@pytest.mark.parametrize("method", ["knn", "mahalanobis"])
def test_save_load_roundtrip(tmp_path, method):
    x = np.random.default_rng(5).normal(size=(120, 6))
    det = ShiftDetector().fit(x, method=method, k=4, metadata={"model": "tiny"})
    path = det.save(tmp_path / "det")
    assert path.name == "det.json" and (tmp_path / "det.safetensors").exists()
    for p in (path, tmp_path / "det.safetensors", tmp_path / "det"):
        back = ShiftDetector.load(p)
        np.testing.assert_array_equal(back.score(x), det.score(x))
        assert back.threshold == det.threshold and back.metadata == {"model": "tiny"}
    d = json.loads(path.read_text())
    assert d["method"] == method and d["format"] == "coreecho-shift-detector"
    json.dumps(det.to_dict(include_arrays=True))  # JSON-ready
    again = ShiftDetector.from_dict(det.to_dict(include_arrays=True))
    np.testing.assert_allclose(again.score(x), det.score(x))
    # arrays that do not belong to the JSON are refused
    other = ShiftDetector().fit(x + 1, method=method, k=4)
    other.save(tmp_path / "other")
    (tmp_path / "det.safetensors").write_bytes((tmp_path / "other.safetensors").read_bytes())
    with pytest.raises(ConfigError, match="sha256"):
        ShiftDetector.load(path)
    with pytest.raises(ConfigError):
        ShiftDetector.load(tmp_path / "missing.json")


def test_attach_and_assess(tiny_model):
    emb = np.random.default_rng(6).normal(size=(80, tiny_model.embed_dim))
    det = ShiftDetector().fit(emb, k=3)
    assert attach(tiny_model, det) is tiny_model and tiny_model.shift_detector is det
    score, flagged = tiny_model.shift_detector.assess(emb[0])
    assert isinstance(score, float) and isinstance(flagged, bool)
    assert "shift_detector" not in tiny_model.state_dict()
    attach(tiny_model, None)
    assert tiny_model.shift_detector is None  # declared on the model class, None when absent
    with pytest.raises(InputError, match="dimensions"):
        attach(tiny_model, ShiftDetector().fit(emb[:, :5], k=3))


def test_predictions_report_shift(phantom_embeddings):
    """With a detector attached, detailed predictions carry its score (once inference.py fills the fields)."""
    from coreecho.inference import Prediction

    if "shift_score" not in Prediction.__dataclass_fields__:
        pytest.skip("Prediction has no shift_score field in this version")
    model = phantom_embeddings["model"]
    det = ShiftDetector().fit(phantom_embeddings["reference"], k=5)
    attach(model, det)
    try:
        video = _rotated(_phantom(5000))
        pred = model.predict_ef(video, clips=1, return_details=True)
        expected = det.assess(model.embed(video, clips=1))
        assert pred.shift_score == pytest.approx(expected[0], rel=1e-4) and pred.is_shifted == expected[1]
    finally:
        attach(model, None)


def test_import_coreecho_does_not_import_analysis():
    code = ("import sys, coreecho, coreecho.analysis; "
            "assert 'coreecho.analysis.shift' not in sys.modules, 'analysis.shift imported eagerly'; "
            "import coreecho.analysis as a; a.ShiftDetector; assert 'coreecho.analysis.gradcam' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    code2 = "import sys, coreecho; assert 'coreecho.analysis' not in sys.modules"
    subprocess.run([sys.executable, "-c", code2], check=True)


def test_pca_score_flags_off_manifold_points():
    """Points on a low-dimensional manifold vs points with the same in-manifold coordinates but off it."""
    rng = np.random.default_rng(7)
    basis = np.linalg.qr(rng.normal(size=(16, 2)))[0].T
    on = rng.normal(size=(300, 2)) * [10.0, 3.0] @ basis + rng.normal(0, 0.05, (300, 16))
    off = on[:50] + rng.normal(0, 0.5, (50, 16))
    det = ShiftDetector().fit(on[:200], on[200:], method="pca", n_components=2, normalization="none")
    assert det.is_shifted(off).mean() > 0.95
    knn = ShiftDetector().fit(on[:200], on[200:], method="knn", normalization="none")
    assert knn.is_shifted(off).mean() < det.is_shifted(off).mean()
    with pytest.raises(InputError, match="n_components"):
        ShiftDetector().fit(on, method="pca", n_components=0)


def test_detector_files_of_earlier_versions_still_load(tmp_path):
    """0.2 wrote a detector as <stem>.json + <stem>.npz; such a pair loads (no pickle), and is checked the same way."""
    x = np.random.default_rng(9).normal(size=(90, 5))
    det = ShiftDetector().fit(x, method="pca", n_components=2)
    with open(tmp_path / "old.npz", "wb") as fh:
        np.savez(fh, **det.arrays())
    data = det.to_dict()
    data["arrays_file"] = "old.npz"
    data["arrays_sha256"] = hashlib.sha256((tmp_path / "old.npz").read_bytes()).hexdigest()
    (tmp_path / "old.json").write_text(json.dumps(data))
    for p in (tmp_path / "old.json", tmp_path / "old.npz", tmp_path / "old"):
        back = ShiftDetector.load(p)
        np.testing.assert_array_equal(back.score(x), det.score(x))
        assert back.threshold == det.threshold
    raw = bytearray((tmp_path / "old.npz").read_bytes())
    raw[-1] ^= 0xFF  # one byte changed
    (tmp_path / "old.npz").write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="sha256"):
        ShiftDetector.load(tmp_path / "old.json")


def test_version1_detector_files_still_load(tmp_path):
    x = np.random.default_rng(8).normal(size=(100, 4))
    det = ShiftDetector().fit(x, k=3)
    d = det.to_dict(include_arrays=True)
    d["format_version"] = 1
    del d["arrays"]["components"], d["n_components"]
    back = ShiftDetector.from_dict(d)
    np.testing.assert_array_equal(back.score(x), det.score(x))
