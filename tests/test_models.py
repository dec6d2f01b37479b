"""Head, config and the CoReEcho module."""

from __future__ import annotations

import json

import pytest
import torch

from coreecho import CoReEcho
from coreecho.errors import ConfigError
from coreecho.models.config import ECHONET_MEAN, ModelConfig, PreprocessConfig
from coreecho.models.head import RegressionHead
from conftest import tiny_config


def test_head_layout_matches_the_official_regressor():
    head = RegressionHead(512)
    assert [type(m).__name__ for m in head] == ["BatchNorm1d", "Dropout", "Linear", "BatchNorm1d", "GELU",
                                                "Dropout", "Linear"]
    expected = [f"{i}.{n}" for i in (0, 3) for n in ("weight", "bias", "running_mean", "running_var",
                                                     "num_batches_tracked")] + ["2.bias", "2.weight", "6.bias", "6.weight"]
    assert sorted(head.state_dict()) == sorted(expected)
    assert head[1].p == 0.4 and head[5].p == 0.4 and head[-1].bias.item() == pytest.approx(55.6)
    assert head.eval()(torch.zeros(3, 512)).shape == (3,)


def test_reset_head_for_classification(tiny_model):
    tiny_model.reset_head(3)
    x = torch.randn(2, 3, 8, 112, 112)
    assert tiny_model.eval()(x).shape == (2, 3)
    assert tiny_model.config.head_args["out_dim"] == 3 and tiny_model.config.task == "custom"
    rebuilt = CoReEcho(ModelConfig.from_dict(tiny_model.config.to_dict()))
    rebuilt.load_state_dict(tiny_model.state_dict())


def test_model_shapes_dtype_and_device_moves(tiny_model):
    x = torch.randn(2, 3, 36, 112, 112)
    assert tiny_model.encoder(x).shape == (2, 64)
    assert tiny_model(x).shape == (2,)
    double = tiny_model.double()
    assert double.dtype == torch.float64 and double(x.double()).dtype == torch.float64
    assert double.to("cpu").device.type == "cpu"
    assert not tiny_model.eval().training and tiny_model.train().head.training


def test_default_model_is_coreecho_uniformer_small():
    model = CoReEcho()
    assert model.embed_dim == 512
    assert sum(p.numel() for p in model.encoder.parameters()) == 21_195_200
    pre = model.config.preprocessing
    assert (pre.frames, pre.stride, pre.size, pre.fps) == (36, 4, 112, 50.0)
    assert pre.mean == pytest.approx((32.49, 32.63, 32.93), abs=0.01)


def test_config_json_roundtrip_and_validation(tmp_path):
    cfg = tiny_config(metadata={"seed": 3})
    cfg.save(tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["format"] == "coreecho" and data["preprocessing"]["mean"] == list(ECHONET_MEAN)
    assert ModelConfig.load(tmp_path / "c.json") == cfg
    with pytest.warns(UserWarning, match="unknown config keys"):
        ModelConfig.from_dict({**data, "new_field": 1})
    with pytest.raises(ConfigError, match="format_version"):
        ModelConfig.from_dict({**data, "format_version": 99})
    with pytest.raises(ConfigError, match="test_clips"):
        ModelConfig(test_clips=0)
    with pytest.raises(ConfigError, match="std"):
        PreprocessConfig(std=(1, 0, 1))


def test_calibration_and_shift_detector_are_declared_and_travel_with_the_weights(tmp_path):
    """Declared on the class (None on a fresh model, not tensors of the state dict); a save writes them, a load
    sets them, and a detector set on its own replaces the calibration's in what is saved."""
    import numpy as np

    from coreecho.analysis.calibration import Calibration, ConformalInterval
    from coreecho.analysis.shift import ShiftDetector, attach
    from coreecho.hub import load_model

    torch.manual_seed(0)
    model = CoReEcho(tiny_config()).eval()
    assert model.calibration is None and model.shift_detector is None
    assert "calibration" in CoReEcho.__annotations__ and "shift_detector" in CoReEcho.__annotations__
    rng = np.random.default_rng(0)
    pred, true = rng.uniform(20, 70, 60), rng.uniform(20, 70, 60)
    emb = rng.normal(size=(60, model.embed_dim))
    model.calibration = Calibration(ConformalInterval().fit(pred, true, difficulty="constant"), None)
    detector = ShiftDetector().fit(emb, k=3)
    attach(model, detector)
    assert not any(k.startswith(("calibration", "shift")) for k in model.state_dict())
    back = load_model(model.save_pretrained(tmp_path / "m"), device="cpu")
    assert back.shift_detector.threshold == detector.threshold
    assert back.calibration.detector is back.shift_detector
    np.testing.assert_array_equal(back.calibration.interval.scores, model.calibration.interval.scores)
    np.testing.assert_array_equal(back.shift_detector.score(emb), detector.score(emb))
    attach(back, None)
    assert back.shift_detector is None and CoReEcho(tiny_config()).shift_detector is None


def test_one_constructor_validates_once_and_names_the_source():
    from coreecho.models.build import build_model

    bad = {**tiny_config().to_dict(), "head_args": {"out_dim": 0}}
    with pytest.raises(ConfigError, match=r"^models/x/config.json: head_args.out_dim"):
        build_model(bad, source="models/x/config.json")
    with pytest.raises(ConfigError, match=r"^config: head_args.out_dim"):
        CoReEcho(ModelConfig.from_dict(bad))
    assert type(build_model(tiny_config())) is CoReEcho
