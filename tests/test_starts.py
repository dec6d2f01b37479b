"""The starts file of the official test protocol (``test_start_indexes.pkl``) is untrusted input: it is read by an
allow-list unpickler that admits only what that file holds (a dict of names to small numeric arrays), never a
callable or an allocating builtin, with a size cap (issue 19.5)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coreecho.errors import InputError
from coreecho.train.starts import MAX_PICKLE_BYTES, load_starts, restricted_pickle_load

ROOT = Path(__file__).resolve().parents[1]
# protocol 4: STACK_GLOBAL builtins.bytearray, then REDUCE with 3.5e9 (a float) -> 3.5 GB if called
BYTEARRAY_45 = (b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x8c\tbytearray\x93"
                b"G\x41\xea\x13\x11\x80\x00\x00\x00\x85R.")
# protocol 4: BINBYTES8 claiming 2**62 bytes that the file does not hold
HUGE_BYTES = b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"x" * 16 + b"."


class _Reduce:
    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_official_layout_loads(tmp_path, protocol):
    starts = {f"0X{i:016X}.avi": np.array([i, i + 32, i + 64], np.int64) for i in range(20)}
    starts["scalar.avi"] = [np.int64(3), np.int64(7)]  # numpy scalars in a list
    p = tmp_path / "test_start_indexes.pkl"
    p.write_bytes(pickle.dumps(starts, protocol=protocol))
    out = load_starts(p)
    assert set(out) == set(starts)
    for k, v in starts.items():
        assert out[k].dtype == np.int64 and out[k].tolist() == list(np.asarray(v).tolist())
        assert type(out[k]) is np.ndarray  # a plain array, not the unpickler's checked stand-in


def _refusals() -> dict[str, tuple[bytes, str]]:
    try:
        from numpy._core.multiarray import _reconstruct as rec  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as rec
    return {
        "bytearray-45": (BYTEARRAY_45, "builtins.bytearray"),
        "os-system": (pickle.dumps(_Reduce(__import__("os").system, ("echo pwned",))), "posix.system|os.system"),
        "eval": (pickle.dumps(_Reduce(eval, ("1+1",))), "builtins.eval"),
        "bytes": (pickle.dumps(_Reduce(bytes, (10**9,))), "builtins.bytes"),
        "list": (pickle.dumps(_Reduce(list, ("abc",))), "builtins.list"),
        "reconstruct-huge": (pickle.dumps(_Reduce(rec, (np.ndarray, (10**9,), b"b"))), "never do"),
        "setstate-huge": (pickle.dumps(_Reduce(rec, (np.ndarray, (0,), b"b"),
                                               (1, (10**9,), np.dtype("i8"), False, b"\0" * 8))), "shape"),
        "setstate-mismatch": (pickle.dumps(_Reduce(rec, (np.ndarray, (0,), b"b"),
                                                   (1, (100,), np.dtype("i8"), False, b"\0" * 8))), "does not match"),
        "object-array": (pickle.dumps({"a.avi": np.array([1, "x"], dtype=object)}), "dtype"),
        "void-dtype": (pickle.dumps({"a.avi": np.zeros(2, "V64")}), "dtype"),
        "huge-binbytes": (HUGE_BYTES, "cannot be read as a pickle"),
        "persistent": (b"\x80\x04P0\n.", "persistent"),
    }


def test_hostile_pickles_are_refused_by_name(tmp_path):
    cases = _refusals()
    assert len(BYTEARRAY_45) == 45
    for name, (data, match) in cases.items():
        p = _write(tmp_path, f"{name}.pkl", data)
        with pytest.raises(InputError, match=match) as err:
            load_starts(p)
        assert f"{name}.pkl" in str(err.value), name


def test_oversized_pickle_is_refused_unread(tmp_path, monkeypatch):
    p = tmp_path / "big.pkl"
    with open(p, "wb") as fh:
        fh.truncate(MAX_PICKLE_BYTES + 1)  # sparse: no disk used
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: (opened.append(a[0]), real_open(*a, **k))[1])
    with pytest.raises(InputError, match="more than the .* bytes a starts pickle may have") as err:
        restricted_pickle_load(p)
    assert "big.pkl" in str(err.value) and str(p) not in map(str, opened)
    small = _write(tmp_path, "small.pkl", pickle.dumps({"a.avi": [1, 2, 3]}))
    with pytest.raises(InputError, match="more than the 10 bytes"):
        restricted_pickle_load(small, max_bytes=10)


def test_hostile_pickles_cost_no_memory(tmp_path):
    """The refusals happen before anything is allocated: a subprocess loading them stays small."""
    a = _write(tmp_path, "a.pkl", BYTEARRAY_45)
    b = _write(tmp_path, "b.pkl", HUGE_BYTES)
    code = ("import sys\nfrom coreecho.train.starts import load_starts\nfrom coreecho.errors import InputError\n"
            "for p in sys.argv[1:]:\n    try:\n        load_starts(p)\n    except InputError as e:\n"
            "        print('refused', type(e).__name__)\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0]\n"
            "print(int(hwm.split()[1]) // 1024)")
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/status")
    out = subprocess.run([sys.executable, "-c", code, str(a), str(b)], capture_output=True, text=True, cwd=str(ROOT),
                         timeout=120, check=True).stdout.split("\n")
    assert out[:2] == ["refused InputError", "refused InputError"] and int(out[2]) < 400, out
