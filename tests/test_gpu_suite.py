"""The GPU suite (``benchmarks/gpu_suite.py``) in its ``--dry`` CPU mode: every section runs and is recorded, so the
suite cannot rot while no GPU is lent; a failing row or section and a spent time cap are recorded, not fatal."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SECTIONS = ("inference_device", "inference_pipeline", "train_step", "ddp")
MODES = {"fp32 eager, TF32 off (baseline)", "tf32", "bf16", "bf16 + channels-last-3d", "bf16 + torch.compile"}


@pytest.fixture
def suite_module(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import gpu_suite

    return gpu_suite


def test_dry_run_records_every_section_with_numbers(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_suite.py"), "--dry", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert results["meta"]["dry"] is True
    assert set(results["sections"]) == set(SECTIONS)
    for name, sec in results["sections"].items():
        if sec["status"] == "skipped":  # only where this torch build has no torch.distributed
            assert name == "ddp" and sec["reason"]
            continue
        assert sec["status"] == "ok", (name, sec.get("reason"), sec.get("traceback"))
        assert sec["rows"], name
        for row in sec["rows"]:
            assert "error" not in row, (name, row)
            assert math.isfinite(row["value"]) and row["value"] > 0, (name, row)
    device_rows = results["sections"]["inference_device"]["rows"]
    assert {(r["batch"], r["row"]) for r in device_rows} == {(b, m) for b in (2, 4) for m in MODES}
    assert all(r["vs_baseline"] == 1.0 for r in device_rows if r["row"].endswith("(baseline)"))
    train = {r["row"] for r in results["sections"]["train_step"]["rows"]}
    assert "official-style fp32 eager (baseline)" in train and "coreecho bf16 + torch.compile" in train
    pipeline = {r["row"] for r in results["sections"]["inference_pipeline"]["rows"]}
    assert any(r.startswith("on: bf16") for r in pipeline) and any(r.startswith("off: bf16") for r in pipeline)
    if results["sections"]["ddp"]["status"] == "ok":
        (ddp,) = results["sections"]["ddp"]["rows"]
        assert ddp["backend"] == "gloo" and ddp["params_identical"] and ddp["all_reduce_ok"]
    md = (tmp_path / "gpu_suite.md").read_text()
    assert all(f"## {name}: " in md for name in SECTIONS)


def test_a_failing_row_and_a_spent_cap_are_recorded_and_the_suite_goes_on(suite_module, tmp_path: Path) -> None:
    gs = suite_module
    args = argparse.Namespace(out=str(tmp_path), dry=True, warmup=1, rounds=1, iters=1)
    suite = gs.Suite(args)

    def rows(entry, left):
        def broken():
            raise RuntimeError("CUDA out of memory (simulated)")
        modes = {"baseline": (lambda: torch.ones(3).sum(), ""), "broken": (broken, ""),
                 "other": (lambda: torch.ones(5).sum(), "a note")}
        suite.timed(entry, modes, 4, "clips/s", {"batch": 4}, left)

    def forever(entry, left):
        entry["rows"].append({"row": "done before the cap", "value": 1.0})
        while True:
            time.sleep(0.01)

    def crash(entry, left):
        raise ValueError("bad section")

    suite.caps.update(inference_device=60, inference_pipeline=0.3, train_step=60)
    suite.section("inference_device", rows)
    suite.section("inference_pipeline", forever)
    suite.section("train_step", crash)
    saved = json.loads((tmp_path / "gpu_suite.json").read_text())["sections"]
    dev = saved["inference_device"]
    assert dev["status"] == "partial" and dev["reason"] == "1 row(s) failed"
    by_row = {r["row"]: r for r in dev["rows"]}
    assert "out of memory" in by_row["broken"]["error"] and "value" not in by_row["broken"]
    assert by_row["baseline"]["value"] > 0 and by_row["baseline"]["vs_baseline"] == 1.0
    assert by_row["other"]["value"] > 0 and by_row["other"]["note"] == "a note"
    assert saved["inference_pipeline"]["status"] == "partial"
    assert "time cap" in saved["inference_pipeline"]["reason"]
    assert saved["train_step"]["status"] == "failed" and "ValueError: bad section" in saved["train_step"]["reason"]
    assert "broken" in (tmp_path / "gpu_suite.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the suite would run for real")
def test_without_cuda_every_section_is_a_recorded_skip(suite_module, tmp_path: Path) -> None:
    assert suite_module.main(["--out", str(tmp_path)]) == 2
    saved = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert set(saved["sections"]) == set(SECTIONS)
    assert all(s["status"] == "skipped" and "no CUDA device" in s["reason"] for s in saved["sections"].values())
