"""The coreecho command: models, convert, version; runs as a real subprocess too."""

from __future__ import annotations

import json
import subprocess
import sys

from coreecho.cli import main


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert by_name["coreecho-echonet"]["license"] == "CC-BY-NC-4.0"
    assert by_name["coreecho-echonet"]["available_offline"] is False
    assert by_name["uniformer-small-k400"]["source"].startswith("hf://Sense-X/uniformer_video/")


def test_convert_needs_a_target(capsys, tmp_path):
    assert main(["convert", str(tmp_path / "x.pth")]) == 2
    assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "out")]) == 1
    assert "no such checkpoint file" in capsys.readouterr().err


def test_console_script_version_and_import_is_light():
    out = subprocess.run([sys.executable, "-m", "coreecho.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("coreecho 0.")
    code = ("import sys, coreecho; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'timm', 'coreecho') and (m.startswith(('torch', 'timm')) or 'train' in m)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
