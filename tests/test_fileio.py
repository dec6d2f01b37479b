"""How coreecho writes files: atomic replacement, modes, refused targets, stale temporaries, the output lock, typed
disk-full errors, verified checkpoints with a fallback, and errors that survive pickling (issues 19.4, 23.2-23.4)."""

from __future__ import annotations

import csv
import inspect
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch

import coreecho.errors as errors_module
from coreecho._atomic import check_output_target, clean_stale_temporaries, install, replace_atomically, temporary_name
from coreecho._lock import lock_path, output_lock
from coreecho.errors import BusyError, ChecksumError, CoReEchoError, DiskFullError, OutputError, WeightsError

POSIX = os.name == "posix"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _write(text):
    return lambda fh: fh.write(text)


# ------------------------------------------------------------------------------------------ modes
@pytest.mark.skipif(not POSIX, reason="POSIX modes")
@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_follow_the_umask(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        a = replace_atomically(tmp_path / "a.csv", _write("x\n"))
        tmp = temporary_name(tmp_path / "b.npy")
        np.save(open(tmp, "wb"), np.zeros(2))  # a writer that creates its own file, finished by install()
        b = install(tmp, tmp_path / "b.npy")
    finally:
        os.umask(old)
    assert _mode(a) == expected and _mode(b) == expected
    assert a.read_text() == "x\n"


@pytest.mark.skipif(not POSIX, reason="POSIX modes")
def test_a_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "ef.csv"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    replace_atomically(target, _write("new\n"))
    assert target.read_text() == "new\n" and _mode(target) == 0o640
    os.chmod(target, 0o604)
    replace_atomically(target, lambda p: p.write_bytes(b"bytes"), path=True)
    assert target.read_bytes() == b"bytes" and _mode(target) == 0o604
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ef.csv"]


# ------------------------------------------------------------------------------------------ refused targets
def _special_targets(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("precious\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    return {"a symbolic link": link, "a folder": folder, "a FIFO": fifo, "a character device": "/dev/null"}


@pytest.mark.skipif(not POSIX or not os.path.exists("/dev/null"), reason="POSIX special files")
def test_links_folders_fifos_and_devices_are_refused_before_writing(tmp_path):
    before = sorted(p.name for p in tmp_path.iterdir())
    for kind, target in _special_targets(tmp_path).items():
        with pytest.raises(OutputError, match=kind) as err:
            check_output_target(target)
        assert str(target) in str(err.value)
        called = []
        with pytest.raises(OutputError, match=kind):
            replace_atomically(target, lambda fh: called.append(fh.write("x")))
        assert called == []  # refused before anything was written
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "real.csv").read_text() == "precious\n"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISFIFO(os.lstat(tmp_path / "fifo.csv").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({*before, "real.csv", "link.csv", "folder.csv",
                                                                  "fifo.csv"})  # no temporary left
    check_output_target(tmp_path / "absent.csv")
    check_output_target(tmp_path / "real.csv")


@pytest.mark.skipif(not POSIX or not os.path.exists("/dev/null"), reason="POSIX special files")
def test_cli_refuses_special_outputs_before_compute(tmp_path, tiny_model, monkeypatch):
    from coreecho.cli import main

    model_dir = tiny_model.save_pretrained(tmp_path / "model")
    video = tmp_path / "v.npy"
    np.save(video, np.zeros((8, 32, 32), np.uint8))
    loaded = []
    import coreecho.inference as inference

    monkeypatch.setattr(inference, "get_model", lambda *a, **k: loaded.append(1))
    for kind, target in _special_targets(tmp_path).items():
        if kind == "a folder":
            continue  # "is a folder" has its own message (tests/test_cli_hostile.py)
        assert main(["predict", str(video), "--model", str(model_dir), "-o", str(target), "--quiet"]) == 2
    os.mkfifo(tmp_path / "o.csv.partial")  # a FIFO where the journal goes would block the run forever
    assert main(["predict", str(video), "--model", str(model_dir), "-o", str(tmp_path / "o.csv"), "--quiet"]) == 2
    assert loaded == []  # refused before the model was even loaded
    assert (tmp_path / "real.csv").read_text() == "precious\n" and (tmp_path / "link.csv").is_symlink()


# ------------------------------------------------------------------------------------------ stale temporaries
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_are_cleaned_and_only_those(tmp_path):
    old = time.time() - 3600 * 2
    dead, alive = _dead_pid(), os.getpid()
    names = {
        f".ef.csv.coreecho-{dead}-0a1b2c3d.tmp": True,  # its process is gone: removed
        f".ef.csv.coreecho-{dead}-0a1b2c3e.tmp.npz": True,  # with a writer's suffix
        ".ef.csv.ab12cd_3.tmp": True,  # coreecho < 0.3 (mkstemp), old
        f".ef.csv.coreecho-{alive}-0a1b2c3f.tmp": False,  # a write in progress in a live process
        f".other.csv.coreecho-{dead}-0a1b2c3d.tmp": False,  # another output's
        "ef.csv": False, ".ef.csv.lock": False, "notes.tmp": False, ".ef.csv.mine.tmp": False,
    }
    for name in names:
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (old, old))
    fresh = tmp_path / f".ef.csv.coreecho-{dead}-0a1b2c40.tmp"  # dead, but touched a moment ago: kept
    fresh.write_text("x")
    removed = clean_stale_temporaries(tmp_path, "ef.csv")
    assert sorted(p.name for p in removed) == sorted(n for n, gone in names.items() if gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(n for n, gone in names.items() if not gone),
                                                                 fresh.name])


def test_an_interrupted_checkpoint_write_is_cleaned_by_the_next_save(tmp_path):
    from coreecho.train.checkpoint import save_checkpoint

    code = textwrap.dedent(f"""
        import os, torch
        from coreecho.train import checkpoint as ck
        def killed(obj, fh):
            fh.write(b"half a checkpoint")
            fh.flush()
            os.kill(os.getpid(), 9)
        ck.torch.save = killed
        ck.save_checkpoint({str(tmp_path / 'checkpoint_last.pt')!r}, {{"epoch": 1}})
    """)
    proc = subprocess.run([sys.executable, "-c", code], timeout=300)
    assert proc.returncode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".checkpoint_last.pt.coreecho-")]
    assert len(left) == 1 and not (tmp_path / "checkpoint_last.pt").exists()
    os.utime(left[0], (time.time() - 120, time.time() - 120))
    save_checkpoint(tmp_path / "checkpoint_last.pt", {"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_last.pt"]


# ------------------------------------------------------------------------------------------ the lock
_HOLDER = textwrap.dedent("""
    import sys, time
    from coreecho._lock import output_lock
    with output_lock(sys.argv[1], command="coreecho predict holder-test"):
        print("locked", flush=True)
        time.sleep(600)
""")


def _hold(output):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(output)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.skipif(not POSIX, reason="fcntl locks")
def test_a_second_run_refuses_at_once_and_a_killed_holder_frees_the_lock(tmp_path):
    out = tmp_path / "ef.csv"
    holder = _hold(out)
    try:
        with pytest.raises(BusyError) as err:
            with output_lock(out):
                pytest.fail("two holders of one lock")
        message = str(err.value)
        assert str(out) in message and f"pid {holder.pid}" in message and "holder-test" in message
        assert "started" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert lock_path(out).exists()  # a killed holder leaves its file, but not its lock
    with output_lock(out) as path:
        assert path == lock_path(out) and str(os.getpid()) in path.read_text()
    assert not lock_path(out).exists()  # released and removed


@pytest.mark.skipif(not POSIX, reason="fcntl locks")
def test_predict_refuses_an_output_another_run_holds(tmp_path, tiny_model):
    from coreecho.cli import main

    model_dir = tiny_model.save_pretrained(tmp_path / "model")
    video = tmp_path / "v.npy"
    np.save(video, np.zeros((8, 32, 32), np.uint8))
    out = tmp_path / "ef.csv"
    out.write_text("path,ef\nearlier.avi,50\n")
    holder = _hold(out)
    try:
        assert main(["predict", str(video), "--model", str(model_dir), "-o", str(out), "--quiet"]) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert out.read_text() == "path,ef\nearlier.avi,50\n" and not os.path.exists(f"{out}.partial")
    assert main(["predict", str(video), "--model", str(model_dir), "-o", str(out), "--quiet"]) in (0, 1)
    assert [r["path"] for r in csv.DictReader(out.open())] == [str(video)]


# ------------------------------------------------------------------------------------------ disk full
_FULL = textwrap.dedent("""
    import resource, signal, sys, torch
    from coreecho._atomic import replace_atomically
    from coreecho.train.checkpoint import save_checkpoint
    folder, kind = sys.argv[1], sys.argv[2]
    replace_atomically(folder + "/out.csv", lambda fh: fh.write("previous\\n"))
    save_checkpoint(folder + "/checkpoint_last.pt", {"epoch": 1, "w": torch.zeros(4)})
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    try:
        if kind == "text":
            replace_atomically(folder + "/out.csv", lambda fh: fh.write("x" * 100000))
        elif kind == "torch":
            save_checkpoint(folder + "/checkpoint_last.pt", {"epoch": 2, "w": torch.zeros(100000)})
        else:
            from safetensors.torch import save_file
            replace_atomically(folder + "/out.csv", lambda p: save_file({"w": torch.zeros(100000)}, str(p)),
                               path=True)
    except Exception as err:
        print(type(err).__name__ + "|" + str(err))
""")


@pytest.mark.skipif(not POSIX, reason="RLIMIT_FSIZE")
@pytest.mark.parametrize("kind", ["text", "torch", "safetensors"])
def test_disk_full_is_a_typed_one_line_error_and_the_previous_file_is_intact(tmp_path, kind):
    from coreecho.train.checkpoint import load_checkpoint

    proc = subprocess.run([sys.executable, "-c", _FULL, str(tmp_path), kind], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    name, message = proc.stdout.rstrip("\n").split("|", 1)
    assert name == "DiskFullError" and "\n" not in message and "file-size limit" in message
    written = "checkpoint_last.pt" if kind == "torch" else "out.csv"
    assert message.startswith(str(tmp_path / written))
    assert (tmp_path / "out.csv").read_text() == "previous\n"
    assert load_checkpoint(tmp_path / "checkpoint_last.pt")["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_last.pt", "out.csv"]


def test_os_errors_are_typed():
    import errno

    from coreecho._oserrors import as_output_error
    from coreecho.errors import NotWritableError

    assert isinstance(as_output_error(OSError(errno.ENOSPC, "No space left on device"), "a"), DiskFullError)
    assert isinstance(as_output_error(OSError(errno.EROFS, "Read-only file system"), "a"), NotWritableError)
    assert isinstance(as_output_error(PermissionError(errno.EACCES, "Permission denied"), "a"), NotWritableError)
    wrapped = RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")
    assert isinstance(as_output_error(wrapped, "a"), DiskFullError)
    torch_err = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    typed = as_output_error(torch_err, "m.pt")
    assert type(typed) is OutputError and str(typed).startswith("m.pt: cannot be written") and "full" in str(typed)
    assert as_output_error(ValueError("not a file problem"), "a") is None
    assert as_output_error(KeyboardInterrupt(), "a") is None


# ------------------------------------------------------------------------------------------ checkpoints
def _flip_tensor_byte(path, tensor):
    data = bytearray(path.read_bytes())
    at = data.find(tensor.numpy().tobytes())
    assert at > 0
    data[at + 3] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_changed_byte_in_tensor_data_is_a_typed_error_and_the_previous_checkpoint_is_used(tmp_path):
    from coreecho.train.checkpoint import load_checkpoint, load_latest_checkpoint, previous_path, save_checkpoint

    last = tmp_path / "checkpoint_last.pt"
    w = torch.linspace(1, 2, 64)
    save_checkpoint(last, {"epoch": 1, "w": w})
    save_checkpoint(last, {"epoch": 2, "w": w * 3})
    assert previous_path(last) == tmp_path / "checkpoint_prev.pt"
    assert load_checkpoint(previous_path(last))["epoch"] == 1
    _flip_tensor_byte(last, w * 3)
    with pytest.raises(ChecksumError, match="checkpoint_last.pt: .*sha256"):
        load_checkpoint(last)
    with pytest.warns(UserWarning, match="previous checkpoint .*checkpoint_prev.pt"):
        ckpt, used = load_latest_checkpoint(last)
    assert used == previous_path(last) and ckpt["epoch"] == 1 and torch.equal(ckpt["w"], w)
    _flip_tensor_byte(previous_path(last), w)
    with pytest.raises(WeightsError, match="previous checkpoint cannot be used either"):
        load_latest_checkpoint(last)
    assert load_latest_checkpoint(tmp_path / "none.pt") is None


def test_a_checkpoint_without_digest_loads_with_one_warning(tmp_path):
    from coreecho.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint

    path = tmp_path / "old.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "epoch": 4}, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_checkpoint(path)["epoch"] == 4
        assert load_checkpoint(path)["epoch"] == 4
    assert [str(w.message) for w in caught if "digest" in str(w.message)] == [
        f"{path}: this checkpoint was written before coreecho recorded checkpoint digests; it is loaded without "
        "checking its content"]


def test_resume_falls_back_to_the_previous_checkpoint_and_ends_as_an_uninterrupted_run(tmp_path):
    from coreecho.data.layouts import write_echonet_layout
    from coreecho.train import TrainConfig, TrainingInterrupted, train_stage1

    data = tmp_path / "data"
    write_echonet_layout(data, 8, seed=5, n_frames=(24, 32), splits=(4, 2, 2), progress=False)

    def cfg(out, **kw):
        return TrainConfig(data=str(data), out=str(tmp_path / out), preset="micro", init="none", frames=4, stride=4,
                           size=32, batch_size=2, epochs=2, num_workers=0, progress=False, tensorboard=False,
                           device="cpu", seed=3, encoder_args={"drop_rate": 0.0}, save_every_steps=1, lr=1e-3,
                           **kw)

    full = train_stage1(cfg("full"))
    with pytest.raises(TrainingInterrupted):
        train_stage1(cfg("killed", stop_after_steps=3))
    run = tmp_path / "killed"
    last = torch.load(run / "checkpoint_last.pt", weights_only=True)
    prev = torch.load(run / "checkpoint_prev.pt", weights_only=True)
    assert last["global_step"] > prev["global_step"]
    name = next(k for k, v in last["model"].items() if v.is_floating_point() and v.numel() >= 16)
    _flip_tensor_byte(run / "checkpoint_last.pt", last["model"][name].reshape(-1)[:4])
    with pytest.warns(UserWarning, match="checkpoint_last.pt: the checkpoint's content does not match"):
        resumed = train_stage1(cfg("killed", resume=True))
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert resumed.best_val_mae == full.best_val_mae


# ------------------------------------------------------------------------------------------ pickling
def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def _example(cls):
    params = [p for p in inspect.signature(cls.__init__).parameters.values()][1:]
    if any(p.kind is p.VAR_POSITIONAL for p in params) or not params:
        return cls("what went wrong: a.avi")
    args = [f"arg{i}" for i, p in enumerate(params) if p.default is p.empty and p.kind is not p.VAR_KEYWORD]
    return cls(*args)


def test_every_error_class_survives_pickling():
    import coreecho.cli  # noqa: F401 - UsageError and friends
    import coreecho.train.engine  # noqa: F401 - TrainingInterrupted

    in_module = [getattr(errors_module, n) for n in errors_module.__all__]
    classes = {c for c in [*in_module, *_all_subclasses(CoReEchoError)] if isinstance(c, type)}
    assert {errors_module.MissingDependencyError, errors_module.InputError, BusyError} <= classes
    for cls in sorted(classes, key=lambda c: c.__qualname__):
        err = _example(cls)
        err.extra_note = "kept"
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls and str(back) == str(err) and back.args == err.args, cls
        assert back.extra_note == "kept", cls
        public = {k: v for k, v in vars(err).items() if not k.startswith("_")}
        assert {k: v for k, v in vars(back).items() if not k.startswith("_")} == public, cls
    dep = pickle.loads(pickle.dumps(errors_module.MissingDependencyError("av", "video", "Reading MP4")))
    assert (dep.package, dep.extra) == ("av", "video") and "coreecho[video]" in str(dep)


# ------------------------------------------------------------------------------------------ journals
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_any_file_name_round_trips_through_a_journal(tmp_path, fmt):
    from coreecho.cli.output import Journal, read_rows, write_rows

    names = ["a\nb.avi", "line\u2028sep.avi", 'quo"te,comma.avi', "para\u2029graph\r.avi", "plain.avi"]
    journal = Journal(tmp_path / "ef.csv.partial", fmt, ["path", "ef"])
    for i, name in enumerate(names):
        journal.write({"path": name, "ef": 40.0 + i})
    journal.close()
    rows = read_rows(tmp_path / "ef.csv.partial", fmt)
    assert [r["path"] for r in rows] == names
    assert [float(r["ef"]) for r in rows] == [40.0 + i for i in range(len(names))]
    replace_atomically(tmp_path / "ef.out", lambda fh: write_rows(fh, fmt, rows, ["path", "ef"]))
    assert [r["path"] for r in read_rows(tmp_path / "ef.out", fmt)] == names


def test_a_failed_replacement_keeps_the_older_previous_file(tmp_path, monkeypatch):
    """keep_previous: the old target becomes the previous file only once the new one is in place."""
    target, previous = tmp_path / "last.pt", tmp_path / "prev.pt"
    previous.write_text("older")
    target.write_text("current")
    real_replace = os.replace

    def failing_replace(src, dst, *args, **kwargs):
        if os.fspath(dst) == os.fspath(target):
            raise OSError(28, "No space left on device", os.fspath(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(DiskFullError):
        replace_atomically(target, lambda fh: fh.write("new"), keep_previous=previous)
    monkeypatch.setattr(os, "replace", real_replace)
    assert target.read_text() == "current" and previous.read_text() == "older"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "prev.pt"]  # no link or temporary left
    replace_atomically(target, lambda fh: fh.write("new"), keep_previous=previous)
    assert target.read_text() == "new" and previous.read_text() == "current"
