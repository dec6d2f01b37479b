"""EchoNet-Dynamic dataset on a phantom layout: filter, splits, errors, views, augmentation, determinism."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coreecho.data.echonet import EchoNetDynamic, VideoRegressionDataset, collate_clips
from coreecho.errors import DatasetError, InputError
from coreecho.models.config import ECHONET_MEAN, ECHONET_STD
from coreecho.video.io import read_video
from coreecho.video.sampling import max_start, test_starts

FRAMES, STRIDE = 8, 4
MEAN = torch.tensor(ECHONET_MEAN).view(3, 1, 1, 1)
STD = torch.tensor(ECHONET_STD).view(3, 1, 1, 1)


pytestmark = pytest.mark.usefixtures("one_thread")


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _write(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> dict:
    """10 short phantoms (6 train / 2 val / 2 test); one train video keeps 1 traced frame, one has none."""
    from coreecho.data.phantom import write_echonet_layout

    root = tmp_path_factory.mktemp("echonet")
    rows = write_echonet_layout(root, 10, seed=3, n_frames=(30, 40), splits=(6, 2, 2), progress=False)
    train = [r["FileName"] for r in rows if r["Split"] == "TRAIN"]
    one, none = train[0], train[1]
    fields, tracings = _rows(root / "VolumeTracings.csv")
    kept, seen_frame = [], None
    for r in tracings:
        stem = r["FileName"][:-4]
        if stem == none:
            continue
        if stem == one:
            seen_frame = seen_frame or r["Frame"]
            if r["Frame"] != seen_frame:
                continue
        kept.append(r)
    _write(root / "VolumeTracings.csv", fields, kept)
    return {"root": root, "rows": rows, "dropped": {one + ".avi", none + ".avi"}}


def _copy(layout: dict, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(layout["root"], dst)
    return dst


def test_filter_and_splits(layout):
    root, rows = layout["root"], layout["rows"]
    train = EchoNetDynamic(root, "train", frames=FRAMES, stride=STRIDE)
    assert len(train) == 4
    assert not set(train.names) & layout["dropped"]
    assert len(EchoNetDynamic(root, "TRAIN", min_traced_frames=0)) == 6
    assert len(EchoNetDynamic(root, "val")) == 2 and len(EchoNetDynamic(root, "test")) == 2
    assert len(EchoNetDynamic(root, "all")) == 8
    by_name = {r["FileName"] + ".avi": r["EF"] for r in rows}
    item = train[0]
    assert item["name"].endswith(".avi")
    assert item["ef"].dtype == torch.float32 and abs(float(item["ef"]) - by_name[item["name"]]) < 1e-4
    np.testing.assert_allclose(train.labels, [by_name[n] for n in train.names], rtol=1e-6)


def test_errors_name_file_and_expectation(layout, tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        EchoNetDynamic(tmp_path / "missing", "train")
    with pytest.raises(DatasetError, match="'nope'.*train, val"):
        EchoNetDynamic(layout["root"], "nope")
    root = _copy(layout, tmp_path)
    fields, rows = _rows(root / "FileList.csv")
    _write(root / "FileList.csv", [f for f in fields if f != "EF"], [{k: v for k, v in r.items() if k != "EF"}
                                                                      for r in rows])
    with pytest.raises(DatasetError, match=r"FileList.csv: missing column\(s\) EF"):
        EchoNetDynamic(root, "train")
    _write(root / "FileList.csv", fields, rows)
    (root / "VolumeTracings.csv").unlink()
    with pytest.raises(DatasetError, match="VolumeTracings.csv: file not found"):
        EchoNetDynamic(root, "train")
    assert len(EchoNetDynamic(root, "train", min_traced_frames=0)) == 6
    victim = sorted((root / "Videos").iterdir())[0]
    victim.unlink()
    with pytest.raises(DatasetError, match=f"missing.*{victim.name}"):
        EchoNetDynamic(root, "all", min_traced_frames=0)
    (root / "FileList.csv").unlink()
    with pytest.raises(DatasetError, match="FileList.csv: file not found"):
        EchoNetDynamic(root, "train")
    with pytest.raises(InputError):
        EchoNetDynamic(layout["root"], "train", clips=0)


def test_views_clips_and_shapes(layout):
    root = layout["root"]
    one = EchoNetDynamic(root, "train", frames=FRAMES, stride=STRIDE)[0]["video"]
    assert one.shape == (3, FRAMES, 112, 112) and one.dtype == torch.float32
    two = EchoNetDynamic(root, "train", frames=FRAMES, stride=STRIDE, views=2, augment=True)[0]
    assert two["video"].shape == (2, 3, FRAMES, 112, 112) and two["starts"].shape == (2,)
    three = EchoNetDynamic(root, "test", frames=FRAMES, stride=STRIDE, clips=3, clip_policy="even")
    item = three[0]
    n = read_video(three.records[0].path).n_frames
    assert item["video"].shape == (3, 3, FRAMES, 112, 112)
    assert item["starts"].tolist() == test_starts(n, FRAMES, STRIDE, 3)
    assert item["starts"][0] == 0 and item["starts"][-1] == max_start(n, FRAMES, STRIDE)
    every = EchoNetDynamic(root, "test", frames=FRAMES, stride=STRIDE, clips="every")
    assert every[0]["video"].shape[0] == max_start(n, FRAMES, STRIDE) + 1
    batch = next(iter(every.loader(batch_size=2)))
    assert batch["video"].shape[0] == int(batch["counts"].sum()) and len(batch["name"]) == 2
    fixed = EchoNetDynamic(root, "test", frames=FRAMES, stride=STRIDE,
                           starts={r.name: [1, 2] for r in every.records})
    assert fixed[1]["starts"].tolist() == [1, 2] and fixed[1]["video"].shape[0] == 2
    with pytest.raises(DatasetError, match="no entry"):
        EchoNetDynamic(root, "test", starts={"other.avi": [0]})
    assert collate_clips([fixed[0], fixed[1]])["video"].shape[0] == 4


def test_normalisation_and_end_padding(layout):
    names = EchoNetDynamic(layout["root"], "test").names
    ds = EchoNetDynamic(layout["root"], "test", frames=16, stride=4, starts={n: [0] for n in names})
    item = ds[0]
    video = read_video(ds.records[0].path)
    n = video.n_frames
    assert 16 * 4 > n  # the clip runs past the end of the video
    clip = item["video"][0]  # [3, T, H, W]
    inside = [t for t in range(16) if t * 4 < n]
    raw = torch.from_numpy(video.frames[[t * 4 for t in inside]]).permute(3, 0, 1, 2).float()
    torch.testing.assert_close(clip[:, inside], (raw - MEAN) / STD, rtol=0, atol=1e-5)
    pad_value = (-MEAN / STD).expand(3, 16 - len(inside), 112, 112)
    torch.testing.assert_close(clip[:, len(inside):], pad_value, rtol=0, atol=1e-6)


def test_augmentation_same_offset_for_all_frames(layout):
    root = layout["root"]
    plain = EchoNetDynamic(root, "train", frames=FRAMES, stride=STRIDE, clips=1, clip_policy="even")
    aug = EchoNetDynamic(root, "train", frames=FRAMES, stride=STRIDE, clips=1, clip_policy="even", augment=True,
                         pad=12, seed=5)
    offsets = set()
    for i in range(len(plain)):
        x = plain[i]["video"][0] * STD + MEAN  # pixel units
        y = aug[i]["video"][0] * STD + MEAN
        padded = F.pad(x, (12, 12, 12, 12))
        # every 112 x 112 window of the padded first frame: [3, 25, 25, 112, 112] (a view, no copy)
        windows = padded[:, 0].unfold(1, 112, 1).unfold(2, 112, 1)
        error = (windows - y[:, 0, None, None]).abs().amax(dim=(0, 3, 4))  # [25, 25]
        top, left = divmod(int(error.argmin()), 25)
        assert float(error[top, left]) < 1e-3
        torch.testing.assert_close(padded[:, :, top:top + 112, left:left + 112], y, rtol=0, atol=1e-3)
        offsets.add((top, left))
    assert len(offsets) > 1  # the offset is random across videos


def test_seeded_determinism_and_worker_safety(layout):
    root = layout["root"]
    kw = dict(frames=FRAMES, stride=STRIDE, views=2, augment=True, seed=11)
    a, b = EchoNetDynamic(root, "train", **kw), EchoNetDynamic(root, "train", **kw)
    torch.testing.assert_close(a[2]["video"], b[2]["video"], rtol=0, atol=0)
    starts = [a[i]["starts"].tolist() for i in range(len(a))]
    a.set_epoch(1)
    assert [a[i]["starts"].tolist() for i in range(len(a))] != starts or not torch.equal(a[0]["video"], b[0]["video"])
    a.set_epoch(0)
    serial = [x["video"] for x in a.loader(batch_size=2, num_workers=0)]
    parallel = [x["video"] for x in a.loader(batch_size=2, num_workers=2)]
    for s, p in zip(serial, parallel):
        torch.testing.assert_close(s, p, rtol=0, atol=0)
    fresh = EchoNetDynamic(root, "train", frames=FRAMES, stride=STRIDE, views=2, augment=True, seed=None)
    assert fresh[0]["video"].shape == (2, 3, FRAMES, 112, 112)


def test_video_regression_dataset(layout, tmp_path):
    rows = [r for r in layout["rows"] if r["Split"] == "TEST"]
    table = tmp_path / "videos.csv"
    _write(table, ["file", "ef"], [{"file": r["path"], "ef": str(r["EF"])} for r in rows])
    ds = VideoRegressionDataset(table, path_column="file", label_column="ef", frames=FRAMES, stride=STRIDE, clips=2)
    assert len(ds) == 2 and ds[0]["video"].shape == (2, 3, FRAMES, 112, 112)
    assert abs(float(ds[1]["ef"]) - rows[1]["EF"]) < 1e-4
    with pytest.raises(DatasetError, match="missing column.*label"):
        VideoRegressionDataset(table, path_column="file")
