"""UniFormer encoder: official key names and shapes, float64 parity with the official network."""

from __future__ import annotations

import pytest
import torch

from coreecho.models.uniformer import UniFormer, build_uniformer, uniformer_base, uniformer_small
from official import forward_reference, official_encoder_state, official_input, official_keys


def test_state_dict_names_and_shapes_equal_official():
    model = uniformer_small(num_classes=1)
    ours = {k: (list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()}
    ref = {key: (shape, dtype) for key, shape, dtype, _ in official_keys()}
    assert ours == ref
    assert len(ours) == 331
    # without a head: the official keys less head.*
    assert set(uniformer_small().state_dict()) == {k for k in ref if not k.startswith("head.")}


def test_float64_parity_with_official_forward():
    ref = forward_reference()
    model = uniformer_small(num_classes=1)
    model.load_state_dict(official_encoder_state(), strict=True)
    model = model.double().eval()
    x = official_input()
    assert x.sum().item() == pytest.approx(ref["input"]["sum"], rel=1e-6)
    with torch.no_grad():
        feats = model.forward_features(x.double())
        emb = model.forward_head(feats, pre_logits=True)
        out = model.head(emb)
    assert tuple(feats.shape) == (2, 512, 18, 3, 3)
    want_emb = torch.tensor(ref["float64"]["features"], dtype=torch.float64)
    want_out = torch.tensor(ref["float64"]["head_output"], dtype=torch.float64)
    assert torch.allclose(emb, want_emb, rtol=1e-9, atol=1e-12)
    assert torch.allclose(out, want_out, rtol=1e-9, atol=1e-12)
    assert torch.allclose(model(x.double()), want_out, rtol=1e-9, atol=1e-12)


def test_stage_shapes_follow_the_official_downsampling():
    ref = forward_reference()["float64"]["intermediates"]
    shapes = {r["module"]: r["shape"] for r in ref}
    model = uniformer_small().eval()
    seen = {}
    for name in ("patch_embed1", "patch_embed2", "patch_embed3", "patch_embed4"):
        getattr(model, name).register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(n, list(o.shape)))
    with torch.no_grad():
        model(torch.zeros(2, 3, 36, 112, 112))
    for name, shape in seen.items():
        if name in shapes:
            assert shape == shapes[name]
    assert seen["patch_embed4"] == [2, 512, 18, 3, 3]


def test_base_size_and_custom_build():
    base = uniformer_base()
    assert base.depth == (5, 8, 20, 7)
    assert len(base.blocks3) == 20 and base.num_features == 512
    custom = build_uniformer("uniformer_custom", depth=(1, 1, 1, 1), embed_dim=(8, 16, 32, 64), head_dim=8)
    assert custom(torch.zeros(1, 3, 4, 32, 32)).shape == (1, 64)
    from coreecho.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown UniFormer size.*uniformer_base"):
        build_uniformer("uniformer_huge")


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = UniFormer(depth=(1, 1, 1, 1), embed_dim=(8, 16, 32, 64), head_dim=8, drop_rate=0.0).double()
    x = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    model(x).square().sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).square().sum().backward()
    for a, p in zip(plain, model.parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-10, atol=1e-12)


def test_timm_builds_the_encoder():
    import timm

    import coreecho  # noqa: F401 - installs the registration hook

    model = timm.create_model("uniformer_small")
    assert isinstance(model, UniFormer) and model.depth == (3, 4, 8, 3)
    with pytest.raises(ValueError, match="load_model"):
        timm.create_model("uniformer_small", pretrained=True)


def test_bad_input_rank_is_reported():
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        uniformer_small()(torch.zeros(3, 36, 112, 112))


def test_single_clip_gradients_match_batched_gradients():
    """A batch of one must get the same input gradient as inside a larger batch (eval-mode BatchNorm).

    torch 2.14's CPU BatchNorm backward is wrong for a batch of one on channels-last strided input; the
    encoder keeps its activations contiguous to avoid it.
    """
    from coreecho import CoReEcho
    from conftest import tiny_config

    torch.manual_seed(0)
    model = CoReEcho(tiny_config()).double().eval()
    x = torch.randn(2, 3, 16, 64, 64, dtype=torch.float64, requires_grad=True)
    model(x).sum().backward()
    one = x[:1].detach().clone().requires_grad_(True)
    model(one).sum().backward()
    assert torch.allclose(one.grad, x.grad[:1], rtol=1e-9, atol=1e-12)


def _stage_outputs(model, x):
    seen = {}
    hooks = [getattr(model.encoder, f"patch_embed{s}").register_forward_hook(
        lambda m, i, o, s=s: seen.__setitem__(s, o)) for s in (2, 3)]
    hooks.append(model.encoder.blocks3[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("attn", o)))
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_inference_forward_makes_no_contiguity_copies(tiny_model):
    """Stage outputs keep their channels-last strides in inference; contiguous only where BatchNorm backward needs it."""
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.inference_mode():
        for out in _stage_outputs(tiny_model, x).values():
            assert out.is_contiguous(memory_format=torch.channels_last_3d) and not out.is_contiguous()
    # autograd through the BatchNorms at batch 1 on a CPU: the workaround's copies
    for out in _stage_outputs(tiny_model, x).values():
        assert out.is_contiguous()
    # batched training keeps the strides
    with torch.no_grad():
        for out in _stage_outputs(tiny_model, torch.randn(2, 3, 8, 64, 64)).values():
            assert not out.is_contiguous()


def test_copy_free_forward_equals_the_always_copy_forward():
    """Same values and gradients (float64) with and without the pre-0.2 contiguity copies, batch 2 (copy-free path)."""
    from coreecho import CoReEcho
    from coreecho.models.uniformer import always_contiguous
    from conftest import tiny_config

    torch.manual_seed(0)
    model = CoReEcho(tiny_config()).double().eval()
    x = torch.randn(2, 3, 16, 64, 64, dtype=torch.float64, requires_grad=True)
    model(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    gx = x.grad.clone()
    model.zero_grad()
    x.grad = None
    with always_contiguous():
        model(x).sum().backward()
    assert torch.allclose(x.grad, gx, rtol=1e-9, atol=1e-13)
    for a, p in zip(grads, model.parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-9, atol=1e-13)
