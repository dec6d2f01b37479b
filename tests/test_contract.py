"""The dataset item contract (coreecho.data.contract) on phantom data in the four real on-disk layouts.

EchoNet-Dynamic, the CSV video list, CAMUS and HMC-QU items in evaluation mode are checked against
``check_item``/``EvalDataset`` and collated by the one ``collate_items``; the public ``set_starts``, the moved
modules' deprecated names and ``finetune_data``'s keyword arguments are exercised too.
"""

from __future__ import annotations

import argparse
import csv
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from coreecho.data.camus import CAMUS
from coreecho.data.contract import EvalDataset, check_item, collate_items
from coreecho.data.echonet import EchoNetDynamic, VideoRegressionDataset
from coreecho.data.hmcqu import HMCQU
from coreecho.data.layouts import write_camus_layout, write_echonet_layout, write_hmcqu_layout
from coreecho.errors import DatasetError, InputError
from coreecho.models.config import ModelConfig

FRAMES, STRIDE = 8, 4

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict:
    """Small phantom datasets in the EchoNet-Dynamic, CSV, CAMUS (MetaImage) and HMC-QU (CSV labels) layouts."""
    base = tmp_path_factory.mktemp("contract")
    echonet = base / "echonet"
    rows = write_echonet_layout(echonet, 4, seed=11, n_frames=(30, 40), splits=(2, 0, 2), progress=False)
    table = base / "videos.csv"
    with open(table, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["file", "ef"])
        for r in rows:
            w.writerow([r["path"], f"{r['EF']:.4f}"])
    write_camus_layout(base / "camus", 3, seed=4, fmt="mhd", reverse_fraction=0.5, qualities=(1.0, 0.0, 0.0))
    write_hmcqu_layout(base / "hmcqu", 4, seed=6, labels_format="csv", mi_fraction=0.5, n_frames=(40, 50))
    return {"echonet": echonet, "csv": table, "camus": base / "camus", "hmcqu": base / "hmcqu", "rows": rows}


def _datasets(roots: dict, clips) -> dict:
    opts = {"frames": FRAMES, "clips": clips}
    return {
        "echonet": EchoNetDynamic(roots["echonet"], "test", stride=STRIDE, clip_policy="even", **opts),
        "csv": VideoRegressionDataset(roots["csv"], path_column="file", label_column="ef", stride=STRIDE, **opts),
        "camus": CAMUS(roots["camus"], quality=None, **opts),
        "hmcqu": HMCQU(roots["hmcqu"], **opts),
    }


@pytest.mark.parametrize("kind", ["echonet", "csv", "camus", "hmcqu"])
def test_evaluation_items_follow_the_contract(roots, kind):
    ds = _datasets(roots, clips=2)[kind]
    assert isinstance(ds, EvalDataset)
    labels = ds.labels
    k = 1 if kind in ("camus", "hmcqu") else 2  # a sequence item is one clip whatever k asks for
    for i in range(len(ds)):
        item = check_item(ds[i])
        assert item["video"].shape == (k, 3, FRAMES, 112, 112) and item["video"].dtype == torch.float32
        assert item["name"] == ds.names[i] and item["index"] == i
        assert float(item["label"]) == pytest.approx(labels[i], abs=1e-4)
        assert item["label"].dtype == (torch.int64 if kind == "hmcqu" else torch.float32)
        assert item["starts"].dtype == torch.int64 and item["starts"].shape == (k,)
        if kind in ("echonet", "csv"):  # the deprecated duplicate, same value
            assert torch.equal(item["ef"], item["label"])


@pytest.mark.parametrize("kind", ["echonet", "csv", "camus", "hmcqu"])
def test_one_collate_for_every_dataset(roots, kind):
    ds = _datasets(roots, clips="all" if kind == "echonet" else 2)[kind]
    items = [ds[i] for i in range(len(ds))]
    batch = next(iter(DataLoader(ds, batch_size=len(ds), collate_fn=collate_items)))
    assert batch["video"].shape[0] == int(batch["counts"].sum()) == sum(it["video"].shape[0] for it in items)
    assert batch["counts"].dtype == torch.int64 and batch["label"].dtype == torch.float32
    np.testing.assert_allclose(batch["label"].numpy(), ds.labels, atol=1e-4)
    assert batch["name"] == ds.names and batch["index"].tolist() == list(range(len(ds)))
    assert "ef" not in batch
    # clips of item j are the rows of its block, in order
    for it, part, starts in zip(items, batch["video"].split(batch["counts"].tolist()), batch["starts"]):
        assert torch.equal(part, it["video"]) and torch.equal(starts, it["starts"])
    if kind == "camus":
        assert batch["quality"] == [it["quality"] for it in items] and batch["patient"] == ds.groups
    if kind == "echonet":  # ClipDataset.loader() collates clips="all" items the same way
        own = next(iter(ds.loader(batch_size=len(ds))))
        assert torch.equal(own["video"], batch["video"]) and torch.equal(own["label"], batch["label"])


