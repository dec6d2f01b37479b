"""Tests of coreecho.train.gradcache: the cached step equals the uncached loss's gradients."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

import coreecho.train.gradcache as gradcache_module
from coreecho.errors import InputError
from coreecho.losses import CoReLoss
from coreecho.train.gradcache import cached_contrastive_step


def _model(bn: bool = False, dropout: float = 0.3) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(6, 24)]
    if bn:
        layers.append(nn.BatchNorm1d(24))
    layers += [nn.Dropout(dropout), nn.GELU(), nn.Linear(24, 8)]
    return nn.Sequential(*layers).double()


def _data(b: int = 10, v: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.randn(b, v, 6, generator=g, dtype=torch.float64), torch.rand(b, generator=g, dtype=torch.float64)


def _uncached(model: nn.Module, x: torch.Tensor, y: torch.Tensor, micro_batch: int, views: bool = True):
    """The plain path: forward the same micro-batches with graph, one loss, one backward."""
    flat = x.flatten(0, 1) if views else x
    emb = torch.cat([model(c) for c in flat.split(micro_batch)])
    loss = CoReLoss(temperature=2.0)(emb.view(*x.shape[: 2 if views else 1], -1), y)
    loss.backward()
    return loss.detach()


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


def _assert_grads_close(a: list[torch.Tensor], b: list[torch.Tensor], rel: float = 1e-5) -> None:
    for ga, gb in zip(a, b):
        assert (ga - gb).abs().max().item() <= rel * gb.abs().max().item() + 1e-14


@pytest.mark.parametrize(("views", "micro_batch"), [(2, 3), (2, 20), (1, 4), (3, 7)])
def test_cached_equals_uncached_with_dropout(views: int, micro_batch: int) -> None:
    x, y = _data(10, views)
    ref_model, model = _model(), _model()
    torch.manual_seed(123)
    ref_loss = _uncached(ref_model, x, y, micro_batch)
    ref_state = torch.get_rng_state()
    torch.manual_seed(123)
    loss = cached_contrastive_step(model, x, y, CoReLoss(temperature=2.0), micro_batch=micro_batch)
    assert not loss.requires_grad
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-12)
    _assert_grads_close(_grads(model), _grads(ref_model))
    # the generator ends where the uncached computation leaves it
    assert torch.equal(torch.get_rng_state(), ref_state)


def test_dropout_masks_matter() -> None:
    """Sanity check of the test above: another seed gives other gradients, so dropout is really exercised."""
    x, y = _data()
    a, b = _model(), _model()
    torch.manual_seed(1)
    cached_contrastive_step(a, x, y, CoReLoss(temperature=2.0), micro_batch=4)
    torch.manual_seed(2)
    cached_contrastive_step(b, x, y, CoReLoss(temperature=2.0), micro_batch=4)
    assert (_grads(a)[0] - _grads(b)[0]).abs().max().item() > 1e-4


def test_flat_inputs_and_gradient_accumulation() -> None:
    x, y = _data(12, 1)
    x = x[:, 0]
    ref_model, model = _model(dropout=0.0), _model(dropout=0.0)
    # without dropout or BN a single full-batch forward is the reference
    _uncached(ref_model, x, y, micro_batch=12, views=False)
    _uncached(ref_model, x, y, micro_batch=12, views=False)
    for _ in range(2):  # accumulates like loss.backward() does
        cached_contrastive_step(model, x, y, CoReLoss(temperature=2.0), micro_batch=5, views=False)
    _assert_grads_close(_grads(model), _grads(ref_model), rel=1e-10)


def test_batchnorm_full_micro_batch_equals_uncached_and_stats_update_once() -> None:
    x, y = _data(8, 2)
    ref_model, model = _model(bn=True), _model(bn=True)
    torch.manual_seed(7)
    _uncached(ref_model, x, y, micro_batch=16)
    torch.manual_seed(7)
    cached_contrastive_step(model, x, y, CoReLoss(temperature=2.0), micro_batch=16)
    _assert_grads_close(_grads(model), _grads(ref_model))
    bn, ref_bn = model[1], ref_model[1]
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var)
    assert int(bn.num_batches_tracked) == int(ref_bn.num_batches_tracked) == 1


def test_batchnorm_micro_batches_are_per_micro_batch() -> None:
    x, y = _data(8, 2)
    # equal to the uncached forward of the same micro-batches (statistics per micro-batch) ...
    ref_model, model, full_model = _model(bn=True), _model(bn=True), _model(bn=True)
    torch.manual_seed(7)
    _uncached(ref_model, x, y, micro_batch=4)
    torch.manual_seed(7)
    cached_contrastive_step(model, x, y, CoReLoss(temperature=2.0), micro_batch=4)
    _assert_grads_close(_grads(model), _grads(ref_model))
    assert int(model[1].num_batches_tracked) == 4  # once per micro-batch, not twice
    torch.testing.assert_close(model[1].running_mean, ref_model[1].running_mean)
    # ... and not to a single full-batch forward (documented caveat)
    torch.manual_seed(7)
    _uncached(full_model, x, y, micro_batch=16)
    assert (_grads(model)[0] - _grads(full_model)[0]).abs().max().item() > 1e-6


def test_batchnorm_eval_mode_equals_full_batch() -> None:
    x, y = _data(8, 2)
    ref_model, model = _model(bn=True, dropout=0.0), _model(bn=True, dropout=0.0)
    ref_model[1].eval()
    model[1].eval()
    _uncached(ref_model, x, y, micro_batch=16)
    cached_contrastive_step(model, x, y, CoReLoss(temperature=2.0), micro_batch=3)
    _assert_grads_close(_grads(model), _grads(ref_model), rel=1e-10)


def test_select_and_return_embeddings() -> None:
    class TwoOutputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _model(dropout=0.0)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            emb = self.body(x)
            return emb.sum(dim=1, keepdim=True), emb

    x, y = _data(6, 2)
    enc = TwoOutputs()
    loss, emb = cached_contrastive_step(
        enc, x, y, CoReLoss(temperature=2.0), micro_batch=5, select=lambda out: out[1], return_embeddings=True
    )
    assert emb.shape == (6, 2, 8) and not emb.requires_grad
    torch.testing.assert_close(emb, enc.body(x.flatten(0, 1)).view(6, 2, 8).detach())
    assert loss.item() == pytest.approx(CoReLoss(temperature=2.0)(emb, y).item(), rel=1e-12)
    with pytest.raises(InputError, match="select="):
        cached_contrastive_step(enc, x, y, CoReLoss(), micro_batch=5)


@pytest.mark.parametrize(
    ("inputs", "kwargs", "match"),
    [
        ([[1.0]], {}, r"inputs: expected a torch.Tensor"),
        (torch.randn(4, 6), {}, r"inputs: expected \[B, V, \.\.\.\]"),
        (torch.randn(4, 2, 6), {"micro_batch": 0}, r"micro_batch"),
        (torch.randn(0, 2, 6), {}, r"empty"),
        (torch.randn(4, 2, 6), {"loss_fn": lambda e, y: e.sum(dim=-1)}, r"loss_fn: must return a scalar"),
    ],
)
def test_invalid_arguments(inputs, kwargs, match) -> None:
    loss_fn = kwargs.pop("loss_fn", CoReLoss())
    with pytest.raises(InputError, match=match):
        cached_contrastive_step(nn.Linear(6, 3), inputs, torch.rand(4), loss_fn, **kwargs)


def test_docstring_examples() -> None:
    result = doctest.testmod(gradcache_module, verbose=False)
    assert result.attempted >= 2 and result.failed == 0
