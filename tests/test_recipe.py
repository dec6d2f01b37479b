"""The config says how the model was trained: validation, the one model builder, resume refusal, fine-tune sampling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import TINY_ENCODER, tiny_config
from coreecho.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def _config_dict(**changes) -> dict:
    from coreecho.models.config import ModelConfig

    data = ModelConfig(architecture="uniformer_custom", encoder_args=dict(TINY_ENCODER)).to_dict()
    for key, value in changes.items():
        target = data
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return data


@pytest.mark.parametrize("key, value, field", [
    ("preprocessing.frames", 10**9, "frames"),
    ("preprocessing.frames", "36", "frames"),
    ("preprocessing.frames", 0, "frames"),
    ("preprocessing.stride", 2.5, "stride"),
    ("preprocessing.size", -112, "size"),
    ("preprocessing.fps", 0, "fps"),
    ("preprocessing.std", [0.0, 1.0, 1.0], "std"),
    ("preprocessing.std", [math.nan, 1.0, 1.0], "std"),
    ("preprocessing.mean", [1.0, 2.0], "mean"),
    ("preprocessing.sampling", "every", "sampling"),
    ("preprocessing", [36], "preprocessing"),
    ("architecture", "uniformer_huge", "architecture"),
    ("encoder_args", [1, 2], "encoder_args"),
    ("test_clips", 10**9, "test_clips"),
    ("encoder_args.embed_dim", [10**9, 16, 32, 64], "embed_dim"),
    ("encoder_args.depth", [1, 1, 10**6, 1], "depth"),
    ("encoder_args.depth", [1, 1, 1], "depth"),
    ("encoder_args.head_dim", 0, "head_dim"),
    ("encoder_args.head_dim", 7, "head_dim"),
    ("encoder_args.drop_rate", 1.5, "drop_rate"),
    ("encoder_args.mlp_ratio", math.inf, "mlp_ratio"),
    ("encoder_args.bogus", 1, "bogus"),
    ("encoder_args.embed_dim", [4096, 4096, 4096, 4096], "parameters"),
    ("head_args.hidden_dim", 10**9, "hidden_dim"),
    ("head_args.out_dim", 0, "out_dim"),
    ("head_args.in_dim", 64, "in_dim"),
])
def test_invalid_configs_raise_config_error_naming_the_field(key, value, field):
    from coreecho.models.build import build_model

    with pytest.raises(ConfigError, match=field):
        build_model(_config_dict(**{key: value}), source="config.json")


def test_build_model_is_the_one_builder(tmp_path):
    import torch

    from coreecho.hub import load_model
    from coreecho.models import ENCODER_PRESETS, build_model, resolve_encoder
    from coreecho.models.uniformer import build_uniformer
    from coreecho.train.config import ENCODER_PRESETS as TRAIN_PRESETS

    assert TRAIN_PRESETS is ENCODER_PRESETS and resolve_encoder("micro", "x", {})[1] == TINY_ENCODER
    torch.manual_seed(0)
    model = build_model(tiny_config())
    assert model.embed_dim == 64 and model.config.preprocessing.sampling == "clips"
    with pytest.raises(ConfigError, match="unknown UniFormer size.*uniformer_small"):
        build_uniformer("uniformer_huge")
    # a hand-edited config.json is refused before any tensor is allocated
    folder = model.save_pretrained(tmp_path / "m")
    data = json.loads((folder / "config.json").read_text())
    data["encoder_args"]["embed_dim"] = [10**9, 16, 32, 64]
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"config\.json.*embed_dim"):
        load_model(folder, device="cpu")
    data = _config_dict(**{"preprocessing.frames": 10**9})
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"config\.json.*frames"):
        load_model(folder, device="cpu")


def test_train_config_maps_to_its_preprocessing():
    from coreecho.train.config import TrainConfig

    pre = TrainConfig(frames=16, stride=2, size=64, pad=0).preprocess()
    assert (pre.frames, pre.stride, pre.size, pre.pad, pre.sampling) == (16, 2, 64, 0, "clips")
    with pytest.raises(ConfigError, match="frames"):
        TrainConfig(frames=10**9)


def test_resume_diff_rules(tmp_path):
    from coreecho.train.config import TrainConfig
    from coreecho.train.recipe import resume_diff

    saved = TrainConfig(preset="micro", frames=16, init="none", out=str(tmp_path))
    ckpt = {"config": saved.to_dict(), "model_config": {"preprocessing": {"sampling": "clips"}}}
    same = TrainConfig(preset=None, architecture="uniformer_custom", encoder_args=dict(TINY_ENCODER), frames=16,
                       init="none", out=str(tmp_path), epochs=40, num_workers=0, device="cpu", progress=False,
                       save_every_steps=5, stop_after_steps=9, tensorboard=False, precision="fp32", data="moved")
    assert resume_diff(ckpt, same, "stage1") == []  # the same encoder spelled without the preset; run settings
    changed = TrainConfig(preset="tiny", frames=36, stride=2, mean=(0, 0, 0), seed=1, init="none")
    lines = resume_diff(ckpt, changed, "stage1")
    assert "frames: checkpoint 16, now 36" in lines and "stride: checkpoint 4, now 2" in lines
    assert any(line.startswith("encoder_args: checkpoint") and "presets: checkpoint 'micro', now 'tiny'" in line
               for line in lines)
    assert any(line.startswith("mean: checkpoint [32.49") for line in lines) and "seed: checkpoint 0, now 1" in lines
    ckpt_seq = {"config": saved.to_dict(), "model_config": {"preprocessing": {"sampling": "sequence"}}}
    assert resume_diff(ckpt_seq, saved, "stage1") == ["sampling: checkpoint 'sequence', now 'clips'"]
    # stage 2: preprocessing comes from the init model; its own options are compared, and the init model
    s2 = TrainConfig(init=str(tmp_path), frames=4, preset=None, architecture="uniformer_custom")
    ckpt2 = {"config": s2.to_dict()}
    assert resume_diff(ckpt2, TrainConfig(init=str(tmp_path) + "/", frames=36), "stage2") == []
    assert resume_diff(ckpt2, TrainConfig(init=str(tmp_path / "other"), pad=0), "stage2") == [
        f"init: checkpoint {str(tmp_path.resolve())!r}, now {str(tmp_path / 'other')!r}", "pad: checkpoint 12, now 0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from coreecho.data.phantom import write_echonet_layout

    root = tmp_path_factory.mktemp("phantom")
    write_echonet_layout(root, 10, seed=5, n_frames=(24, 32), splits=(8, 1, 1), progress=False)
    return root


def test_resume_with_another_recipe_is_refused(data, tmp_path):
    from coreecho.train import TrainConfig, TrainingInterrupted, train_stage1
    from coreecho.train.distributed import DistEnv
    from coreecho.train.engine import find_resume

    base = dict(data=str(data), out=str(tmp_path / "run"), preset="micro", init="none", frames=4, stride=4, size=32,
                batch_size=4, epochs=1, num_workers=0, progress=False, tensorboard=False, device="cpu",
                encoder_args={"drop_rate": 0.0}, save_every_steps=1, stop_after_steps=1)
    with pytest.raises(TrainingInterrupted):
        train_stage1(TrainConfig(**base))  # checkpoint after step 1 of 2
    ckpt = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert ckpt["frames"] == 4
    with pytest.raises(ConfigError) as err:
        train_stage1(TrainConfig(**{**base, "frames": 8, "size": 64, "resume": True}))
    message = str(err.value)
    assert "frames: checkpoint 4, now 8" in message and "size: checkpoint 32, now 64" in message
    assert "another --out" in message and "train_config.json" in message
    # settings of the machine and the run length may change
    env = DistEnv()
    ok = find_resume(TrainConfig(**{**base, "resume": True, "epochs": 3, "save_every_steps": 0,
                                    "stop_after_steps": None, "precision": "fp32"}), "stage1", env)
    assert ok is not None and ok["model_config"]["preprocessing"]["sampling"] == "clips"
    assert ok["model_config"]["preprocessing"]["pad"] == 12


def test_finetune_on_camus_saves_sequence_sampling(tmp_path):
    import torch

    from coreecho.cli import main
    from coreecho.data.camus import write_camus_layout
    from coreecho.hub import load_model
    from coreecho.models.build import build_model
    from coreecho.models.config import PreprocessConfig

    torch.manual_seed(0)
    base = build_model(tiny_config(preprocessing=PreprocessConfig(frames=8, stride=2, size=32)))
    folder = base.save_pretrained(tmp_path / "base")
    write_camus_layout(tmp_path / "camus", 4, seed=0, fmt="mhd", qualities=(0.5, 0.5, 0.0))
    out = tmp_path / "tuned"
    assert main(["finetune", "--dataset", "camus", "--data", str(tmp_path / "camus"), "--model", str(folder),
                 "--mode", "mlp", "--folds", "0", "--epochs", "1", "--batch-size", "4", "--device", "cpu",
                 "--save-model", str(out), "--quiet", "--temporal", "nearest"]) == 0
    pre = load_model(out, device="cpu").config.preprocessing
    assert (pre.sampling, pre.temporal, pre.frames, pre.size) == ("sequence", "nearest", 8, 32)
