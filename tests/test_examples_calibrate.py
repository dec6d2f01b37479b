"""examples/calibrate_phantom.py calibrates a copy: the bundled model and docs/img stay as they are."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _digests(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.rglob("*"))
            if p.is_file()}


@pytest.mark.slow
def test_calibrate_phantom_defaults_leave_the_package_alone(tmp_path):
    pytest.importorskip("matplotlib")
    before = _digests(ROOT / "coreecho" / "weights" / "phantom-tiny", ROOT / "docs" / "img")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "calibrate_phantom.py"), "--n-cal", "60",
                           "--n-fresh", "20", "--n-hostile", "4"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _digests(ROOT / "coreecho" / "weights" / "phantom-tiny", ROOT / "docs" / "img") == before
    out = tmp_path / "examples-out" / "calibrate_phantom"
    assert (out / "phantom-tiny" / "calibration.safetensors").is_file()
    assert (out / "calibration_coverage.png").stat().st_size > 10_000
    import coreecho

    model = coreecho.load_model(out / "phantom-tiny")
    assert model.calibration.interval.n_calibration == 60 // 2  # the copy has the new calibration (half of 60)
