"""``coreecho env``: versions, torch build, CPU features, devices, caches and models, offline."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from coreecho.cli import main


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    attempts = []

    def refuse(self, *args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a test of an offline command")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_env_text_names_versions_devices_caches_and_models(capsys, no_network, monkeypatch, tmp_path):
    import torch

    import coreecho

    monkeypatch.setenv("COREECHO_CACHE", str(tmp_path / "cc"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert f"coreecho             {coreecho.__version__}" in out
    assert f"torch                {torch.__version__}" in out
    assert str(tmp_path / "cc") in out and str(tmp_path / "hf") in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("phantom-tiny"))
    assert "offline" in line and "MIT" in line
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("coreecho-echonet"))
    assert "not installed" in line  # a fresh cache
    assert f"torch_intra_op       {torch.get_num_threads()}" in out
    assert no_network == []


def test_env_json_matches_the_machine(capsys, no_network):
    import torch

    assert main(["env", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["versions"]["torch"] == torch.__version__
    assert env["torch_build"]["cuda"] == torch.version.cuda
    assert env["devices"]["cuda_count"] == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert env["cpu"]["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = set(next(ln for ln in cpuinfo.read_text().splitlines() if ln.startswith(("flags", "Features")))
                    .split(":", 1)[1].split())
        assert ("avx512_bf16" in env["cpu"]["flags"]) == ("avx512_bf16" in flags)
        assert ("avx512f" in env["cpu"]["flags"]) == ("avx512f" in flags)
    names = {m["name"] for m in env["models"]}
    assert {"phantom-tiny", "coreecho-echonet"} <= names
    assert no_network == []
