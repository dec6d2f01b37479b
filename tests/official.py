"""Builders of official-format weights and inputs from tests/fixtures (the "sinfill" rule)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # copied from the project's shared fixtures


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():  # they are part of the repository: a missing one is a broken checkout, not a reason to skip
        raise FileNotFoundError(f"fixture {path} is missing from the repository")
    return path


def official_keys() -> list[tuple[str, list[int], str, int]]:
    """(key, shape, dtype, sorted index) of the official UniFormer-S with the 1-output head."""
    rows = []
    for line in fixture_path("uniformer_small_keys.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape, dtype, index = line.split("\t")[:4]
        dims = json.loads(shape)
        if key == "head.weight":
            dims = [1, 512]
        elif key == "head.bias":
            dims = [1]
        rows.append((key, dims, dtype, int(index)))
    return rows


def sinfill(key: str, shape: list[int], index: int, phase: float = 0.53) -> torch.Tensor:
    """The fixture README's deterministic weight for one state-dict entry."""
    numel = math.prod(shape) if shape else 1
    s = torch.sin(torch.arange(numel, dtype=torch.float64) * phase + index).reshape(shape).float()
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if key.endswith("running_var"):
        return 1 + s.abs()
    if len(shape) == 1 and key.endswith(".weight") and "norm" in key:
        return 1 + 0.1 * s
    return 0.02 * s


def official_encoder_state() -> dict[str, torch.Tensor]:
    """State dict of the official UniFormer-S (1-output head) under the sinfill rule."""
    return {key: sinfill(key, shape, idx) for key, shape, _, idx in official_keys()}


def official_regressor_state(dim: int = 512) -> dict[str, torch.Tensor]:
    """A deterministic state for the official regressor (nn.Sequential indices 0, 2, 3, 6)."""
    out = {}
    for i, bn in enumerate(("0", "3")):
        s = sinfill("x", [dim], 2000 + i)
        out.update({f"{bn}.weight": 1 + 5 * s, f"{bn}.bias": s, f"{bn}.running_mean": s,
                    f"{bn}.running_var": 1 + 10 * s.abs(), f"{bn}.num_batches_tracked": torch.tensor(7)})
    out["2.weight"], out["2.bias"] = sinfill("x", [dim, dim], 2002), sinfill("x", [dim], 2003)
    out["6.weight"], out["6.bias"] = 10 * sinfill("x", [1, dim], 2004), torch.tensor([55.6])
    return out


def official_input() -> torch.Tensor:
    """The fixture input (2, 3, 36, 112, 112), float64 values rounded to float32."""
    a = torch.arange(3 * 36 * 112 * 112, dtype=torch.float64)
    x0 = torch.sin(0.017 * a)
    x1 = 1.5 * torch.cos(0.0023 * a) - 0.25
    return torch.stack([x0, x1]).reshape(2, 3, 36, 112, 112).float()


def forward_reference() -> dict:
    return json.loads(fixture_path("uniformer_forward.json").read_text())
