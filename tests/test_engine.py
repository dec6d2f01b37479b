"""The inference engine: loader workers, ordering, per-item errors, batch policy and precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from coreecho import CoReEcho
from coreecho.data.phantom import make_phantom
from coreecho.errors import InputError, VideoReadError
from coreecho.models.config import PreprocessConfig
from coreecho.video import write_video


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    out = []
    for i in range(5):
        frames, _ = make_phantom(ef=25 + 10 * i, seed=i, n_frames=80, fps=50, size=96)
        out.append(str(write_video(root / f"v{i}.avi", frames, fps=50)))
    (root / "broken.avi").write_bytes(b"RIFF" + b"\0" * 200)
    return out, str(root / "broken.avi")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CoReEcho(tiny_config(preprocessing=PreprocessConfig(frames=8, stride=4, size=64))).eval()


def test_workers_give_the_serial_results_in_order(files, model, one_thread):
    paths, broken = files
    items = paths[:2] + [broken] + paths[2:]
    serial = model.predict_ef(items, workers=0, errors="nan", return_details=True)
    ahead = model.predict_ef(items, workers=2, errors="nan", return_details=True)
    assert [p.source for p in ahead] == items
    assert [p.ok for p in ahead] == [True, True, False, True, True, True]
    assert "broken.avi" in ahead[2].error
    np.testing.assert_array_equal([p.ef for p in serial], [p.ef for p in ahead])
    with pytest.raises(VideoReadError, match="broken.avi"):  # errors="raise": the worker's error, typed, here
        model.predict_ef(items, workers=2)


def test_any_batch_size_gives_the_same_predictions(files, model, one_thread):
    paths, _ = files
    ref = model.predict_ef(paths, clips=4, batch_size=1)
    for b in (3, 7, 64):
        np.testing.assert_allclose(model.predict_ef(paths, clips=4, batch_size=b), ref, atol=1e-4)
    for bad in (0, -1, 10**6, 2.5, True):
        with pytest.raises(InputError, match="batch_size"):
            model.predict_ef(paths[0], batch_size=bad)


def test_threads_are_restored_and_bad_values_refused(files, model):
    before = torch.get_num_threads()
    model.predict_ef(files[0][0], threads=1)
    assert torch.get_num_threads() == before
    with pytest.raises(InputError, match="threads"):
        model.predict_ef(files[0][0], threads=0)
    with pytest.raises(InputError, match="precision"):
        model.predict_ef(files[0][0], precision="fp8")


def test_bf16_stays_close_to_fp32(files, model, one_thread):
    from coreecho.precision import cpu_supports_bf16

    if not cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16")
    paths, _ = files
    fp32 = model.predict_ef(paths)
    bf16 = model.predict_ef(paths, precision="bf16")
    assert np.abs(bf16 - fp32).max() < 0.5 and not np.array_equal(bf16, fp32)


def test_non_finite_outputs_are_errors_not_results(files, model, one_thread):
    import copy

    from coreecho.errors import OutputError

    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.head[-1].bias.fill_(float("nan"))
    paths, _ = files
    preds = broken.predict_ef(paths[:2], errors="nan", return_details=True)
    assert [p.ok for p in preds] == [False, False] and "NaN" in preds[0].error and np.isnan(preds[0].ef)
    with pytest.raises(OutputError, match="NaN"):
        broken.predict_ef(paths[0])
    huge = copy.deepcopy(model)
    with torch.no_grad():
        huge.head[-1].bias.fill_(-6.7e29)
    with pytest.warns(UserWarning, match="outside 0-100"):
        assert huge.predict_ef(paths[0]) < 0


SHM_CHILD = r"""
import json, resource, signal, sys, warnings
import torch
sys.path.insert(0, sys.argv[1])
from conftest import tiny_config
from coreecho import CoReEcho
from coreecho.engine import EngineWarning
torch.manual_seed(0)
model = CoReEcho(tiny_config()).eval()
paths = sys.argv[2:]
want = model.predict_ef(paths, workers=0).tolist()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # no shared-memory file can hold a clip
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    got = model.predict_ef(paths, workers=2).tolist()
print(json.dumps({"want": want, "got": got, "engine": [str(w.message) for w in seen if w.category is EngineWarning]}))
"""


def test_workers_without_shared_memory_fall_back_to_this_process(files):
    """Workers hand clips over through shared-memory files; when that fails (a file-size limit here, no /dev/shm
    elsewhere), the run goes on in this process with one warning, and the EFs are those of workers=0."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    paths, _ = files
    proc = subprocess.run([sys.executable, "-c", SHM_CHILD, str(Path(__file__).parent), *paths], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["got"] == out["want"]
    assert len(out["engine"]) == 1 and "shared memory" in out["engine"][0]


class _DiesAtThree(torch.utils.data.Dataset):
    """Items of random clips; the worker process that reaches item 3 kills itself (a decoder crash, an OOM kill)."""

    def __init__(self, pre):
        self.pre = pre

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int):
        import os
        import signal
        import time

        from coreecho.engine import Item

        if i == 3 and torch.utils.data.get_worker_info() is not None:
            time.sleep(0.5)  # let the items before reach the main process
            os.kill(os.getpid(), signal.SIGKILL)
        return Item(i, f"v{i}", torch.randn(1, 3, self.pre.frames, self.pre.size, self.pre.size))


