"""The one input pipeline: every consumer turns the same video and starts into the same model input.

Consumers compared on a square 112 px AVI, a 300x400 phantom AVI and the pydicom-data ultrasound cine:
``predict_ef``, ``embed``, ``evaluate`` (EchoNet-Dynamic layout), the CSV dataset, Grad-CAM, and, for models
that read whole sequences, the CAMUS and HMC-QU datasets. Inputs are captured at the encoder with a forward
pre-hook, so the test sees exactly what the network sees.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from coreecho import CoReEcho
from coreecho.data.phantom import make_phantom
from coreecho.errors import ConfigError, InputError
from coreecho.models.config import PreprocessConfig
from coreecho.video import write_video
from coreecho.video.pipeline import ClipPipeline
from coreecho.video.samplers import EvenClips, FixedStarts, RandomClips, WholeSequence, as_sampler

STARTS = [0, 7, 13]


def _cine_path() -> str | None:
    try:
        from pydicom.data import get_testdata_file

        return get_testdata_file("color3d_jpeg_baseline.dcm", download=False)  # US, 120 frames 480x640
    except Exception:  # noqa: BLE001 - pydicom or the file missing
        return None


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    out: dict[str, Path] = {}
    frames, _ = make_phantom(ef=55, seed=3, n_frames=150, fps=50)
    out["square.avi"] = write_video(root / "square.avi", frames, fps=50)
    big, _ = make_phantom(ef=40, seed=4, n_frames=150, fps=50, size=300)
    wide = np.zeros((big.shape[0], 300, 400, 3), np.uint8)
    wide[:, :, 50:350] = big
    wide[:, 5:20, 360:395] = 200  # a static burned-in label: the sector crop must ignore it
    out["wide.avi"] = write_video(root / "wide.avi", wide, fps=50)
    cine = _cine_path()
    if cine is not None:
        out["cine.dcm"] = Path(cine)
    return out


def _model(size: int, frames: int = 16, stride: int = 4, sampling: str = "clips") -> CoReEcho:
    torch.manual_seed(0)
    pre = PreprocessConfig(frames=frames, stride=stride, size=size, sampling=sampling)
    return CoReEcho(tiny_config(preprocessing=pre)).eval()


class Capture:
    """Records every tensor the encoder is called with."""

    def __init__(self, model: CoReEcho):
        self.inputs: list[torch.Tensor] = []
        self.handle = model.encoder.register_forward_pre_hook(lambda _m, args: self.inputs.append(args[0].clone()))

    def take(self) -> torch.Tensor:
        out = torch.cat(self.inputs) if self.inputs else torch.zeros(0)
        self.inputs = []
        return out


def _echonet_layout(root: Path, files: dict[str, Path]) -> Path:
    (root / "Videos").mkdir(parents=True)
    with open(root / "FileList.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["FileName", "EF", "Split"])
        for i, (name, path) in enumerate(files.items()):
            (root / "Videos" / name).symlink_to(path)
            w.writerow([name, 50 + i, "TEST"])
    with open(root / "VolumeTracings.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["FileName", "X1", "Y1", "X2", "Y2", "Frame"])
        for name in files:
            w.writerows([[name, 1, 1, 2, 2, 0], [name, 1, 1, 2, 2, 9]])
    return root


@pytest.mark.parametrize("size", [112, 64])
def test_every_consumer_feeds_the_same_tensor(videos, tmp_path, size, one_thread):
    from coreecho.analysis.gradcam import explain
    from coreecho.data.echonet import EchoNetDynamic, VideoRegressionDataset
    from coreecho.train.evaluation import evaluate

    model = _model(size)
    cap = Capture(model)
    names = list(videos)
    paths = [str(videos[n]) for n in names]

    efs = model.predict_ef(paths, starts=STARTS)
    ref = cap.take().reshape(len(paths), len(STARTS), 3, 16, size, size)
    assert ref.shape[-1] == size and torch.isfinite(ref).all()

    model.embed(paths, starts=STARTS)
    assert torch.equal(cap.take().reshape(ref.shape), ref)

    # EchoNet-Dynamic layout, official-style fixed starts
    root = _echonet_layout(tmp_path / "echonet", videos)
    starts = {n: STARTS for n in names}
    ds = EchoNetDynamic(root, "test", preprocess=model.config.preprocessing, starts=starts)
    for i in range(len(ds)):
        assert torch.equal(ds[i]["video"], ref[i]), names[i]
    result = evaluate(model, root, "test", starts=starts, bootstrap=0, device="cpu")
    pred = {r["name"]: r["ef_pred"] for r in result.rows}
    for i, n in enumerate(names):
        assert abs(pred[n] - efs[i]) < 1e-4

    # a CSV of videos, evaluation mode with the same starts
    with open(tmp_path / "list.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows([[p, 50] for p in paths])
    csv_ds = VideoRegressionDataset(tmp_path / "list.csv", preprocess=model.config.preprocessing,
                                    starts={Path(p).name: STARTS for p in paths})
    for i in range(len(csv_ds)):
        assert torch.equal(csv_ds[i]["video"], ref[i])

    # Grad-CAM of the middle clip
    cap.take()
    for i, p in enumerate(paths):
        ex = explain(model, p, start=STARTS[1])
        assert torch.equal(cap.take()[:1], ref[i, 1:2])
        assert ex.start == STARTS[1] and ex.frames.shape == (16, size, size, 3)
    cap.handle.remove()


def test_explain_default_clip_is_predict_efs_middle_clip(videos, one_thread):
    from coreecho.analysis.gradcam import explain

    model = _model(64)
    details = model.predict_ef(str(videos["square.avi"]), return_details=True)
    assert explain(model, str(videos["square.avi"])).start == details.starts[1]


def test_sequence_models_camus_and_hmcqu_match_predict_ef(tmp_path, one_thread):
    from coreecho.data.camus import CAMUS, write_camus_layout
    from coreecho.data.hmcqu import HMCQU, write_hmcqu_layout

    model = _model(64, frames=12, sampling="sequence")
    cap = Capture(model)
    camus_root = tmp_path / "camus"
    write_camus_layout(camus_root, 3, seed=1)
    camus = CAMUS(camus_root, quality=None, preprocess=model.config.preprocessing)
    for i in range(len(camus)):
        model.predict_ef(camus.raw_frames(i))
        assert torch.equal(cap.take()[0], camus[i]["video"])
    hmc_root = tmp_path / "hmcqu"
    write_hmcqu_layout(hmc_root, 3, seed=2, labels_format="csv")
    hmc = HMCQU(hmc_root, preprocess=model.config.preprocessing, span="all")
    for i in range(len(hmc)):
        model.predict_ef(str(hmc.records[i].path))
        assert torch.equal(cap.take()[0], hmc[i]["video"])
    cap.handle.remove()
    with pytest.raises(InputError, match="starts do not apply"):
        model.predict_ef(camus.raw_frames(0), starts=[0])


def test_pipeline_modes_and_errors():
    pre = PreprocessConfig(frames=4, stride=2, size=16, pad=3)
    frames = np.random.default_rng(0).integers(0, 255, (30, 16, 16), dtype=np.uint8)
    test = ClipPipeline(pre)
    a, b = test(frames, [2]), test(frames, [2])
    assert torch.equal(a.x, b.x) and a.starts == [2]
    train = ClipPipeline(pre, train=True)
    with pytest.raises(InputError, match="rng"):
        train(frames)
    t1 = train(frames, [2], rng=np.random.default_rng(5))
    t2 = train(frames, [2], rng=np.random.default_rng(5))
    assert torch.equal(t1.x, t2.x) and not torch.equal(t1.x, a.x)  # augmentation only in training
    # normalisation is (x - mean) / std of the config, per channel
    expect = (a.pixels[0, ..., 0].astype(np.float64) - pre.mean[0]) / pre.std[0]
    np.testing.assert_allclose(a.x[0, 0].numpy(), expect, rtol=1e-6)
    assert as_sampler(None, train=True) == RandomClips(1) and as_sampler(None, default=5) == EvenClips(5)
    assert as_sampler([1, 2]) == FixedStarts([1, 2]) and as_sampler(2, sampling="sequence") == WholeSequence()
    for bad in (0, -1, 1.5, True, "some", 10**9):
        with pytest.raises(InputError):
            as_sampler(bad)


def test_clip_batches_are_bounded_before_allocation():
    from coreecho.video import Limits

    pre = PreprocessConfig(frames=36, stride=1, size=112)
    frames = np.zeros((4000, 8, 8), np.uint8)
    with pytest.raises(InputError, match="clips"):  # 3965 clips of 36x112x112: ~8 GiB
        ClipPipeline(pre)(frames, "every")
    with pytest.raises(InputError, match="max_bytes"):
        ClipPipeline(pre, limits=Limits(max_bytes=10 * 1024**2))(frames, 3)


def test_model_pipeline_follows_config_and_bad_configs_are_typed(tmp_path):
    import json

    from coreecho.hub import load_model

    model = _model(64)
    pipe = model.pipeline()
    assert pipe.config is model.config.preprocessing and not pipe.train and pipe.default_clips == 3
    model.save_pretrained(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    good = json.loads(cfg_path.read_text())
    for change, field in [({"frames": 10**9}, "frames"), ({"fps": 0}, "fps"), ({"std": [1, 0, 1]}, "std"),
                          ({"sampling": "warp"}, "sampling"), ({"size": "112"}, "size")]:
        bad = json.loads(json.dumps(good))
        bad["preprocessing"].update(change)
        cfg_path.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=field):
            load_model(tmp_path / "m")
    bad = dict(good, architecture="resnet50")
    cfg_path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="architecture"):
        load_model(tmp_path / "m")


def test_batch_with_hostile_files_keeps_every_good_row(videos, tmp_path, one_thread):
    lying = tmp_path / "lying.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 112, 112), np.uint8))
    header["shape"] = (10**11, 112, 112)
    with open(lying, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 512)
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 50)
    model = _model(64)
    items = [str(videos["square.avi"]), str(lying), str(text), str(videos["wide.avi"])]
    preds = model.predict_ef(items, return_details=True, errors="nan")
    assert [p.ok for p in preds] == [True, False, False, True]
    assert "lying.npy" in preds[1].error and "notes.txt" in preds[2].error
    alone = model.predict_ef([items[0], items[3]])
    np.testing.assert_array_equal([preds[0].ef, preds[3].ef], alone)


def test_inference_leaves_a_training_model_untouched(videos, one_thread):
    model = _model(64)
    path = str(videos["square.avi"])
    expected = model.predict_ef(path)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.predict_ef(path) == expected
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fan_box_is_found_once_per_file_and_reused(videos, monkeypatch):
    from coreecho.video import transforms

    calls = []
    real = transforms.find_sector_bbox
    monkeypatch.setattr(transforms, "find_sector_bbox", lambda f, **kw: calls.append(len(f)) or real(f, **kw))
    pipe = ClipPipeline(PreprocessConfig(frames=8, stride=4, size=64))
    path = str(videos["wide.avi"])
    first = pipe(path, [0])
    again = pipe(path, [40])  # other clips of the same file: the box found from the whole video is reused
    assert calls == [32] and len(pipe._boxes) == 1
    assert torch.equal(ClipPipeline(pipe.config)(path, [40]).x, again.x)  # a fresh pipeline finds the same box
    assert torch.equal(pipe(path, [0]).x, first.x)


_CONFIG_SCRIPT = r"""
import sys
from coreecho.errors import ConfigError
try:
    import coreecho
    coreecho.load_model(sys.argv[1])
    print("LOADED")
