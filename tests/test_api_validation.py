"""Run settings are checked in the Python API exactly as the command line checks them (coreecho.validate), and
configs are validated completely at load, with typed errors naming the argument, the file and the field."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

import coreecho
from coreecho.cli import _common
from coreecho.errors import ConfigError, InputError
from coreecho.validate import check_run_settings

BAD = [("threads", 10**6), ("threads", 0), ("threads", True), ("threads", 2.0), ("workers", -1), ("workers", 65),
       ("batch_size", 0), ("batch_size", 4097), ("batch_size", 1.5), ("clips", 0), ("clips", 2.5), ("clips", "x"),
       ("clips", 10**6), ("coverage", "x"), ("coverage", 0), ("coverage", 1.0), ("coverage", float("nan")),
       ("precision", "fp64"), ("precision", None), ("device", "meta"), ("device", "cuda:x"), ("device", 3),
       ("fps", float("nan")), ("fps", 1e-5), ("fps", 1e6), ("fps", "x"), ("fps", float("inf"))]


@pytest.fixture(scope="module")
def model():
    return coreecho.load_model("phantom-tiny", device="cpu")


@pytest.mark.parametrize("name,value", BAD, ids=[f"{n}={v!r}" for n, v in BAD])
@pytest.mark.parametrize("call", ["predict_ef", "embed"])
def test_api_refuses_bad_settings_before_any_work(call, name, value, model, monkeypatch):
    ran = []
    monkeypatch.setattr("coreecho.inference.stream", lambda *a, **k: ran.append(1) or iter(()))
    before = torch.get_num_threads()
    kwargs = {name: value}
    with pytest.raises(InputError, match=f"^{name}: "):
        getattr(coreecho, call)(np.zeros((40, 64, 64), np.uint8), model="phantom-tiny" if name == "device" else model,
                                **kwargs)
    assert not ran and torch.get_num_threads() == before


def test_good_settings_pass_and_are_normalised():
    got = check_run_settings(threads=np.int64(2), workers=0, batch_size=None, clips="all", coverage=0.8,
                             precision="auto", device=torch.device("cpu"), fps=np.float32(25))
    assert got["threads"] == 2 and type(got["threads"]) is int and got["fps"] == 25.0 and got["coverage"] == 0.8


@pytest.mark.parametrize("option,check,values", [
    ("--threads", "threads", ["0", "1", "1024", "1025", "1000000"]),
    ("--workers", "workers", ["-1", "0", "64", "65"]),
    ("--batch-size", "batch_size", ["0", "1", "4096", "4097"]),
    ("--clips", "clips", ["0", "1", "4096", "4097", "all", "every", "some"]),
    ("--device", "device", ["cpu", "cuda", "cuda:3", "mps", "auto", "meta", "xla", "cuda:x"]),
])
def test_cli_and_api_accept_exactly_the_same_values(option, check, values):
    p = argparse.ArgumentParser(exit_on_error=False)
    {"--threads": _common.add_threads, "--workers": _common.add_workers, "--batch-size": _common.add_batch_size,
     "--clips": _common.add_clips, "--device": _common.add_device}[option](p)
    for text in values:
        try:
            cli_ok = True
            p.parse_args([option, text])
        except (argparse.ArgumentError, SystemExit):
            cli_ok = False
        value = int(text) if text.lstrip("-").isdigit() and check != "device" else text
        try:
            check_run_settings(**{check: value})
            api_ok = True
        except InputError:
            api_ok = False
        assert cli_ok == api_ok, (option, text)


def test_stream_and_set_threads_and_load_model_check_too(model):
    from coreecho.engine import VideoItems, stream
    from coreecho.precision import set_threads

    items = VideoItems([np.zeros((40, 64, 64), np.uint8)], model.pipeline())
    for kwargs in ({"workers": -1}, {"batch_size": 0}, {"precision": "x"}):
        with pytest.raises(InputError):
            list(stream(items, model, **kwargs))
    before = torch.get_num_threads()
    with pytest.raises(InputError, match="threads"):
        set_threads(10**6)  # torch crashed the interpreter on this
    assert torch.get_num_threads() == before
    with pytest.raises(InputError, match="device"):
        coreecho.load_model("phantom-tiny", device="meta")


@pytest.mark.parametrize("change,field", [
    ({"preprocessing": {"size": 16}}, "preprocessing.size"),
    ({"encoder_args": {"in_chans": 1}}, "in_chans"),
])
def test_configs_a_model_cannot_run_are_refused_at_load(change, field, tiny_model, tmp_path):
    from coreecho.hub.folder import save_pretrained

    folder = save_pretrained(tiny_model, tmp_path / "m", model_card=False)
    data = json.loads((folder / "config.json").read_text())
    for key, value in change.items():
        data[key].update(value)
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=field) as e:
        coreecho.load_model(str(folder), device="cpu")
    assert "config.json" in str(e.value)


@pytest.mark.parametrize("content,words", [(b"\xff\xfe{\x00}", "UTF-8"), (b"[" * 100_000 + b"]" * 100_000, "nested"),
                                           (b"{not json", "cannot read")])
def test_unreadable_config_json_is_a_config_error_naming_the_file(content, words, tiny_model, tmp_path):
    from coreecho.hub.folder import save_pretrained
    from coreecho.models.config import ModelConfig

    folder = save_pretrained(tiny_model, tmp_path / "m", model_card=False)
    (folder / "config.json").write_bytes(content)
    for load in (lambda: ModelConfig.load(folder / "config.json"), lambda: coreecho.load_model(str(folder))):
        with pytest.raises(ConfigError, match=words) as e:
            load()
        assert str(folder / "config.json") in str(e.value)


@pytest.fixture
def calibrated_folder(tiny_model, tmp_path):
    from coreecho.analysis.calibration import calibrate

    rng = np.random.default_rng(3)
    n, dim = 60, tiny_model.embed_dim
    got = {"predicted": rng.uniform(10, 80, n), "ef_std": rng.uniform(0.1, 2, n),
           "embeddings": rng.normal(size=(n, dim))}
    got["true"] = got["predicted"] + rng.normal(0, 3, n)
    calibrate(tiny_model, collected=got, n_components=5)
    return tiny_model.save_pretrained(tmp_path / "cal")


@pytest.mark.parametrize("where,key,value,words", [
    ("interval", "k", 0, "k must be"), ("interval", "k", 10**6, "n >= k"), ("interval", "floor", float("nan"), "floor"),
    ("interval", "bounds", [50, 10], "bounds"), ("shift", "threshold", float("nan"), "threshold"),
    ("shift", "false_alarm_rate", 2.0, "false_alarm_rate"), ("shift", "k", 0, "k, dim"),
    ("", "coverage", float("nan"), "coverage"), ("", "coverage", "x", "coverage"),
])
def test_calibration_entries_are_validated_at_load(calibrated_folder, where, key, value, words):
    from coreecho.errors import CoReEchoError

    cfg = json.loads((calibrated_folder / "config.json").read_text())
    entry = cfg["calibration"][where] if where else cfg["calibration"]
    if entry is None:
        pytest.skip(f"this calibration has no {where}")
    entry[key] = value
    (calibrated_folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CoReEchoError, match=words) as e:
        coreecho.load_model(str(calibrated_folder), device="cpu")
    assert "calibration" in str(e.value)
    assert isinstance(e.value, (ConfigError, coreecho.errors.WeightsError))


def test_a_calibration_of_another_embedding_width_is_refused(calibrated_folder, tmp_path):
    import hashlib

    from coreecho import CoReEcho
    from coreecho.errors import WeightsError
    from coreecho.models.config import ModelConfig

    other = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
        "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 48], "head_dim": 8})).eval()
    theirs = other.save_pretrained(tmp_path / "other")
    cfg = json.loads((theirs / "config.json").read_text())
    cal = json.loads((calibrated_folder / "config.json").read_text())["calibration"]
    (calibrated_folder / "model.safetensors").write_bytes((theirs / "model.safetensors").read_bytes())
    cal["weights_sha256"] = hashlib.sha256((theirs / "model.safetensors").read_bytes()).hexdigest()
    (calibrated_folder / "config.json").write_text(json.dumps({**cfg, "calibration": cal}))
    with pytest.raises(WeightsError, match="another model") as e:
        coreecho.load_model(str(calibrated_folder), device="cpu")
    assert "48" in str(e.value) and "64" in str(e.value)


def test_integer_weights_are_refused_at_load(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    from coreecho.errors import WeightsError

    folder = tiny_model.save_pretrained(tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].round().to(torch.int64)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightsError, match="integers") as e:
        coreecho.load_model(str(folder), device="cpu")
    assert name in str(e.value) and "model.safetensors" in str(e.value)


def test_tensors_without_dense_data_are_typed_error_rows(model):
    from coreecho.data.phantom import make_phantom

    good, _ = make_phantom(ef=55, seed=0, n_frames=40)
    bad = {"meta": torch.zeros(10, 64, 64, device="meta"), "sparse": torch.zeros(10, 64, 64).to_sparse(),
           "quantized": torch.quantize_per_tensor(torch.zeros(10, 64, 64), 0.1, 0, torch.quint8)}
    for word, tensor in bad.items():
        rows = coreecho.predict_ef([good, tensor, good], model=model, errors="nan", return_details=True, workers=0)
        assert rows[0].ok and rows[2].ok and not rows[1].ok and word in rows[1].error, rows[1].error
        with pytest.raises(InputError, match=word):
            coreecho.predict_ef(tensor, model=model, workers=0)
