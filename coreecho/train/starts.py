"""Fixed clip starts for the official test protocol: pickle (restricted), JSON and CSV files.

The official CoReEcho file ``test_start_indexes.pkl`` is a pickle of ``{"NAME.avi": array([s1, s2, s3])}``.
A pickle can run arbitrary code when loaded, so it is read with :class:`RestrictedUnpickler`, which admits only
what that file holds: dicts, lists, tuples, strings and numbers (pickle opcodes, no callable) and small numeric
numpy arrays (through checked stand-ins for numpy's reconstruction functions); anything else (``os.system``,
``builtins.eval``, ``builtins.bytearray``, ...) raises :class:`~coreecho.errors.InputError` naming the file
before it is called, and a file over :data:`MAX_PICKLE_BYTES` is refused unread. The same mapping can be
stored as JSON (``{"NAME.avi": [s1, s2, s3]}``) or CSV (a ``name`` column and ``start*`` columns, or one row per
clip), which :func:`save_starts` writes.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "starts.json")
    >>> _ = save_starts(path, {"a.avi": [0, 10, 20]})
    >>> load_starts(path)["a.avi"].tolist()
    [0, 10, 20]
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from coreecho.errors import InputError

__all__ = ["RestrictedUnpickler", "load_starts", "save_starts", "restricted_pickle_load", "MAX_PICKLE_BYTES"]

#: Largest starts pickle read (the official ``test_start_indexes.pkl``, 1 276 entries, is about 200 KB).
MAX_PICKLE_BYTES: int = 16 * 1024**2
#: Largest array (elements) a starts pickle may hold; an entry has a few starts.
_MAX_ELEMENTS = 4096
_NUMERIC_KINDS = "biuf"


def _refuse(source: str, what: str) -> InputError:
    return InputError(source, f"{what}; a starts file holds only a mapping of video names to small integer "
                              "arrays or lists, so it is refused")


def _checked_dtype(source: str, value: Any) -> np.dtype:
    if not isinstance(value, np.dtype) or value.kind not in _NUMERIC_KINDS or value.itemsize > 16 or \
            value.fields is not None or value.subdtype is not None:
        raise _refuse(source, f"holds an array of dtype {value!r} (only plain integer, float or bool arrays are "
                              "allowed)")
    return value


class _CheckedArray(np.ndarray):
    """What the unpickler builds instead of a bare ndarray: its pickled state is checked before it is set."""

    _source = "pickle"

    def __setstate__(self, state: Any) -> None:  # noqa: D105
        src = self._source
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _refuse(src, "holds a malformed numpy array state")
        shape, dtype, data = state[-4], state[-3], state[-1]
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and 0 <= n <= _MAX_ELEMENTS for n in shape):
            raise _refuse(src, f"holds an array of shape {str(shape)[:60]}")
        count = int(np.prod(shape, dtype=np.int64))
        dtype = _checked_dtype(src, dtype)
        if count > _MAX_ELEMENTS or not isinstance(data, (bytes, bytearray)) or len(data) != count * dtype.itemsize:
            raise _refuse(src, f"holds an array of {count} elements whose data does not match its shape")
        super().__setstate__(state)


def _safe_globals(source: str) -> dict[str, Any]:
    """The only callables a starts pickle may reach, each a checked stand-in for what numpy's pickles name."""

    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not np.ndarray or shape != (0,) or dtype not in (b"b", "b"):
            raise _refuse(source, "builds a numpy array in a way numpy's own pickles never do")
        arr = np.ndarray.__new__(_CheckedArray, (0,), np.uint8)
        arr._source = source
        return arr

    def dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
        if not isinstance(spec, str) or len(spec) > 4:
            raise _refuse(source, f"asks for the dtype {str(spec)[:40]!r}")
        try:
            return _checked_dtype(source, np.dtype(spec))
        except TypeError as err:
            raise _refuse(source, f"asks for the dtype {spec!r} ({err})") from None

    def frombuffer(buf: Any, dt: Any, shape: Any, order: Any) -> np.ndarray:
        dt = _checked_dtype(source, dt)
        if not isinstance(buf, (bytes, bytearray)) or not isinstance(shape, tuple) or \
                not all(isinstance(n, int) and 0 <= n <= _MAX_ELEMENTS for n in shape) or order not in ("C", "F"):
            raise _refuse(source, "holds a malformed numpy array buffer")
        count = int(np.prod(shape, dtype=np.int64))
        if count > _MAX_ELEMENTS or len(buf) != count * dt.itemsize:
            raise _refuse(source, f"holds an array of {count} elements whose data does not match its shape")
        return np.frombuffer(bytes(buf), dtype=dt).reshape(shape, order=order).copy()

    def scalar(dt: Any, data: Any) -> Any:
        dt = _checked_dtype(source, dt)
        if not isinstance(data, bytes) or len(data) != dt.itemsize:
            raise _refuse(source, "holds a malformed numpy scalar")
        return np.frombuffer(data, dtype=dt)[0]

    def encode(text: Any, encoding: Any = "latin1") -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise _refuse(source, "calls _codecs.encode with something other than latin-1 text")
        return text.encode("latin1")

    table: dict[str, Any] = {"numpy.ndarray": np.ndarray, "numpy.dtype": dtype, "_codecs.encode": encode}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[f"{mod}._reconstruct"] = reconstruct
        table[f"{mod}.scalar"] = scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        table[f"{mod}._frombuffer"] = frombuffer
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for starts files: containers (dict, list, tuple) and numbers come from pickle's own opcodes; the
    only globals it resolves are checked stand-ins for numpy's array, dtype and scalar reconstruction (and
    ``_codecs.encode`` of latin-1 text, which protocol-2 pickles use for array bytes). No builtin, no other callable:
    ``os.system``, ``builtins.eval``, ``builtins.bytearray`` (``bytearray(3.5e9)`` would allocate 3.5 GB) and
    everything else raise :class:`~coreecho.errors.InputError` naming the file before anything is called. Arrays are
    limited to a few thousand numeric elements whose data must match their shape.

    Example:
        >>> import io, pickle
        >>> RestrictedUnpickler(io.BytesIO(pickle.dumps({"a": [1, 2]}))).load()
        {'a': [1, 2]}
        >>> bad = b"cos\\nsystem\\n(S'echo hi'\\ntR."
        >>> RestrictedUnpickler(io.BytesIO(bad)).load()  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        InputError: pickle: refers to os.system, which is not allowed ...
    """

    def __init__(self, file: Any, *, source: str = "pickle"):
        super().__init__(file)
        self._source = source
        self._globals = _safe_globals(source)

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        found = self._globals.get(f"{module}.{name}")
        if found is not None:
            return found
        raise InputError(self._source, f"refers to {module}.{name}, which is not allowed in a starts file (only "
                                       "numpy arrays of numbers, dicts, lists, tuples, strings and numbers are); "
                                       "refusing to load it")

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise InputError(self._source, "uses persistent references, which are not allowed in a starts file")


def restricted_pickle_load(path: str | os.PathLike, *, max_bytes: int = MAX_PICKLE_BYTES) -> Any:
    """Load a pickle file with :class:`RestrictedUnpickler` (never plain ``pickle.load``), refusing files over
    ``max_bytes`` before reading them."""
    src = str(path)
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            raise InputError(src, f"is {size} bytes, more than the {max_bytes} bytes a starts pickle may have (the "
                                  "official file is about 200 KB); refusing to read it")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as err:
        raise InputError(src, f"cannot be read ({err})") from err
    if len(data) > max_bytes:
        raise InputError(src, f"is more than the {max_bytes} bytes a starts pickle may have; refusing to read it")
    try:
        out = RestrictedUnpickler(io.BytesIO(data), source=src).load()
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - corrupt pickles raise many kinds
        raise InputError(src, f"cannot be read as a pickle ({type(err).__name__}: {str(err)[:200]})") from err
    return _plain(out)


def _plain(obj: Any) -> Any:
    """The loaded structure with checked arrays turned back into plain ndarrays."""
    if isinstance(obj, _CheckedArray):
        return np.array(obj.view(np.ndarray))
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _as_starts(source: str, data: Any) -> dict[str, np.ndarray]:
    if not isinstance(data, Mapping):
        raise InputError(source, f"expected a mapping from video name to starts, found {type(data).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, value in data.items():
        arr = np.asarray(value)
        if not isinstance(key, str) or arr.ndim > 1 or arr.size == 0 or arr.dtype == object:
            raise InputError(source, f"entry {key!r}: expected a video name mapped to a non-empty list of integer "
                                     f"starts, found {value!r}")
        arr = arr.reshape(-1)
        if arr.dtype.kind == "f" and np.all(np.equal(np.mod(arr, 1), 0)):
            arr = arr.astype(np.int64)
        if arr.dtype.kind not in "iu" or arr.min() < 0:
            raise InputError(source, f"entry {key!r}: starts must be non-negative integers, found {arr.tolist()}")
        out[key] = arr.astype(np.int64)
    if not out:
        raise InputError(source, "contains no entry")
    return out


def _read_csv(path: Path) -> dict[str, list[int]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in reader.fieldnames or []]
        name_col = next((c for c in ("name", "FileName", "filename", "video") if c in cols), None)
        start_cols = [c for c in cols if c.lower().startswith("start")]
        if name_col is None or not start_cols:
            raise InputError(str(path), f"expected a 'name' (or FileName) column and 'start...' columns, found "
                                        f"{', '.join(cols) or 'no header'}")
        out: dict[str, list[int]] = {}
        for i, row in enumerate(reader):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            values = []
            for c in start_cols:
                for part in row[c].replace(";", " ").split():
                    try:
                        values.append(int(part))
                    except ValueError:
                        raise InputError(str(path), f"row {i + 2}, column {c}: {part!r} is not an integer") from None
            out.setdefault(row[name_col], []).extend(values)
    return out


def load_starts(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a starts file (``.pkl``/``.pickle`` restricted, ``.json``, ``.csv``) into ``{name: int64 array}``.

    Raises:
        InputError: unreadable file, a pickle referring to anything outside the allow-list, or entries that are not
            lists of non-negative integers.

    Example:
        >>> starts = load_starts("test_start_indexes.pkl")  # doctest: +SKIP
        >>> len(starts), starts["0X1005D03EED19C65B.avi"].shape  # doctest: +SKIP
        (1276, (3,))
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(str(p), "starts file not found")
    suffix = p.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        data: Any = restricted_pickle_load(p)
    elif suffix == ".json":
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(str(p), f"cannot be read as JSON ({err})") from err
    elif suffix == ".csv":
        data = _read_csv(p)
    else:
        raise InputError(str(p), "unknown starts file type; use .pkl (official), .json or .csv")
    return _as_starts(str(p), data)


def save_starts(path: str | os.PathLike, starts: Mapping[str, Sequence[int]]) -> Path:
    """Write starts as ``.json`` or ``.csv`` (``name,start_0,start_1,...``), or ``.pkl`` (numpy arrays, like the
    official file).

    Example:
        >>> import tempfile, os
        >>> p = save_starts(os.path.join(tempfile.mkdtemp(), "s.csv"), {"v.avi": [1, 2, 3]})
        >>> p.read_text().splitlines()
        ['name,start_0,start_1,start_2', 'v.avi,1,2,3']
    """
    p = Path(path)
    clean = _as_starts(str(p), dict(starts))
    suffix = p.suffix.lower()
    if suffix == ".json":
        p.write_text(json.dumps({k: v.tolist() for k, v in clean.items()}, indent=1) + "\n")
    elif suffix == ".csv":
        width = max(v.size for v in clean.values())
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["name"] + [f"start_{i}" for i in range(width)])
        for k, v in clean.items():
            writer.writerow([k] + v.tolist() + [""] * (width - v.size))
        p.write_text(buf.getvalue())
    elif suffix in (".pkl", ".pickle"):
        with open(p, "wb") as fh:
            pickle.dump(dict(clean), fh, protocol=4)
    else:
        raise InputError(str(p), "unknown starts file type; use .json, .csv or .pkl")
    return p