except ConfigError as err:
    print("CONFIGERROR", err)
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]
print("HWM_KB", int(hwm.split()[1]))
"""


@pytest.mark.parametrize("change, field_name", [
    ({"preprocessing": {"frames": 10**9}}, "frames"),
    ({"preprocessing": {"size": 10**6}}, "size"),
    ({"preprocessing": {"fps": 0}}, "fps"),
    ({"encoder_args": {"depth": [1, 1, 1, 1], "embed_dim": [10**9, 16, 32, 64], "head_dim": 8}}, "embed_dim"),
    ({"head_args": {"hidden_dim": 10**9}}, "hidden_dim"),
    ({"test_clips": 10**9}, "test_clips"),
])
def test_hostile_configs_fail_typed_fast_and_small(tmp_path, change, field_name):
    """A hand-edited config.json: a ConfigError naming the field, well under 1 GB (a subprocess with a generous timeout)."""
    import json
    import subprocess
    import sys

    model = _model(64)
    folder = model.save_pretrained(tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    for key, value in change.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    (folder / "config.json").write_text(json.dumps(cfg))
    out = subprocess.run([sys.executable, "-c", _CONFIG_SCRIPT, str(folder)], capture_output=True, text=True,
                         timeout=120).stdout
    assert "CONFIGERROR" in out and field_name in out, out
    hwm_mb = int(out.split("HWM_KB")[1].split()[0]) / 1024
    assert hwm_mb < 1024, hwm_mb


class EvalCapture:
    """Records the tensors an encoder (or any deep copy of it) is called with in eval mode; training steps, which
    run their own forward on augmented clips by design, are left out."""

    def __init__(self, model: CoReEcho):
        self.inputs: list[torch.Tensor] = []

        def record(module: torch.nn.Module, args: tuple) -> None:  # a function: deep copies of the model share it
            if not module.training:
                self.inputs.append(args[0].detach().clone())

        self.handle = model.encoder.register_forward_pre_hook(record)

    def take(self) -> torch.Tensor:
        out = torch.cat(self.inputs) if self.inputs else torch.zeros(0)
        self.inputs = []
        return out


def _transfer_and_calibration_inputs(model: CoReEcho, dataset, folds, cap: EvalCapture) -> dict[str, torch.Tensor]:
    """What the encoder sees from each consumer of the transfer recipes and of calibration, in eval mode."""
    from coreecho.analysis.calibration import collect
    from coreecho.train.transfer import cross_validate, finetune

    seen = {}
    cross_validate(model, dataset, mode="mlp", folds=folds, epochs=1, batch_size=2, eval_clips=2)
    seen["cross_validate mlp"] = cap.take()
    cross_validate(model, dataset, mode="full", folds=folds, epochs=1, batch_size=2, eval_clips=2)
    seen["cross_validate full"] = cap.take()
    finetune(model, dataset, mode="mlp", epochs=1, batch_size=2, eval_clips=2)
    seen["finetune mlp"] = cap.take()
    got = collect(model, dataset)
    np.testing.assert_allclose(got["true"], dataset.labels)
    seen["calibration"] = cap.take()
    return seen


def test_transfer_and_calibration_feed_the_same_tensor_on_csv_data(videos, tmp_path, one_thread):
    from coreecho.data.echonet import VideoRegressionDataset

    model = _model(64)
    cap = EvalCapture(model)
    paths = [str(p) for p in videos.values()]
    paths = (paths * 4)[:4]  # 4 rows (a video may be listed twice: rows are items)
    model.predict_ef(paths, clips=2)
    two = cap.take().reshape(4, 2, 3, 16, 64, 64)  # eval_clips=2: evenly spaced, as predict_ef(clips=2)
    model.predict_ef(paths)
    three = cap.take()  # the model's test clips: what calibration reads from a CSV of videos
    with open(tmp_path / "list.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows([[p, 40 + 5 * i] for i, p in enumerate(paths)])
    ds = VideoRegressionDataset(tmp_path / "list.csv", preprocess=model.config.preprocessing)
    ds.groups = ["p0", "p1", "p2", "p3"]
    folds = [([0, 1], [2, 3]), ([2, 3], [0, 1])]
    seen = _transfer_and_calibration_inputs(model, ds, folds, cap)
    cap.handle.remove()
    flat = two.reshape(8, 3, 16, 64, 64)
    assert torch.equal(seen["cross_validate mlp"], flat)  # embeddings of every item, once
    assert torch.equal(seen["cross_validate full"], two[[2, 3, 0, 1]].reshape(flat.shape))  # each fold's test items
    assert torch.equal(seen["finetune mlp"], flat)
    assert torch.equal(seen["calibration"], three)


def test_transfer_and_calibration_feed_the_same_tensor_on_camus(tmp_path, one_thread):
    from coreecho.data.camus import CAMUS
    from coreecho.data.layouts import write_camus_layout

    model = _model(64, frames=12, sampling="sequence")
    cap = EvalCapture(model)
    write_camus_layout(tmp_path / "camus", 4, seed=5)
    camus = CAMUS(tmp_path / "camus", quality=None, preprocess=model.config.preprocessing)
    for i in range(len(camus)):
        model.predict_ef(camus.raw_frames(i))
    ref = cap.take()
    assert ref.shape == (4, 3, 12, 64, 64)
    folds = [([0, 1], [2, 3]), ([2, 3], [0, 1])]
    seen = _transfer_and_calibration_inputs(model, camus, folds, cap)
    cap.handle.remove()
    assert torch.equal(seen["cross_validate mlp"], ref)
    assert torch.equal(seen["cross_validate full"], ref[[2, 3, 0, 1]])
    assert torch.equal(seen["finetune mlp"], ref)
    assert torch.equal(seen["calibration"], ref)
    assert camus.clips is None and not camus.augment  # the dataset is handed back as it was given
