"""coreecho.precision: device and precision resolution, autocast, threads, pinned copies, optional compile."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from coreecho.errors import CoReEchoError, DeviceError, InputError
from coreecho.precision import (
    autocast_context,
    autocast_for,
    cpu_supports_bf16,
    maybe_compile,
    mixed_forward,
    resolve_device,
    resolve_precision,
    set_threads,
    to_device,
)

needs_cpu_bf16 = pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")


def test_precision_names_are_checked():
    with pytest.raises(InputError, match="fp32, bf16, fp16, auto"):
        resolve_precision("half", "cpu")
    assert resolve_precision("fp32", "cpu") == "fp32"


def test_auto_on_cpu_follows_native_bf16(monkeypatch):
    monkeypatch.setenv("COREECHO_CPU_BF16", "1")
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu", training=True) == "fp32"  # training recipes: fp32 on CPU
    monkeypatch.setenv("COREECHO_CPU_BF16", "0")
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(InputError, match="no native bf16.*'fp32' or 'auto'"):
        resolve_precision("bf16", "cpu")


def test_fp16_on_a_cpu_without_it_is_refused(monkeypatch):
    monkeypatch.setenv("COREECHO_CPU_FP16", "0")
    with pytest.raises(InputError, match="no native fp16"):
        resolve_precision("fp16", "cpu")
    monkeypatch.setenv("COREECHO_CPU_FP16", "1")
    assert resolve_precision("fp16", "cpu") == "fp16"


def test_resolve_device_cpu_and_bad_names():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="device"):
        resolve_device("gpu-please")


@no_cuda
def test_cuda_asked_for_without_cuda_is_a_typed_error():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:0", "cuda:7"):
        with pytest.raises(DeviceError, match="CUDA is not available.*--device cpu") as info:
            resolve_device(name)
        assert isinstance(info.value, CoReEchoError)
    with pytest.raises(DeviceError):
        resolve_precision("auto", "cuda")


def test_autocast_context_and_the_training_factory():
    with autocast_context("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    factory, used = autocast_for(torch.device("cpu"))
    assert used == "fp32" and isinstance(factory(), contextlib.nullcontext)
    from coreecho.train import evaluation

    assert evaluation.autocast_for is autocast_for and evaluation.resolve_device is resolve_device


@needs_cpu_bf16
def test_bf16_autocast_stays_close_to_fp32_on_cpu(tiny_model, one_thread):
    from coreecho.data.phantom import make_phantom

    with autocast_context("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    pipe = tiny_model.pipeline()
    x = torch.cat([pipe(make_phantom(ef=ef, seed=i, n_frames=150)[0]).x for i, ef in enumerate((30, 55, 70))])
    with torch.inference_mode():
        emb32, ef32 = mixed_forward(tiny_model, x, "fp32")
        emb16, ef16 = mixed_forward(tiny_model, x, "bf16")
    assert emb16.dtype == torch.float32 and ef16.dtype == torch.float32
    rel = (emb16 - emb32).norm(dim=1) / emb32.norm(dim=1)
    assert rel.max() < 0.02
    assert (ef16 - ef32).abs().max() < 0.5


def test_set_threads_returns_the_previous_count():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == before
        assert torch.get_num_threads() == 1
        assert set_threads(None) == 1
    finally:
        torch.set_num_threads(before)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputError, match="threads"):
            set_threads(bad)


def test_to_device_on_cpu_is_the_identity():
    x = torch.arange(4.0)
    assert to_device(x, "cpu") is x


def test_maybe_compile_off_returns_the_model():
    m = torch.nn.Linear(2, 2)
    assert maybe_compile(m, compile=False) is m


@pytest.mark.slow
def test_compiled_encoder_matches_eager_on_cpu(tiny_model, one_thread):
    compiled = maybe_compile(tiny_model.encoder)
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.inference_mode():
        want = tiny_model.encoder(x)
        got = compiled(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- CUDA paths (pytest -m gpu, on a GPU machine)

@pytest.mark.gpu
def test_gpu_auto_precision_and_autocast(tiny_model):
    assert torch.cuda.is_available()
    dev = resolve_device("cuda")
    used = resolve_precision("auto", dev)
    assert used == ("bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16")
    model = tiny_model.to(dev)
    x = torch.randn(4, 3, 16, 64, 64, device=dev)
    with autocast_context(used, dev):
        assert torch.is_autocast_enabled("cuda")
    with torch.inference_mode():
        emb32, ef32 = mixed_forward(model, x, "fp32")
        emb16, ef16 = mixed_forward(model, x, "auto")
    assert ef16.dtype == torch.float32 and emb16.dtype == torch.float32
    assert (ef16 - ef32).abs().max().item() < 0.5
    assert ((emb16 - emb32).norm(dim=1) / emb32.norm(dim=1)).max().item() < 0.02


@pytest.mark.gpu
def test_gpu_pinned_non_blocking_copy():
    x = torch.randn(3, 5)
    y = to_device(x, "cuda")
    assert y.is_cuda
    torch.cuda.synchronize()
    assert torch.equal(y.cpu(), x)
    pinned = torch.randn(2).pin_memory()
    assert to_device(pinned, "cuda").is_cuda
    assert to_device(y, "cuda") is y


@pytest.mark.gpu
def test_gpu_missing_index_is_a_device_error():
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(DeviceError, match="cuda:7.*CUDA device"):
        resolve_device("cuda:7")


@pytest.mark.gpu
def test_gpu_channels_last_forward_matches(tiny_model):
    model = tiny_model.cuda()
    x = torch.randn(2, 3, 16, 64, 64, device="cuda")
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # compare fp32 with fp32
    with torch.inference_mode():
        want = model.encoder(x)
        model_cl = model.to(memory_format=torch.channels_last_3d)
        got = model_cl.encoder(x.contiguous(memory_format=torch.channels_last_3d))
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    np.testing.assert_allclose(got.cpu().numpy(), want.cpu().numpy(), rtol=1e-3, atol=1e-4)