def test_training_items_keep_their_shape_and_collate_as_one_clip(roots):
    train = _datasets(roots, clips=None)
    evaluation = _datasets(roots, clips=1)
    for kind in ("camus", "hmcqu"):  # training mode: [3, T, S, S]; same pixels without augmentation
        a, b = train[kind][0], evaluation[kind][0]
        assert a["video"].shape == (3, FRAMES, 112, 112)
        assert torch.equal(a["video"][None], b["video"])
    items = [train["camus"][0], train["camus"][1]]
    batch = collate_items(items)
    assert batch["video"].shape == (2, 3, FRAMES, 112, 112) and batch["counts"].tolist() == [1, 1]
    one = train["echonet"][0]
    assert one["video"].shape == (3, FRAMES, 112, 112) and "label" in one


def test_set_starts_is_public_and_validated(roots):
    ds = _datasets(roots, clips=3)["echonet"]
    names = ds.names
    ds.set_starts({names[0]: [0, 3], names[1][:-4]: [2]})  # with or without .avi
    assert ds[0]["starts"].tolist() == [0, 3] and ds[0]["video"].shape[0] == 2
    assert ds[1]["starts"].tolist() == [2]
    ds.set_starts(None)
    assert ds[0]["video"].shape[0] == 3
    with pytest.raises(DatasetError, match="no entry"):
        ds.set_starts({names[0]: [0]})
    with pytest.raises(InputError):
        ds.set_starts({names[0]: [-1], names[1]: [0]})
    assert ds.starts is None  # a failed call leaves the dataset as it was
    camus = _datasets(roots, clips=1)["camus"]
    camus.set_starts(None)
    with pytest.raises(InputError, match="one clip"):
        camus.set_starts({camus.names[0]: [0]})


def test_check_item_names_what_breaks_the_contract():
    good = {"video": torch.zeros(2, 3, 4, 8, 8), "label": torch.tensor(40.0), "name": "v",
            "starts": torch.tensor([0, 4])}
    assert check_item(good) is good
    with pytest.raises(DatasetError, match=r"\[K, 3, T, S, S\]"):
        check_item(dict(good, video=torch.zeros(3, 4, 8, 8)))
    with pytest.raises(DatasetError, match="missing key"):
        check_item({k: v for k, v in good.items() if k != "label"})
    with pytest.raises(DatasetError, match="K = 2"):
        check_item(dict(good, starts=torch.tensor([0])))
    with pytest.raises(DatasetError, match="differs"):
        check_item(dict(good, ef=torch.tensor(41.0)))
    with pytest.raises(DatasetError, match="no item"):
        collate_items([])


def test_moved_names_warn_and_are_the_new_objects():
    from coreecho.data import camus, echonet, hmcqu, layouts, phantom, sequence

    moved = [(phantom, "write_echonet_layout", layouts), (phantom, "write_dicom", layouts),
             (camus, "write_camus_layout", layouts), (camus, "SequenceDataset", sequence),
             (hmcqu, "write_hmcqu_layout", layouts), (hmcqu, "make_akinetic", layouts)]
    for old, name, new in moved:
        with pytest.warns(DeprecationWarning, match=f"use {new.__name__}.{name}"):
            assert getattr(old, name) is getattr(new, name)
    with pytest.raises(AttributeError):
        camus.no_such_name  # noqa: B018
    item = {"video": torch.zeros(1, 3, 2, 4, 4), "label": torch.tensor(50.0), "name": "a", "starts": torch.tensor([0])}
    with pytest.warns(DeprecationWarning, match="collate_items"):
        assert echonet.collate_clips([item])["ef"].tolist() == [50.0]


def test_finetune_data_takes_keywords(roots):
    from coreecho.train.finetune_data import build_dataset, dataset_preprocess

    model = SimpleNamespace(config=ModelConfig())
    pre = dataset_preprocess("camus", model, frames=FRAMES)
    assert (pre.sampling, pre.frames) == ("sequence", FRAMES)
    assert dataset_preprocess("csv", model).sampling == model.config.preprocessing.sampling
    ds = build_dataset("camus", roots["camus"], model, frames=FRAMES, quality="all")
    assert isinstance(ds, CAMUS) and len(ds) == 3 and ds.preprocess == pre
    good = build_dataset("camus", roots["camus"], model, frames=FRAMES, quality="good")
    assert len(good) == 3  # every phantom patient is "good"
    with pytest.raises(DatasetError):
        build_dataset("camus", roots["camus"], model, frames=FRAMES, quality="poor")
    table = build_dataset("csv", roots["csv"], model, frames=FRAMES, stride=STRIDE, path_column="file",
                          label_column="ef", task="classification")
    assert isinstance(table, VideoRegressionDataset) and table.task == "classification" and table.clips == 3
    with pytest.raises(InputError):
        build_dataset("echonet", roots["echonet"], model)
    args = argparse.Namespace(dataset="camus", data=str(roots["camus"]), seed=0, frames=FRAMES, stride=None,
                              sampling=None, temporal=None, quality="all", view="4CH")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_dataset("hmcqu", roots["hmcqu"], model, frames=FRAMES)  # the new signature does not warn
    with pytest.warns(DeprecationWarning):
        old = build_dataset(args, model)
    assert old.names == ds.names and old.preprocess == ds.preprocess
