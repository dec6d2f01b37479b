"""Fused linear+GELU for bf16 inference on a CPU (coreecho.models.fused): taken only there, equal to the plain ops up
to one bf16 rounding, weights cast afresh outside an inference run."""

from __future__ import annotations

import pytest
import torch

from coreecho.models import fused
from coreecho.models.uniformer import UniFormer

pytestmark = pytest.mark.skipif(not fused.fused_available(), reason="oneDNN bf16 linear not available on this CPU")

BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


def _encoder() -> UniFormer:
    torch.manual_seed(0)
    return UniFormer(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 128), head_dim=16).eval()


def _bf16_forward(enc: UniFormer, x: torch.Tensor, fuse: bool, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    with monkeypatch.context() as m:
        if not fuse:
            m.setattr(fused, "linear_gelu", lambda layer, x: None)
            m.setattr("coreecho.models.uniformer.linear_gelu", lambda layer, x: None)
        with torch.inference_mode(), torch.autocast(**BF16):
            return enc(x).float()


def test_bf16_encoder_matches_the_plain_ops_up_to_bf16_rounding(monkeypatch):
    enc, x = _encoder(), torch.randn(2, 3, 8, 64, 64)
    with torch.inference_mode():
        ref = enc(x)
    plain = _bf16_forward(enc, x, False, monkeypatch)
    fast = _bf16_forward(enc, x, True, monkeypatch)
    assert not torch.equal(plain, fast)  # the fused path ran (it rounds once, the plain path twice)
    scale = ref.abs().max()
    assert (fast - plain).abs().max() < 0.03 * scale
    # no less accurate than the plain bf16 path against fp32
    assert (fast - ref).abs().mean() < 1.2 * (plain - ref).abs().mean()


def test_fp32_grad_and_training_take_the_plain_path():
    fc, x = torch.nn.Linear(8, 16), torch.randn(4, 8)
    with torch.inference_mode():
        assert fused.linear_gelu(fc, x) is None  # fp32: exact parity with the official network
    with torch.autocast(**BF16):
        assert fused.linear_gelu(fc, x) is None  # gradients (Grad-CAM, training)
    fc.train()
    with torch.no_grad(), torch.autocast(**BF16):
        assert fused.linear_gelu(fc, x) is None
    fc.eval()
    with torch.no_grad(), torch.autocast(**BF16):
        out = fused.linear_gelu(fc, x)
    assert out is not None and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), torch.nn.functional.gelu(fc(x)).detach(), atol=0.05, rtol=0.02)


def test_weights_are_cast_afresh_outside_a_run_and_per_version_inside():
    fc, x = torch.nn.Linear(8, 16).eval(), torch.randn(4, 8)

    def run() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(**BF16):
            return fused.linear_gelu(fc, x).float()

    before = run()
    fc.weight.data.mul_(-1)  # bypasses the version counter: only a fresh cast can see it
    assert not hasattr(fc, "_coreecho_bf16_weights")
    assert not torch.equal(run(), before)
    with fused.cached_weights():
        first = run()
        assert hasattr(fc, "_coreecho_bf16_weights")
        with torch.no_grad():
            fc.weight.mul_(-1)  # an optimiser-style in-place update bumps the version: a fresh cast
        torch.testing.assert_close(run(), before)
        assert not torch.equal(first, before)
    assert not hasattr(fc, "_coreecho_bf16_weights")  # dropped at the end of the run


def test_predict_ef_bf16_casts_each_layer_once_per_run_and_keeps_nothing(tiny_model, monkeypatch):
    casts = []
    weight_2d = fused._weight_2d
    monkeypatch.setattr(fused, "_weight_2d", lambda layer: casts.append(layer) or weight_2d(layer))
    frames = torch.randint(0, 255, (60, 112, 112, 3), dtype=torch.uint8).numpy()
    a = tiny_model.predict_ef(frames, clips=3, batch_size=1, precision="bf16", workers=0)  # three passes
    layers = [m.mlp.fc1 for m in tiny_model.modules() if hasattr(m, "mlp")]
    assert len(casts) == len(layers) and set(map(id, casts)) == set(map(id, layers))
    assert a == tiny_model.predict_ef(frames, clips=3, batch_size=1, precision="bf16", workers=0)
    assert len(casts) == 2 * len(layers)  # a new run casts afresh
    assert not any(hasattr(m, "_coreecho_bf16_weights") for m in tiny_model.modules())



@pytest.mark.slow
def test_compiled_bf16_prediction_traces_the_plain_ops(tiny_model):
    """Inductor cannot lower the fused op with weights cast inside the graph: a compiled encoder must not see it."""
    frames = torch.randint(0, 255, (60, 112, 112, 3), dtype=torch.uint8).numpy()
    eager = tiny_model.predict_ef(frames, precision="bf16", workers=0)
    compiled = tiny_model.predict_ef(frames, precision="bf16", workers=0, compile=True)
    assert abs(compiled - eager) < 0.5