def test_a_dead_worker_is_replaced_by_decoding_in_this_process(model):
    """A worker killed mid-run (a decoder crash, an OOM kill): the run goes on in this process (issue 19.2), the
    items the workers held are decoded again here and say so."""
    from coreecho.engine import EngineWarning, stream

    got = []
    with pytest.warns(EngineWarning, match="DataLoader worker"):
        for item, emb, out in stream(_DiesAtThree(model.config.preprocessing), model, workers=1, errors="nan"):
            got.append((item.index, out.shape, any("decoded again" in n for n in item.notes)))
    assert [g[:2] for g in got] == [(i, (1,)) for i in range(6)]  # every item, in order
    assert got[3][2] and not got[0][2]  # the item in flight was decoded again here


def test_auto_precision_on_a_cpu_is_fp32_for_a_micro_model_and_bf16_for_uniformer_s(files, model, one_thread):
    from coreecho.precision import cpu_supports_bf16

    if not cpu_supports_bf16():
        pytest.skip("no native bf16 on this CPU: auto is fp32 for every model")
    path = files[0][0]
    # a micro model: bf16 autocast would be slower (phantom-tiny 0.77x), so auto runs fp32
    assert model.predict_ef(path, precision="auto") == model.predict_ef(path, precision="fp32")
    torch.manual_seed(0)
    big = CoReEcho().eval()  # UniFormer-S: compute-bound, auto runs bf16
    frames, _ = make_phantom(ef=50, seed=0, n_frames=144, fps=50)
    auto = big.predict_ef(frames, clips=1, precision="auto")
    assert auto == big.predict_ef(frames, clips=1, precision="bf16")
    assert auto != big.predict_ef(frames, clips=1, precision="fp32")


def test_model_and_module_predict_ef_pick_the_same_batch_size_the_policy(files, model, monkeypatch, one_thread):
    """``model.predict_ef(x)``, ``coreecho.predict_ef(x, model=m)``, ``model.embed(x)`` and the phantom benchmark
    leave the clips per pass to the engine's batch policy (no fixed default of their own)."""
    import coreecho
    from coreecho.data.phantom_benchmark import phantom_benchmark
    from coreecho.engine import clips_per_pass, policy

    paths = files[0][:3]  # 3 videos x 3 clips
    pre = model.config.preprocessing
    per_clip = 4 * 8 * (pre.frames // 2) * (pre.size // 4) ** 2  # fp32 first-stage bytes of one clip
    sizes: list[int] = []
    hook = model.encoder.register_forward_pre_hook(lambda _m, args: sizes.append(int(args[0].shape[0])))
    try:
        for room, want in ((1, [1] * 9), (2 * per_clip, [2, 2, 2, 2, 1]), (4 * per_clip, [4, 4, 1])):
            monkeypatch.setattr(policy, "CPU_ACTIVATION_BYTES", room)
            assert clips_per_pass(8, pre, torch.device("cpu")) == want[0]
            runs = []
            for call in (lambda: model.predict_ef(paths, workers=0),
                         lambda: coreecho.predict_ef(paths, model=model, workers=0),
                         lambda: model.embed(paths, workers=0)):
                sizes.clear()
                call()
                runs.append(list(sizes))
            assert runs == [want, want, want], (room, runs)
        sizes.clear()
        phantom_benchmark(model, n=2)
        assert sizes == [4, 2]  # 2 phantoms x 3 clips at 4 clips per pass
    finally:
        hook.remove()
