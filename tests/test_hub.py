"""Weights: official checkpoints, Hub-style folders, the local Hub cache, checksums, strict loading."""

from __future__ import annotations

import json

import pytest
import torch

import coreecho
from coreecho.errors import ChecksumError, ConfigError, ModelNotFoundError, WeightsError
from coreecho.hub import convert_checkpoint, list_models, load_encoder_weights, load_model
from hubcache import add_to_hf_cache, blob_of
from official import forward_reference, official_encoder_state, official_input, official_regressor_state


def official_best_pth(path, prefix="module."):
    ckpt = {
        "epoch": 17,
        "model": {prefix + k: v for k, v in official_encoder_state().items()},
        "regressor": {prefix + k: v for k, v in official_regressor_state().items()},
        "best_error": torch.tensor(3.9),
    }
    torch.save(ckpt, path)
    return path


def reference_regressor():
    """The official regressor layout, built independently of coreecho's head."""
    reg = torch.nn.Sequential(torch.nn.BatchNorm1d(512), torch.nn.Dropout(0.4), torch.nn.Linear(512, 512),
                              torch.nn.BatchNorm1d(512), torch.nn.GELU(), torch.nn.Dropout(0.4),
                              torch.nn.Linear(512, 1))
    reg.load_state_dict(official_regressor_state())
    return reg.double().eval()


@pytest.fixture(scope="module")
def official_ckpt(tmp_path_factory):
    return official_best_pth(tmp_path_factory.mktemp("ckpt") / "best.pth")


@pytest.fixture(scope="module")
def official_outputs(official_ckpt):
    """Embeddings and EF of load_model(best.pth) in float64 on the fixture input."""
    model = load_model(official_ckpt, device="cpu").double()
    x = official_input().double()
    with torch.no_grad():
        return model.encoder(x), model(x)


def test_official_checkpoint_matches_the_official_network(official_outputs):
    emb, ef = official_outputs
    want = torch.tensor(forward_reference()["float64"]["features"], dtype=torch.float64)
    assert torch.allclose(emb, want, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        want_ef = reference_regressor()(want).squeeze(-1)
    assert ef.shape == (2,)
    assert torch.allclose(ef, want_ef, rtol=1e-9, atol=1e-9)


def test_converted_folder_gives_the_same_numbers(official_ckpt, official_outputs, tmp_path):
    out = convert_checkpoint(official_ckpt, tmp_path / "converted")
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["license"] == "CC-BY-NC-4.0" and cfg["metadata"]["epoch"] == 17
    assert len(cfg["metadata"]["source_sha256"]) == 64
    assert cfg["preprocessing"]["frames"] == 36 and cfg["preprocessing"]["stride"] == 4
    model = load_model(out, device="cpu").double()
    x = official_input().double()[:1]
    with torch.no_grad():
        emb, ef = model.encoder(x), model(x)
    assert torch.allclose(emb, official_outputs[0][:1], rtol=1e-12, atol=0)
    assert torch.allclose(ef, official_outputs[1][:1], rtol=1e-12, atol=0)
    assert "CC-BY-NC-4.0" in (out / "README.md").read_text().upper()


def test_checkpoint_without_prefix_and_with_wrong_keys(tmp_path):
    plain = official_best_pth(tmp_path / "plain.pth", prefix="")
    assert load_model(plain, device="cpu").embed_dim == 512
    bad = torch.load(plain, weights_only=True)
    bad["model"]["blocks1.0.extra.weight"] = torch.zeros(3)
    del bad["model"]["norm.bias"]
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"1 missing: norm\.bias.*1 unexpected: blocks1\.0\.extra\.weight"):
        load_model(tmp_path / "bad.pth")


def test_pickled_objects_are_refused(tmp_path):
    import argparse

    torch.save({"model": argparse.Namespace(payload="arbitrary object")}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="weights_only"):
        load_model(tmp_path / "evil.pth")


def test_kinetics_checkpoint_initialises_the_encoder(tmp_path):
    state = official_encoder_state()
    state["head.weight"], state["head.bias"] = torch.zeros(400, 512), torch.zeros(400)
    torch.save(state, tmp_path / "k400.pth")
    model = coreecho.CoReEcho()
    dropped = load_encoder_weights(model.encoder, tmp_path / "k400.pth")
    assert dropped == ["head.bias", "head.weight"]
    assert torch.equal(model.encoder.norm.running_var, state["norm.running_var"])


def test_save_and_load_folder_roundtrip(tiny_model, tmp_path):
    x = torch.randn(2, 3, 8, 112, 112)
    folder = tiny_model.save_pretrained(tmp_path / "m", description="tiny")
    again = load_model(folder, device="cpu")
    with torch.no_grad():
        assert torch.equal(again(x), tiny_model(x))
    assert again.config == tiny_model.config
    assert not again.training


