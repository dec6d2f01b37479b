"""Shared fixtures: tiny models (fast on CPU) and helpers importable by tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

TINY_ENCODER = {"depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8}


def tiny_config(**overrides):
    from coreecho.models.config import ModelConfig

    return ModelConfig(architecture="uniformer_custom", encoder_args=dict(TINY_ENCODER), license="MIT", **overrides)


@pytest.fixture
def tiny_model():
    import torch

    from coreecho import CoReEcho

    torch.manual_seed(0)
    return CoReEcho(tiny_config()).eval()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own coreecho cache and no Hub access."""
    monkeypatch.setenv("COREECHO_CACHE", str(tmp_path_factory.mktemp("coreecho_cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def one_thread():
    """One intra-op torch thread for tiny tensors: faster, and much faster on a busy machine (no OpenMP spinning)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(argv, capsys):
    """Run the CLI in-process: (exit code, stdout, stderr); argparse's usage errors count as exit 2."""
    from coreecho.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
