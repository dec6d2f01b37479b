"""One memory budget for the whole path of one video (coreecho.video.budget), checked before allocation; the
frame transform never builds a full-resolution square; implausible frame rates never become huge timelines."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from coreecho.errors import InputError, MemoryBudgetError
from coreecho.models.config import PreprocessConfig
from coreecho.video import open_video
from coreecho.video.budget import ENV_MAX_BYTES, env_max_bytes, plausible_fps, timeline_length
from coreecho.video.limits import Limits
from coreecho.video.pipeline import ClipPipeline
from coreecho.video.resize import square_resize, square_resize_bytes
from coreecho.video.transforms import pad_to_square, resize_frames


@pytest.mark.parametrize("h,w,size", [(480, 640, 112), (640, 480, 112), (57, 93, 112), (768, 1024, 112),
                                      (2, 700, 112), (700, 2, 112), (1, 900, 64), (113, 112, 112), (37, 500, 32)])
def test_square_resize_is_bit_identical_to_pad_then_resize(h, w, size):
    frames = np.random.default_rng(h * w).integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    assert np.array_equal(square_resize(frames, size), resize_frames(pad_to_square(frames), size))


def test_square_resize_bytes_stay_small_for_extreme_geometries():
    square = 60 * 4096 * 4096 * 3  # what padding 60 frames of 2x4096 to a square held, in uint8 alone
    for h, w in ((2, 4096), (4096, 2), (1, 4096), (4096, 4096)):
        assert square_resize_bytes(60, h, w, 112) < 256 * 2**20 < square
    out = square_resize(np.full((2, 2, 4096, 3), 200, np.uint8), 112)
    assert out.shape == (2, 112, 112, 3) and out.max() > 0


def test_budget_refuses_a_huge_clip_batch_naming_file_stage_and_numbers():
    pre = PreprocessConfig(frames=36, stride=1, size=112)
    with pytest.raises(MemoryBudgetError) as e:
        ClipPipeline(pre)(np.zeros((2100, 8, 8), np.uint8), 2000, name="long.npy")
    err = e.value
    assert err.stage == "clip batch" and err.needed > err.budget == 2 * 1024**3
    assert "long.npy" in str(err) and "2000 clips" in str(err) and "max_bytes" in str(err)
    again = pickle.loads(pickle.dumps(err))  # comes back from loader workers intact
    assert type(again) is MemoryBudgetError and again.stage == err.stage and str(again) == str(err)
    assert isinstance(err, InputError)  # one video's error: a batch goes on


def test_budget_comes_from_limits_or_the_environment(monkeypatch):
    pre = PreprocessConfig(frames=8, stride=2, size=32)
    frames = np.random.default_rng(0).integers(0, 255, (40, 48, 64), dtype=np.uint8)
    assert ClipPipeline(pre)(frames, 3).x.shape == (3, 3, 8, 32, 32)
    monkeypatch.setenv(ENV_MAX_BYTES, "1M")
    assert env_max_bytes() == 2**20 and Limits().max_bytes == 2**20
    with pytest.raises(MemoryBudgetError, match="COREECHO_MAX_BYTES"):
        ClipPipeline(pre)(frames, 3)
    assert ClipPipeline(pre, limits=Limits(max_bytes=2**30))(frames, 3).x.shape[0] == 3  # an explicit budget wins
    for bad in ("lots", "-5", "0", "nan", "1e400"):
        monkeypatch.setenv(ENV_MAX_BYTES, bad)
        with pytest.raises(InputError, match=ENV_MAX_BYTES):
            Limits()


def test_implausible_frame_rates_are_ignored_or_refused_never_a_huge_timeline():
    assert [plausible_fps(v) for v in (50, 1, 1000, 0.99, 1e-5, 1e6, float("nan"), float("inf"), None)] == \
        [True, True, True, False, False, False, False, False, False]
    assert timeline_length(60, 1 / 50000, 50.0) == 150_000_000  # what the stated rate would have meant
    pre = PreprocessConfig(frames=8, stride=2, size=32)
    frames = np.random.default_rng(0).integers(0, 255, (60, 32, 32), dtype=np.uint8)
    for fps in (1 / 50000, 1e-5, 1e6):
        reader = open_video(frames)
        reader.info.fps = fps  # a header that lies
        batch = ClipPipeline(pre)(reader, 2)
        assert batch.fps is None and batch.n_frames == 60 and any("plausible" in n for n in batch.warnings)
        reader.info.fps = fps
        with pytest.raises(InputError, match="plausible"):
            ClipPipeline(pre)(reader, 2, resample_fps=True)


def test_timeline_is_checked_before_it_is_built():
    pre = PreprocessConfig(frames=8, stride=2, size=32, fps=1000.0)
    reader = open_video(np.zeros((100_000, 4, 4), np.uint8))
    reader.info.fps = 1.0  # plausible, but 100 000 frames at 1 fps resampled to 1000 fps: 10^8 timeline frames
    with pytest.raises(MemoryBudgetError) as e:
        ClipPipeline(pre)(reader, 1, resample_fps=True)
    assert e.value.stage == "timeline"


def test_the_forward_pass_is_checked_at_stream_entry(monkeypatch, tiny_model):
    from coreecho.engine import VideoItems, stream
    from coreecho.engine.policy import forward_bytes

    monkeypatch.setenv(ENV_MAX_BYTES, "4M")
    pre = tiny_model.config.preprocessing
    items = VideoItems([np.zeros((40, 64, 64), np.uint8)], tiny_model.pipeline())
    assert forward_bytes(tiny_model.encoder.embed_dim[0], pre, 4096) > 4 * 2**20
    with pytest.raises(MemoryBudgetError, match="batch_size") as e:
        list(stream(items, tiny_model, batch_size=4096))
    assert e.value.stage == "forward pass"


_RSS_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    import coreecho
    from coreecho.video import open_video

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    model = coreecho.load_model("phantom-tiny", device="cpu")
    pipe = model.pipeline()
    rng = np.random.default_rng(0)
    warm = rng.integers(0, 255, (60, 64, 64), dtype=np.uint8)
    coreecho.predict_ef(warm, model=model, workers=0)  # torch's own buffers and thread pools, once
    base = status("VmHWM")
    out = {}
    for name, shape in [("2x4096", (60, 2, 4096)), ("4096x2", (60, 4096, 2)), ("1x4096", (60, 1, 4096))]:
        frames = rng.integers(0, 255, shape, dtype=np.uint8)
        p = coreecho.predict_ef(frames, model=model, workers=0, errors="nan", return_details=True)
        out[name] = p.error or "ok"
    for fps in (1e-5, 1e6, float("nan")):
        reader = open_video(rng.integers(0, 255, (60, 64, 64), dtype=np.uint8))
        reader.info.fps = fps
        try:
            pipe(reader, 3, resample_fps=True)
            out[f"fps {fps}"] = "ok"
        except coreecho.errors.CoReEchoError as err:
            out[f"fps {fps}"] = type(err).__name__
    p = coreecho.predict_ef(warm, model=model, clips=2000, workers=0, errors="nan", return_details=True)
    out["clips 2000"] = p.error or "ok"
    out["above"] = status("VmHWM") - base
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_peak_memory_of_extreme_inputs_stays_under_the_budget(tmp_path):
    budget = 256 * 2**20
    env = {**os.environ, ENV_MAX_BYTES: str(budget), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", _RSS_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["fps 1e-05"] == out["fps 1000000.0"] == out["fps nan"] == "InputError"
    assert "clip batch" in out["clips 2000"] and "2000 clips" in out["clips 2000"]
    assert out["above"] < budget, out  # the model and torch were loaded before the baseline


def test_an_avi_stating_one_frame_per_50000_seconds(tmp_path, tiny_model):
    from fractions import Fraction

    av = pytest.importorskip("av")
    path = tmp_path / "slow.avi"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=Fraction(1, 50000))
        stream.width = stream.height = 64
        stream.pix_fmt = "yuvj420p"
        rng = np.random.default_rng(0)
        for _ in range(60):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with open_video(str(path)) as reader:
        assert reader.info.fps == pytest.approx(2e-5)
    import coreecho

    row = coreecho.predict_ef(str(path), model=tiny_model, resample_fps=True, errors="nan", return_details=True,
                              workers=0)
    assert not row.ok and "plausible" in row.error and np.isnan(row.ef)  # was EF 5.3 from a 10^9-frame timeline
    with pytest.warns(UserWarning, match="plausible"):
        row = coreecho.predict_ef(str(path), model=tiny_model, return_details=True, workers=0)
    assert row.ok and row.fps is None and row.n_frames == 60
