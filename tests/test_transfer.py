"""Transfer recipes on a CSV of videos: metrics, cross-validation, fine-tuned models, the ``finetune`` CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from coreecho.errors import InputError
from coreecho.train.transfer import (
    PAPER_RESULTS,
    TransferConfig,
    aggregate,
    classification_report,
    cross_validate,
    extract_embeddings,
    finetune,
    regression_report,
)


@pytest.fixture(scope="module")
def small_model():
    from coreecho import CoReEcho
    from coreecho.models.config import PreprocessConfig

    torch.manual_seed(0)
    return CoReEcho(tiny_config(preprocessing=PreprocessConfig(frames=8, stride=2))).eval()


@pytest.fixture(scope="module")
def video_csv(tmp_path_factory):
    """8 phantom videos (2 per patient) with an EF column and a binary class column."""
    from coreecho.data.phantom import make_phantom
    from coreecho.video.io import write_video

    root = tmp_path_factory.mktemp("csv_videos")
    (root / "videos").mkdir()
    rows = []
    for i in range(8):
        ef = 25.0 + 6.5 * i
        frames, meta = make_phantom(ef, seed=i, n_frames=30, fps=50, heart_rate=90)
        write_video(root / "videos" / f"v{i}.avi", frames, fps=50)
        rows.append({"path": f"videos/v{i}.avi", "ef": f"{meta.ef:.3f}", "low": int(meta.ef < 50),
                     "patient": f"p{i // 2}"})
    with open(root / "videos.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return root / "videos.csv"


def _dataset(csv_path, model, label="ef", task="regression", groups=True):
    from coreecho.data.echonet import VideoRegressionDataset, read_csv_table

    pre = model.config.preprocessing
    ds = VideoRegressionDataset(csv_path, label_column=label, frames=pre.frames, stride=pre.stride, size=pre.size,
                                clips=2)
    ds.task = task
    if groups:
        ds.groups = [r["patient"] for r in read_csv_table(csv_path, ["patient"], "videos")]
    return ds


# ---------------------------------------------------------------------------------------------- metrics


def test_regression_report_matches_definitions():
    rng = np.random.default_rng(0)
    t = rng.uniform(20, 80, 50)
    p = t + rng.normal(0, 5, 50)
    q = np.array(["good", "medium", "poor"])[rng.integers(0, 3, 50)]
    m = regression_report(t, p, {"quality": q})
    assert m["mae"] == pytest.approx(np.abs(t - p).mean())
    assert m["rmse"] == pytest.approx(np.sqrt(((t - p) ** 2).mean()))
    assert m["pearson"] == pytest.approx(np.corrcoef(t, p)[0, 1])
    gm = (q == "good") | (q == "medium")
    assert m["mae[quality=good+medium]"] == pytest.approx(np.abs(t - p)[gm].mean())
    assert m["n[quality=poor]"] == int((q == "poor").sum())
    assert math.isnan(regression_report([1.0], [2.0])["pearson"])


def test_classification_report_and_aggregate():
    m = classification_report([1, 1, 1, 0, 0], [1, 1, 0, 0, 1], score=[0.9, 0.8, 0.3, 0.2, 0.6])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(5 / 6)
    assert math.isnan(classification_report([1, 1], [1, 0])["specificity"])
    agg = aggregate([{"f1": 0.5, "n": 3}, {"f1": 0.7, "n": 4}, {"f1": float("nan"), "n": 2}])
    assert agg["f1"]["mean"] == pytest.approx(0.6) and agg["f1"]["folds"] == 2
    assert agg["f1"]["sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert agg["n"] == {"total": 9, "folds": 3}


def test_config_validation():
    assert TransferConfig(mode="mlp").epochs == 100 and TransferConfig(mode="full").epochs == 10
    with pytest.raises(InputError):
        TransferConfig(mode="probe")
    with pytest.raises(InputError):
        TransferConfig(mode="full", batch_size=1)
    assert set(PAPER_RESULTS) == {("camus", "full"), ("camus", "mlp"), ("hmcqu", "full"), ("hmcqu", "mlp")}


# ---------------------------------------------------------------------------------------------- recipes on CSV


def test_embeddings_average_clips(video_csv, small_model):
    ds = _dataset(video_csv, small_model)
    emb = extract_embeddings(small_model, ds, [0, 3], config=TransferConfig(eval_clips=2))
    assert emb.shape == (2, small_model.embed_dim)
    with torch.no_grad():
        ds.clips, ds.clip_policy = 2, "even"
        x = ds[3]["video"]
        ref = small_model.encoder(x).mean(0).numpy()
    np.testing.assert_allclose(emb[1], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["linear", "mlp", "full"])
def test_csv_regression_cross_validation(video_csv, small_model, mode):
    ds = _dataset(video_csv, small_model)
    result = cross_validate(small_model, ds, mode=mode, folds=2, dataset_name="csv",
                            epochs=1 if mode == "full" else 20, batch_size=4)
    assert result.paper is None and result.dataset == "csv"
    fold_of = {}
    for p in result.predictions:
        assert fold_of.setdefault(p["patient"], p["fold"]) == p["fold"]
        assert math.isfinite(p["pred"])
    assert set(result.summary) >= {"pearson", "mae", "rmse", "r2", "n"}
    if mode != "full":  # heads are trained in standardised units and folded back: predictions are in EF units
        preds = np.array([p["pred"] for p in result.predictions])
        assert 10 < preds.mean() < 90
    d = result.to_dict()
    json.dumps(d)
    assert d["config"]["mode"] == mode


def test_csv_classification_and_explicit_folds(video_csv, small_model):
    ds = _dataset(video_csv, small_model, label="low", task="classification")
    a, b = np.array([0, 1, 4, 5]), np.array([2, 3, 6, 7])  # patients p0, p2 | p1, p3; both classes in each
    result = cross_validate(small_model, ds, mode="linear", folds=[(b, a), (a, b)])
    assert result.task == "classification" and len(result.folds) == 2
    assert [p["fold"] for p in result.predictions] == [0, 0, 1, 1, 0, 0, 1, 1]
    bad = [(np.arange(0, 5), np.arange(4, 8)), (np.arange(4, 8), np.arange(0, 4))]
    with pytest.raises(InputError, match="overlap"):
        cross_validate(small_model, ds, mode="linear", folds=bad)
    reg = _dataset(video_csv, small_model)
    with pytest.raises(InputError, match="integer class labels"):
        cross_validate(small_model, reg, mode="linear", folds=2, task="classification")


def test_finetune_saves_a_loadable_model(video_csv, small_model, tmp_path):
    from coreecho import load_model

    ds = _dataset(video_csv, small_model)
    before = {k: v.clone() for k, v in small_model.state_dict().items()}
    tuned = finetune(small_model, ds, mode="full", epochs=1, batch_size=4)
    assert all(torch.equal(before[k], small_model.state_dict()[k]) for k in before)  # input untouched
    assert tuned.config.metadata["finetune"]["mode"] == "full" and tuned.config.task == "ef"
    folder = tuned.save_pretrained(tmp_path / "tuned")
    again = load_model(folder)
    video = str(video_csv.parent / "videos" / "v3.avi")
    assert again.predict_ef(video) == pytest.approx(tuned.predict_ef(video), abs=1e-4)

    mlp = finetune(small_model, ds, mode="mlp", epochs=30, batch_size=4)
    preds = np.array([mlp.predict_ef(str(video_csv.parent / "videos" / f"v{i}.avi")) for i in range(8)])
    assert abs(preds.mean() - ds.labels.mean()) < 2 * ds.labels.std()

    cls = finetune(small_model, _dataset(video_csv, small_model, label="low", task="classification"), mode="mlp",
                   epochs=3, batch_size=4, label_name="low-ef")
    assert cls.config.task == "low-ef" and cls.config.head_args["out_dim"] == 2
    with pytest.raises(InputError, match="linear probe"):
        finetune(small_model, ds, mode="linear")


# ---------------------------------------------------------------------------------------------- CLI


def test_finetune_cli(video_csv, small_model, tmp_path, capsys):
    from coreecho.cli import main

    folder = small_model.save_pretrained(tmp_path / "base")
    out = tmp_path / "res.json"
    code = main(["finetune", "--dataset", "csv", "--data", str(video_csv), "--label-column", "ef",
                 "--group-column", "patient", "--mode", "mlp", "--model", str(folder), "--folds", "2",
                 "--epochs", "3", "--batch-size", "4", "--output", str(out), "--save-model", str(tmp_path / "m"),
                 "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "MLP probing" in printed and "pearson" in printed
    res = json.loads(out.read_text())
    assert res["dataset"] == "csv" and len(res["folds"]) == 2 and res["config"]["epochs"] == 3
    assert (tmp_path / "m" / "config.json").is_file()
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["preprocessing"]
    assert (saved["sampling"], saved["frames"], saved["stride"]) == ("clips", 8, 2)  # a CSV fine-tune keeps clips
    assert main(["finetune", "--dataset", "csv", "--data", str(video_csv), "--model", str(folder),
                 "--folds", "0"]) == 2
    assert main(["finetune", "--dataset", "csv", "--data", str(video_csv), "--model", str(folder),
                 "--mode", "linear", "--save-model", str(tmp_path / "x")]) == 2


def test_finetune_cli_camus_and_hmcqu(tmp_path, small_model, capsys):
    from coreecho.cli import main
    from coreecho.data.camus import write_camus_layout
    from coreecho.data.hmcqu import write_hmcqu_layout

    folder = small_model.save_pretrained(tmp_path / "base")
    write_camus_layout(tmp_path / "camus", 4, seed=0, fmt="mhd", qualities=(0.5, 0.5, 0.0))
    write_hmcqu_layout(tmp_path / "hmcqu", 6, seed=1, labels_format="csv", mi_fraction=0.5)
    assert main(["finetune", "--dataset", "camus", "--data", str(tmp_path / "camus"), "--model", str(folder),
                 "--mode", "linear", "--folds", "2", "--quiet"]) == 0
    assert "camus | linear probing" in capsys.readouterr().out
    assert main(["finetune", "--dataset", "hmcqu", "--data", str(tmp_path / "hmcqu"), "--model", str(folder),
                 "--mode", "linear", "--folds", "2", "--quiet", "--output", str(tmp_path / "h.json")]) == 0
    assert json.loads((tmp_path / "h.json").read_text())["task"] == "classification"
    assert main(["finetune", "--dataset", "camus", "--data", str(tmp_path / "nothing"), "--model", str(folder),
                 "--quiet"]) == 1
