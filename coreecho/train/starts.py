"""Fixed clip starts for the official test protocol: pickle (restricted), JSON and CSV files.

The official CoReEcho file ``test_start_indexes.pkl`` is a pickle of ``{"NAME.avi": array([s1, s2, s3])}``.
A pickle can run arbitrary code when loaded, so it is read with :class:`RestrictedUnpickler`, which admits only
numpy arrays, numpy dtypes/scalars and plain builtin containers and numbers; anything else (``os.system``,
``builtins.eval``, ...) raises :class:`~coreecho.errors.InputError` before it is called. The same mapping can be
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

__all__ = ["RestrictedUnpickler", "load_starts", "save_starts", "restricted_pickle_load"]

# (module, name) pairs a starts pickle may reference: numpy array/scalar reconstruction and safe builtins.
_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [(mod, name) for mod in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("_reconstruct", "scalar")]
    + [(mod, "_frombuffer") for mod in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "OrderedDict")]
    + [("builtins", name) for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bytes",
                                       "bytearray", "bool", "complex")]
)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals (numpy arrays and dtypes, builtin containers).

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

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        if (module, name) in _ALLOWED or (module.startswith("numpy") and module.endswith("dtypes")
                                          and name.endswith("DType")):
            return super().find_class(module, name)
        raise InputError(self._source, f"refers to {module}.{name}, which is not allowed in a starts file (only "
                                       "numpy arrays, dtypes and builtin containers/numbers are); refusing to load it")

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise InputError(self._source, "uses persistent references, which are not allowed in a starts file")


def restricted_pickle_load(path: str | os.PathLike) -> Any:
    """Load a pickle file with :class:`RestrictedUnpickler` (never plain ``pickle.load``)."""
    with open(path, "rb") as fh:
        try:
            return RestrictedUnpickler(fh, source=str(path)).load()
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001 - corrupt pickles raise many kinds
            raise InputError(str(path), f"cannot be read as a pickle ({type(err).__name__}: {err})") from err


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
