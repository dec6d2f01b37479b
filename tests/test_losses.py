"""Tests of coreecho.losses: parity with the official Rank-N-Contrast numbers, shapes, chunking, stability,
input validation."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest
import torch

import coreecho.losses as losses_module
from coreecho.errors import InputError
from coreecho.losses import CoReLoss, rank_n_contrast

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # the official numbers, kept in the repository
RNC_JSON = FIXTURES / "rnc_loss.json"


def _load_cases() -> list[dict]:
    if not RNC_JSON.is_file():
        return []
    return json.loads(RNC_JSON.read_text())["cases"]


CASES = _load_cases()


def _case_inputs(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Rebuild the float32 features [bs, 2, d] and labels [bs, 1] of a fixture case (see fixtures README §3)."""
    torch.manual_seed(case["seed_features"])
    features = torch.randn(case["bs"], 2, case["d"])
    torch.manual_seed(case["seed_labels"])
    r = torch.rand(case["bs"], 1)
    labels = {
        "uniform": r * 70 + 10,
        "rounded": torch.round(r * 70 + 10),
        "heavy_ties": torch.round(r * 3 + 10),
    }[case["labels"]]
    assert features.sum().item() == pytest.approx(case["features_checksum"]["sum"], rel=1e-5, abs=1e-4)
    assert labels.sum().item() == pytest.approx(case["labels_checksum"]["sum"], rel=1e-6)
    return features, labels


def _case_id(case: dict) -> str:
    return f"{case['name']}-t{case['temperature']:g}"