def test_folder_errors(tiny_model, tmp_path):
    with pytest.raises(ModelNotFoundError, match="missing model.safetensors"):
        tiny_model.config.save(tmp_path / "config.json") or load_model(tmp_path)
    folder = tiny_model.save_pretrained(tmp_path / "m")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        load_model(folder)
    folder = tiny_model.save_pretrained(tmp_path / "m2")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["encoder_args"]["embed_dim"] = [8, 16, 32, 128]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="other shapes"):
        load_model(folder)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ModelNotFoundError, match="coreecho-echonet"):
        load_model("no-such-model")
    assert {"coreecho-echonet", "uniformer-small-k400"} <= set(list_models())


def test_manual_model_says_what_to_download_and_run(official_ckpt, monkeypatch):
    with pytest.raises(ModelNotFoundError, match=r"drive\.google\.com.*coreecho convert best\.pth --install"):
        load_model("coreecho-echonet")
    from coreecho.cli import main

    assert main(["convert", str(official_ckpt), "--install", "coreecho-echonet"]) == 0
    assert load_model("coreecho-echonet", device="cpu").config.license == "CC-BY-NC-4.0"
    # a file the user converted is listed as such (no pinned sha256 matches it), never with the paper's metrics
    assert coreecho.hub.status("coreecho-echonet") == "user-converted"


def test_save_pretrained_is_atomic_a_failed_save_leaves_the_folder_loadable(tiny_model, tmp_path, monkeypatch):
    import numpy as np

    from coreecho.analysis.conformal import Calibration
    from coreecho.analysis.shift import ShiftDetector

    rng = np.random.default_rng(0)
    tiny_model.shift_detector = ShiftDetector().fit(rng.normal(size=(80, 64)), k=3)
    folder = tiny_model.save_pretrained(tmp_path / "m")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    tiny_model.shift_detector = ShiftDetector().fit(rng.normal(size=(80, 64)), k=3)

    def killed(self, out):  # the process dies while the calibration is written
        raise KeyboardInterrupt

    monkeypatch.setattr(Calibration, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        tiny_model.save_pretrained(folder)
    # config.json is written last and atomically: the folder still loads, with its previous calibration
    assert (folder / "config.json").read_bytes() == before["config.json"]
    assert (folder / "calibration.safetensors").read_bytes() == before["calibration.safetensors"]
    assert load_model(folder, device="cpu").shift_detector.threshold is not None
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny_model.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "calibration.safetensors", "config.json",
                                                       "model.safetensors"]  # no temporary left behind
    assert load_model(folder, device="cpu").shift_detector is not None


def test_hub_repo_from_local_cache_with_revision_and_checksum(tiny_model, tmp_path):
    folder = tiny_model.save_pretrained(tmp_path / "m")
    files = {n: (folder / n).read_bytes() for n in ("config.json", "model.safetensors")}
    cache = tmp_path / "hf"
    snap = add_to_hf_cache(cache, "someone/echo-tiny", files, commit="b" * 40)
    x = torch.randn(1, 3, 8, 112, 112)
    for ref in ("someone/echo-tiny", "someone/echo-tiny@" + "b" * 40):
        model = load_model(ref, cache_dir=cache, device="cpu")
        with torch.no_grad():
            assert torch.equal(model(x), tiny_model(x))
    blob = blob_of(snap, "model.safetensors")
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="sha256"):
        load_model("someone/echo-tiny", cache_dir=cache)
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        load_model("someone/other-repo", cache_dir=cache)


def test_registry_hub_checkpoint_offline_with_first_use_record(tmp_path):
    state = {k: torch.zeros_like(v) for k, v in official_encoder_state().items()}
    state["head.weight"], state["head.bias"] = torch.zeros(400, 512), torch.zeros(400)
    torch.save(state, tmp_path / "k.pth")
    cache = tmp_path / "hf"
    snap = add_to_hf_cache(cache, "Sense-X/uniformer_video",
                           {"uniformer_small_k400_16x8.pth": (tmp_path / "k.pth").read_bytes()})
    assert not coreecho.hub.is_cached("coreecho-echonet")
    assert coreecho.hub.is_cached("uniformer-small-k400", cache)
    with pytest.warns(UserWarning, match="head of the returned model is untrained"):
        model = load_model("uniformer-small-k400", cache_dir=cache, local_files_only=True, device="cpu")
    assert float(model.encoder.norm.running_var.abs().sum()) == 0.0
    record = coreecho.hub.cache_dir() / "checksums" / "uniformer-small-k400.sha256"
    assert record.is_file()
    record.write_text("0" * 64 + "  uniformer_small_k400_16x8.pth\n")
    with pytest.raises(ChecksumError, match="recorded at its first download"):
        coreecho.hub.fetch_weights_file("uniformer-small-k400", cache_dir_=cache)
    assert snap.exists()


def test_push_to_hub_uploads_config_weights_and_card(tiny_model, monkeypatch):
    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, **kw):
            calls["create"] = (repo_id, kw)

        def upload_folder(self, repo_id, folder_path, **kw):
            from pathlib import Path

            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["card"] = (Path(folder_path) / "README.md").read_text()
            return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/1"})()

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = tiny_model.push_to_hub("me/echo", token="t", training_data="phantoms")
    assert url.endswith("/commit/1")
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"]
    assert "me/echo" in calls["card"] and "phantoms" in calls["card"] and "@inproceedings" in calls["card"]
