"""predict_ef / embed: inputs of every kind, clip policies, batching, details, fps handling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import coreecho
from coreecho.data.phantom import make_phantom
from coreecho.errors import CoReEchoError, InputError, VideoReadError
from coreecho.inference import predict_ef, run
from coreecho.video.io import write_video
from coreecho.video.transforms import normalize


@pytest.fixture(scope="module")
def phantom():
    frames, meta = make_phantom(ef=55, seed=3)
    return frames, meta


def manual_ef(model, frames, starts):
    """The official path written out: pad, take clips, normalise, forward, mean."""
    pre = model.config.preprocessing
    need = max(starts) + (pre.frames - 1) * pre.stride + 1
    padded = np.concatenate([frames, np.zeros((max(0, need - len(frames)),) + frames.shape[1:], np.uint8)])
    clips = np.stack([padded[s + pre.stride * np.arange(pre.frames)] for s in starts])
    with torch.no_grad():
        return model(normalize(clips, pre.mean, pre.std)).mean().item()


def test_single_array_equals_the_official_computation(tiny_model, phantom):
    frames, _ = phantom
    details = tiny_model.predict_ef(frames, starts=[0, 2, 3], return_details=True)
    assert details.starts == [0, 2, 3] and details.n_frames == len(frames)
    assert details.ef == pytest.approx(manual_ef(tiny_model, frames, [0, 2, 3]), abs=1e-4)
    assert details.ef_std == pytest.approx(float(np.std(details.clip_efs)), abs=1e-6)
    assert isinstance(tiny_model.predict_ef(frames), float)


def test_file_array_tensor_and_list_agree(tiny_model, phantom, tmp_path):
    frames, meta = phantom
    npy = tmp_path / "v.npy"
    np.save(npy, frames)
    tensor = torch.from_numpy(frames.astype(np.float32))
    values = tiny_model.predict_ef([frames, str(npy), tensor, frames[..., 0]])
    assert values.shape == (4,)
    assert np.allclose(values, values[0], atol=1e-4)
    avi = write_video(tmp_path / "v.avi", frames, fps=meta.fps)
    d = tiny_model.predict_ef(str(avi), return_details=True)
    assert d.fps == pytest.approx(meta.fps, rel=1e-3) and d.n_frames == len(frames)
    assert abs(d.ef - values[0]) < 1.0  # MJPEG is lossy; same clips, close values


def test_batching_does_not_change_results(tiny_model, phantom):
    frames, _ = phantom
    videos = [frames, frames[:60], frames[::-1].copy()]
    a = tiny_model.predict_ef(videos, batch_size=1, clips="all")
    b = tiny_model.predict_ef(videos, batch_size=64, clips="all")
    assert np.allclose(a, b, atol=1e-4)


def test_embed_shapes_and_details(tiny_model, phantom):
    frames, _ = phantom
    e = tiny_model.embed(frames)
    assert e.shape == (64,) and e.dtype == np.float32
    many = coreecho.embed([frames, frames], model=tiny_model)
    assert many.shape == (2, 64) and np.allclose(many[0], e, atol=1e-5)
    d = tiny_model.embed(frames, clips=2, return_details=True)
    assert d.clip_embeddings.shape == (2, 64)
    assert np.allclose(d.embedding, d.clip_embeddings.mean(0), atol=1e-6)


def test_short_video_is_padded_and_noted(tiny_model):
    frames, _ = make_phantom(ef=40, seed=1)
    d = tiny_model.predict_ef(frames[:30], return_details=True)
    assert any("zero-padded" in w for w in d.warnings)
    assert d.ef == pytest.approx(manual_ef(tiny_model, frames[:30], d.starts), abs=1e-4)


def test_fps_far_from_training_warns_or_resamples(tiny_model, phantom):
    frames, _ = phantom
    with pytest.warns(UserWarning, match="far from the 50 fps"):
        d = tiny_model.predict_ef(frames, fps=25.0, return_details=True)
    assert d.warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = tiny_model.predict_ef(frames, fps=25.0, resample_fps=True, return_details=True)
    assert not r.warnings
    assert r.ef != d.ef  # 25 fps resampled to 50: other frames in the clips


def test_bad_inputs_raise_or_are_reported(tiny_model, phantom, tmp_path):
    frames, _ = phantom
    with pytest.raises(VideoReadError, match="missing.avi"):
        tiny_model.predict_ef(str(tmp_path / "missing.avi"))
    with pytest.raises(InputError, match="item 0"):
        tiny_model.predict_ef(np.zeros((5, 5)))
    with pytest.raises(InputError, match="empty"):
        tiny_model.predict_ef([])
    with pytest.raises(InputError, match="expected a path"):
        tiny_model.predict_ef(42)
    preds = tiny_model.predict_ef([frames, np.full((10, 112, 112), np.nan), frames], errors="nan",
                                  return_details=True)
    assert [p.ok for p in preds] == [True, False, True]
    assert "item 1" in preds[1].error and np.isnan(preds[1].ef)
    assert isinstance(preds[1].error, str) and issubclass(InputError, CoReEchoError)


def test_streaming_run_yields_in_order(tiny_model, phantom):
    frames, _ = phantom
    out = list(run([frames, frames[:50]], tiny_model, batch_size=2))
    assert [p.source for p in out] == ["item 0", "item 1"]


def test_module_level_uses_cached_model_by_path(tiny_model, phantom, tmp_path):
    frames, _ = phantom
    folder = tiny_model.save_pretrained(tmp_path / "m")
    a = predict_ef(frames, model=str(folder), device="cpu")
    b = predict_ef(frames, model=str(folder), device="cpu")
    assert a == b == pytest.approx(tiny_model.predict_ef(frames), abs=1e-5)


def test_shift_detector_on_the_model_fills_details(tiny_model, phantom):
    frames, _ = phantom
    seen = []

    class Detector:
        def assess(self, embedding):
            seen.append(embedding.shape)
            return float(np.linalg.norm(embedding)), True

    tiny_model.shift_detector = Detector()
    try:
        d = tiny_model.predict_ef(frames, return_details=True)
    finally:
        del tiny_model.shift_detector
    assert seen == [(64,)] and d.is_shifted is True and d.shift_score > 0
    assert tiny_model.predict_ef(frames, return_details=True).shift_score is None


def test_cpu_chunks_follow_activation_size(tiny_model):
    from coreecho import CoReEcho
    from coreecho.engine import batch_policy

    cpu = torch.device("cpu")
    assert batch_policy(CoReEcho(), cpu) == 1  # UniFormer-S at 36x112x112 in fp32: one clip per pass is fastest
    assert batch_policy(CoReEcho(), cpu, "bf16") == 2  # bf16 activations take half the bytes: two clips
    assert batch_policy(tiny_model, cpu) == 4 * 2**20 // (4 * 8 * 18 * 28 * 28)  # 9 clips
    assert batch_policy(tiny_model, cpu, "fp16") == 4 * 2**20 // (2 * 8 * 18 * 28 * 28)  # 18 clips


def test_four_threads_on_a_model_left_in_train_mode_match_sequential_results(tiny_model, one_thread):
    """The thread-safety contract (docs/api.md): concurrent predict_ef calls on one model, whatever mode it was left
    in, give the results of sequential calls and leave its state dict (BatchNorm statistics included) unchanged."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from coreecho.data.phantom import make_phantom

    videos = [make_phantom(ef=20 + 12 * i, seed=i, n_frames=40)[0] for i in range(4)]
    model = tiny_model.train()  # left in training mode: BatchNorm would update its statistics on every forward
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sequential = [model.predict_ef(v, batch_size=3, workers=0) for v in videos]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(lambda v: model.predict_ef(v, batch_size=3, workers=0), videos * 2))
    assert concurrent == sequential * 2
    assert all(m.training for m in model.modules())  # its mode is the caller's, untouched
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sequential == [model.eval().predict_ef(v, batch_size=3, workers=0) for v in videos]  # eval-mode results