def naive_rnc(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Direct transcription of the definition (pair by pair, exact differences), for [n, D] and [n] labels."""
    n = features.shape[0]
    labels = labels.reshape(n).to(features.dtype)
    total = features.new_zeros(())
    for i in range(n):
        others = [k for k in range(n) if k != i]
        logits = -(features[i] - features[others]).norm(dim=1) / temperature
        ldist = (labels[i] - labels[others]).abs()
        for j in range(n - 1):
            mask = ldist >= ldist[j]
            total = total - (logits[j] - torch.logsumexp(logits[mask], dim=0))
    return total / (n * (n - 1))


def _grad(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x)
    (g,) = torch.autograd.grad(loss, x)
    return loss.detach(), g


# ------------------------------------------------------------------------------------------------ fixture parity


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_official_parity_float64(case: dict) -> None:
    features, labels = _case_inputs(case)
    ref = case["float64"]
    loss, g = _grad(lambda x: rank_n_contrast(x, labels.double(), case["temperature"]), features.double())
    assert loss.dtype == torch.float64
    assert abs(loss.item() - ref["loss"]) <= 1e-9 * abs(ref["loss"])
    flat = g.flatten()
    first8 = torch.tensor(ref["grad_first8"], dtype=torch.float64)
    assert (flat[:8] - first8).abs().max().item() <= 1e-9 * first8.abs().max().item()
    assert abs(g.norm().item() - ref["grad_l2"]) <= 1e-9 * ref["grad_l2"]
    assert abs(flat.sum().item() - ref["grad_sum"]) <= 1e-12 * ref["grad_l2"]
    if ref.get("grad_full") is not None:
        full = torch.tensor(ref["grad_full"], dtype=torch.float64)
        assert (g - full).abs().max().item() <= 1e-9 * full.abs().max().item()


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_official_parity_float32(case: dict) -> None:
    features, labels = _case_inputs(case)
    ref = case["float32"]
    loss, g = _grad(lambda x: rank_n_contrast(x, labels, case["temperature"]), features)
    assert loss.dtype == torch.float32 and g.dtype == torch.float32
    assert loss.item() == pytest.approx(ref["loss"], rel=2e-6)
    first8 = torch.tensor(ref["grad_first8"], dtype=torch.float64)
    assert (g.flatten()[:8].double() - first8).abs().max().item() <= 2e-5 * first8.abs().max().item()
    assert g.norm().item() == pytest.approx(ref["grad_l2"], rel=2e-6)
    if ref.get("grad_full") is not None:
        full = torch.tensor(ref["grad_full"], dtype=torch.float64)
        assert (g.double() - full).abs().max().item() <= 2e-6 * full.abs().max().item()


def test_module_matches_fixture_with_labels_as_vector() -> None:
    case = next(c for c in CASES if c["labels"] == "heavy_ties" and c["temperature"] == 2.0)
    features, labels = _case_inputs(case)
    loss = CoReLoss(temperature=2.0)(features.double(), labels.double().view(-1))
    assert abs(loss.item() - case["float64"]["loss"]) <= 1e-9 * case["float64"]["loss"]


# ------------------------------------------------------------------------------------------------ shapes, views


def _random(b: int, v: int, d: int, seed: int = 0, ties: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, v, d, generator=g, dtype=torch.float64)
    y = torch.rand(b, generator=g, dtype=torch.float64) * 70 + 10
    if ties:
        y = torch.round(y / 10)
    return x, y


@pytest.mark.parametrize("views", [1, 2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_views_match_definition(views: int, ties: bool) -> None:
    x, y = _random(5, views, 6, seed=views, ties=ties)
    loss, g = _grad(lambda f: rank_n_contrast(f, y, 1.5), x)
    # the definition on the official stacking: view 0 of all videos, then view 1, ...
    ref_loss, ref_g = _grad(lambda f: naive_rnc(torch.cat(torch.unbind(f, 1), 0), y.repeat(views), 1.5), x)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(g, ref_g, rtol=1e-10, atol=1e-14)


def test_label_shapes_and_flat_features_agree() -> None:
    x, y = _random(6, 2, 4, seed=3)
    a = rank_n_contrast(x, y)
    b = rank_n_contrast(x, y[:, None])
    flat = torch.cat([x[:, 0], x[:, 1]], dim=0)
    c = rank_n_contrast(flat, y.repeat(2))
    d = rank_n_contrast(flat, y.repeat(2)[:, None])
    for other in (b, c, d):
        torch.testing.assert_close(a, other, rtol=1e-14, atol=0)
    # V = 1: [B, 1, D] is the same as [B, D]
    torch.testing.assert_close(rank_n_contrast(x[:, :1], y), rank_n_contrast(x[:, 0], y), rtol=1e-14, atol=0)


def test_integer_labels_equal_float_labels() -> None:
    x, y = _random(7, 2, 3, seed=11, ties=True)
    torch.testing.assert_close(rank_n_contrast(x, y.long()), rank_n_contrast(x, y), rtol=1e-15, atol=0)


def test_all_labels_equal_and_two_samples() -> None:
    x, _ = _random(4, 2, 3, seed=5)
    y = torch.full((4,), 50.0, dtype=torch.float64)
    torch.testing.assert_close(rank_n_contrast(x, y), naive_rnc(torch.cat([x[:, 0], x[:, 1]]), y.repeat(2), 1.0))
    pair = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    # with two samples every denominator holds only the positive itself: the loss is 0
    assert rank_n_contrast(pair, torch.tensor([1.0, 2.0])).item() == pytest.approx(0.0, abs=1e-15)


def test_half_precision_features_are_computed_in_float32() -> None:
    x, y = _random(6, 2, 8, seed=2)
    xh = x.half().requires_grad_(True)
    loss = rank_n_contrast(xh, y.float())
    loss.backward()
    assert loss.dtype == torch.float32 and xh.grad is not None and xh.grad.dtype == torch.float16
    assert loss.item() == pytest.approx(rank_n_contrast(x.half().double(), y).item(), rel=1e-5)


# ------------------------------------------------------------------------------------------------ chunking


@pytest.mark.parametrize("chunk", [1, 3, 7, 24, 100])
def test_chunked_equals_unchunked(chunk: int) -> None:
    x, y = _random(12, 2, 5, seed=13, ties=True)
    loss, g = _grad(lambda f: rank_n_contrast(f, y, 2.0), x)
    loss_c, g_c = _grad(lambda f: rank_n_contrast(f, y, 2.0, chunk_size=chunk), x)
    torch.testing.assert_close(loss_c, loss, rtol=1e-13, atol=0)
    torch.testing.assert_close(g_c, g, rtol=1e-11, atol=1e-16)


def test_chunked_without_grad_and_module() -> None:
    x, y = _random(10, 2, 5, seed=17)
    with torch.no_grad():
        a = CoReLoss(temperature=0.5, chunk_size=4)(x, y)
    b = CoReLoss(temperature=0.5)(x, y)
    torch.testing.assert_close(a, b.detach(), rtol=1e-13, atol=0)


# ------------------------------------------------------------------------------------------------ stability


def test_large_features_stay_finite() -> None:
    x, y = _random(32, 2, 64, seed=21)
    big = (x * 1000).float()
    loss, g = _grad(lambda f: rank_n_contrast(f, y.float(), 1.0), big)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    # and agrees with the same computation in float64 (the official code overflows here in float32)
    loss64, g64 = _grad(lambda f: rank_n_contrast(f, y, 1.0), big.double())
    assert loss.item() == pytest.approx(loss64.item(), rel=1e-4)
    assert (g.double() - g64).abs().max().item() <= 1e-3 * g64.abs().max().item()


def test_stable_path_matches_definition_in_float64() -> None:
    # a spread of distances beyond the float64 exponent range: the log-cumsum-exp path, checked against the
    # definition (torch.logsumexp per pair is stable too)
    x, y = _random(6, 2, 8, seed=19, ties=True)
    x = x * 1000
    flat_y = y.repeat(2)
    loss, g = _grad(lambda f: rank_n_contrast(f, flat_y, 2.0), torch.cat([x[:, 0], x[:, 1]]))
    ref_loss, ref_g = _grad(lambda f: naive_rnc(f, flat_y, 2.0), torch.cat([x[:, 0], x[:, 1]]))
    assert torch.isfinite(ref_loss)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=0)
    torch.testing.assert_close(g, ref_g, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("fast", [True, False])
def test_fast_and_stable_denominators_agree(fast: bool) -> None:
    from coreecho.losses import _log_denominators

    g = torch.Generator().manual_seed(3)
    x = -torch.rand(5, 9, generator=g, dtype=torch.float64) * 30
    prefix_end = torch.randint(0, 5, (5, 9), generator=g)
    suffix_from_end = torch.randint(1, 5, (5, 9), generator=g)
    got = _log_denominators(x, prefix_end, suffix_from_end, fast)
    e = x.exp()
    want = torch.stack(
        [
            torch.stack([e[r, : prefix_end[r, c]].sum() + e[r, 9 - suffix_from_end[r, c] :].sum() for c in range(9)])
            for r in range(5)
        ]
    ).log()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_official_overflow_regime_matches_float64() -> None:
    # distances / tau well above 100: exp() of the official code overflows in float32, ours does not
    x, y = _random(8, 2, 16, seed=23)
    x = x * 40
    loss32 = rank_n_contrast(x.float(), y.float(), 0.5)
    loss64 = rank_n_contrast(x, y, 0.5)
    assert torch.isfinite(loss32)
    assert loss32.item() == pytest.approx(loss64.item(), rel=1e-5)


def test_duplicate_samples_give_finite_gradients() -> None:
    x = torch.randn(6, 4, dtype=torch.float64)
    x[3] = x[1]
    x[4] = x[1]
    y = torch.tensor([1.0, 2.0, 3.0, 2.0, 2.0, 9.0], dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        for chunk in (None, 2):
            loss, g = _grad(lambda f, c=chunk: rank_n_contrast(f, y, 1.0, chunk_size=c), x.to(dtype))
            assert torch.isfinite(loss) and torch.isfinite(g).all()
    loss, _ = _grad(lambda f: rank_n_contrast(f, y, 1.0), x)
    assert loss.item() == pytest.approx(naive_rnc(x, y, 1.0).item(), rel=1e-6)


def test_permutation_invariance() -> None:
    x, y = _random(9, 2, 6, seed=29, ties=True)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    loss, g = _grad(lambda f: rank_n_contrast(f, y, 1.0), x)
    loss_p, g_p = _grad(lambda f: rank_n_contrast(f, y[perm], 1.0), x[perm])
    torch.testing.assert_close(loss_p, loss, rtol=1e-13, atol=0)
    torch.testing.assert_close(g_p, g[perm], rtol=1e-11, atol=1e-16)
    # swapping the two views of every video changes nothing either
    torch.testing.assert_close(rank_n_contrast(x.flip(1), y), loss, rtol=1e-13, atol=0)


def test_translation_invariance() -> None:
    x, y = _random(7, 2, 6, seed=31)
    torch.testing.assert_close(rank_n_contrast(x + 123.0, y), rank_n_contrast(x, y), rtol=1e-10, atol=0)


def test_gather_distributed_without_process_group_is_local() -> None:
    x, y = _random(5, 2, 4, seed=37)
    loss_fn = CoReLoss(gather_distributed=True)
    loss = loss_fn(x, y)
    torch.testing.assert_close(loss, rank_n_contrast(x, y), rtol=0, atol=0)
    assert loss_fn.last_global_loss is not None and not loss_fn.last_global_loss.requires_grad


# ------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("features", "labels", "kwargs", "match"),
    [
        (torch.randn(8), torch.rand(8), {}, r"features.*\[B, V, D\].*\[N, D\].*shape \(8,\)"),
        (torch.randn(2, 2, 2, 2), torch.rand(2), {}, r"features.*got shape \(2, 2, 2, 2\)"),
        (torch.randn(4, 2, 3), torch.rand(8), {}, r"labels: got 8 labels.*one label per video \(B = 4\)"),
        (torch.randn(6, 3), torch.rand(5), {}, r"labels: got 5 labels.*\(N = 6\)"),
        (torch.randn(4, 3), torch.rand(4, 1, 1), {}, r"labels: expected one scalar label.*\(4, 1, 1\)"),
        (torch.randn(4, 3), torch.rand(4, 2), {}, r"labels: expected one scalar label.*\[B\] or \[B, 1\]"),
        (torch.randn(1, 3), torch.rand(1), {}, r"at least 2 samples.*got 1"),
        (torch.randn(1, 1, 3), torch.rand(1), {}, r"at least 2 samples"),
        (torch.randn(0, 2, 3), torch.rand(0), {}, r"at least 2 samples"),
        (torch.randn(4, 3), torch.tensor([1.0, float("nan"), 2.0, 3.0]), {}, r"labels: contain NaN"),
        (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), torch.rand(2), {}, r"features: contain NaN or inf"),
        (torch.randn(4, 3), torch.rand(4), {"temperature": 0.0}, r"temperature: must be .*> 0, got 0.0"),
        (torch.randn(4, 3), torch.rand(4), {"temperature": -1.0}, r"temperature"),
        (torch.randn(4, 3), torch.rand(4), {"temperature": float("nan")}, r"temperature"),
        (torch.randn(4, 3), torch.rand(4), {"temperature": "2"}, r"temperature: expected a positive number"),
        (torch.randn(4, 3), torch.rand(4), {"chunk_size": 0}, r"chunk_size"),
        (torch.randint(0, 3, (4, 3)), torch.rand(4), {}, r"features: expected a floating-point tensor"),
        ([[0.0, 1.0], [1.0, 0.0]], torch.rand(2), {}, r"features: expected a torch.Tensor"),
        (torch.randn(4, 3), [1.0, 2.0, 3.0, 4.0], {}, r"labels: expected a torch.Tensor"),
        (torch.randn(4, 0), torch.rand(4), {}, r"embedding dimension D is 0"),
        (torch.randn(4, 3), torch.ones(4, dtype=torch.bool), {}, r"labels: expected real numbers"),
    ],
)
def test_invalid_inputs_raise_input_error(features, labels, kwargs, match) -> None:
    with pytest.raises(InputError, match=match):
        rank_n_contrast(features, labels, **kwargs)


def test_invalid_inputs_are_value_errors_and_module_checks_arguments() -> None:
    with pytest.raises(ValueError):
        rank_n_contrast(torch.randn(3), torch.rand(3))
    with pytest.raises(InputError, match="temperature"):
        CoReLoss(temperature=0)
    with pytest.raises(InputError, match="chunk_size"):
        CoReLoss(chunk_size=-2)
    assert "temperature=2.0" in repr(CoReLoss(temperature=2.0))


def test_nonfinite_check_can_be_disabled() -> None:
    x = torch.randn(4, 3)
    x[0, 0] = float("nan")
    assert torch.isnan(rank_n_contrast(x, torch.rand(4), check_inputs=False))


def test_docstring_examples() -> None:
    result = doctest.testmod(losses_module, verbose=False)
    assert result.attempted >= 3 and result.failed == 0
