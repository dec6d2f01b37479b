"""A small reader and writer for MetaImage files (``.mhd`` header + ``.raw`` data, or ``.mha``).

MetaImage is the format of the first CAMUS release (``patientNNNN_4CH_sequence.mhd`` + ``.raw``). The header
is plain text, one ``Key = Value`` per line; the keys used here are:

* ``NDims`` and ``DimSize`` (fastest-varying axis first: x, y, then z or time),
* ``ElementType`` (``MET_UCHAR``, ``MET_CHAR``, ``MET_USHORT``, ``MET_SHORT``, ``MET_UINT``, ``MET_INT``,
  ``MET_ULONG``, ``MET_LONG``, ``MET_ULONG_LONG``, ``MET_LONG_LONG``, ``MET_FLOAT``, ``MET_DOUBLE``),
* ``ElementNumberOfChannels`` (interleaved channels, default 1),
* ``BinaryDataByteOrderMSB`` / ``ElementByteOrderMSB`` (big-endian data when ``True``),
* ``CompressedData`` (zlib-compressed data when ``True``),
* ``HeaderSize`` (bytes to skip at the start of the data file; ``-1``: the data is the file's tail),
* ``ElementSpacing`` / ``ElementSize``, ``Offset``,
* ``ElementDataFile`` (``LOCAL`` for data right after the header, as ``.mha`` files do, or a file name relative
  to the header; lists of slice files and ``LIST`` are not supported).

Arrays come back in C order with the axes reversed relative to ``DimSize`` (``[t, y, x]`` for a 2D+time
sequence), the convention of SimpleITK's ``GetArrayFromImage``.

Example:
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)  # [t, y, x]
    >>> _ = write_mhd(os.path.join(d, "seq.mhd"), a, spacing=(0.3, 0.3, 1.0))
    >>> img = read_mhd(os.path.join(d, "seq.mhd"))
    >>> bool((img.array == a).all()), img.spacing
    (True, (0.3, 0.3, 1.0))
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coreecho.errors import DatasetError

__all__ = ["MetaImage", "read_mhd", "read_mhd_header", "write_mhd", "ELEMENT_TYPES"]

#: MetaImage element types and their numpy dtypes (native byte order; the header's byte order applies).
ELEMENT_TYPES: dict[str, str] = {
    "MET_UCHAR": "u1", "MET_CHAR": "i1", "MET_USHORT": "u2", "MET_SHORT": "i2", "MET_UINT": "u4", "MET_INT": "i4",
    "MET_ULONG": "u8", "MET_LONG": "i8", "MET_ULONG_LONG": "u8", "MET_LONG_LONG": "i8", "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}
_TYPE_OF_DTYPE = {"u1": "MET_UCHAR", "i1": "MET_CHAR", "u2": "MET_USHORT", "i2": "MET_SHORT", "u4": "MET_UINT",
                  "i4": "MET_INT", "u8": "MET_ULONG_LONG", "i8": "MET_LONG_LONG", "f4": "MET_FLOAT", "f8": "MET_DOUBLE"}
_MAX_HEADER_BYTES = 64 * 1024


@dataclass
class MetaImage:
    """An image read by :func:`read_mhd`.

    Example:
        >>> import numpy as np
        >>> MetaImage(np.zeros((2, 3, 4), np.uint8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)).array.shape
        (2, 3, 4)

    Attributes:
        array: the voxels, axes reversed relative to ``DimSize`` (``[t, y, x]`` or ``[t, y, x, c]``).
        spacing: ``ElementSpacing`` in header order (x first), or ones.
        offset: ``Offset`` in header order, or zeros.
        header: every header field as a string.
        path: the header file.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    offset: tuple[float, ...]
    header: dict[str, str] = field(default_factory=dict)
    path: Path | None = None


def _bool(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def _numbers(value: str, kind: type, key: str, path: Path) -> list:
    try:
        return [kind(v) for v in value.split()]
    except ValueError:
        raise DatasetError(f"{path}: header field {key} = {value!r} is not a list of numbers") from None


def read_mhd_header(path: str | os.PathLike) -> tuple[dict[str, str], int]:
    """Header fields of a MetaImage file and the byte offset where the header ends.

    Reading stops after ``ElementDataFile``, which must be the last field.

    Raises:
        DatasetError: the file is missing, is not a MetaImage header, or has no ``ElementDataFile``.

    Example:
        >>> read_mhd_header("patient0001_4CH_sequence.mhd")[0]["DimSize"]  # doctest: +SKIP
        '549 778 20'
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: MetaImage header not found")
    header: dict[str, str] = {}
    with open(p, "rb") as fh:
        consumed = 0
        while consumed < _MAX_HEADER_BYTES:
            raw = fh.readline()
            if not raw:
                break
            consumed += len(raw)
            line = raw.decode("latin-1").strip()
            if not line:
                continue
            if "=" not in line:
                raise DatasetError(f"{p}: not a MetaImage header (line {line[:40]!r} has no 'Key = Value')")
            key, value = (s.strip() for s in line.split("=", 1))
            header[key] = value
            if key == "ElementDataFile":
                return header, consumed
    raise DatasetError(f"{p}: MetaImage header has no ElementDataFile field (found {', '.join(header) or 'nothing'})")


def read_mhd(path: str | os.PathLike) -> MetaImage:
    """Read a MetaImage (``.mhd`` + data file, or ``.mha``).

    Args:
        path: the header file.

    Returns:
        A :class:`MetaImage`.

    Raises:
        DatasetError: a missing header or data file, an unsupported element type or data layout, or a data
            file whose size does not match ``DimSize``.

    Example:
        >>> img = read_mhd("database/patient0001/patient0001_4CH_sequence.mhd")  # doctest: +SKIP
        >>> img.array.shape  # doctest: +SKIP
        (20, 778, 549)
    """
    p = Path(path)
    header, header_end = read_mhd_header(p)
    for key in ("DimSize", "ElementType"):
        if key not in header:
            raise DatasetError(f"{p}: MetaImage header misses {key}")
    dims = _numbers(header["DimSize"], int, "DimSize", p)
    ndims = int(header.get("NDims", len(dims)))
    if len(dims) != ndims or min(dims, default=0) < 1:
        raise DatasetError(f"{p}: DimSize {header['DimSize']!r} does not give {ndims} positive sizes")
    etype = header["ElementType"].upper()
    if etype not in ELEMENT_TYPES:
        raise DatasetError(f"{p}: unsupported ElementType {etype}; supported: {', '.join(ELEMENT_TYPES)}")
    channels = int(header.get("ElementNumberOfChannels", "1"))
    big = _bool(header.get("BinaryDataByteOrderMSB", header.get("ElementByteOrderMSB", "False")))
    dtype = np.dtype(ELEMENT_TYPES[etype]).newbyteorder(">" if big else "<")
    count = int(np.prod(dims)) * channels
    source = header["ElementDataFile"]
    if source.upper() == "LOCAL":
        data_path, skip = p, header_end
    elif source.upper().startswith("LIST") or "%" in source or len(source.split()) > 1:
        raise DatasetError(f"{p}: ElementDataFile {source!r} (several data files) is not supported")
    else:
        data_path = (p.parent / source)
        if not data_path.is_file():
            raise DatasetError(f"{p}: data file {data_path.name} not found next to the header")
        skip = int(header.get("HeaderSize", "0"))
    raw = data_path.read_bytes()[skip:] if skip >= 0 else data_path.read_bytes()
    if _bool(header.get("CompressedData", "False")):
        try:
            raw = zlib.decompress(raw)
        except zlib.error as err:
            raise DatasetError(f"{data_path}: cannot decompress the zlib data ({err})") from err
    need = count * dtype.itemsize
    if skip < 0:
        raw = raw[len(raw) - need:] if len(raw) >= need else raw
    if len(raw) < need:
        raise DatasetError(f"{data_path}: holds {len(raw)} bytes of data, DimSize {dims} x {channels} channel(s) of "
                           f"{etype} needs {need}; the file is truncated or the header is wrong")
    arr = np.frombuffer(raw, dtype=dtype, count=count).astype(dtype.newbyteorder("="))
    shape = tuple(reversed(dims)) + ((channels,) if channels > 1 else ())
    spacing = header.get("ElementSpacing", header.get("ElementSize"))
    spacing_v = tuple(_numbers(spacing, float, "ElementSpacing", p)) if spacing else (1.0,) * ndims
    offset = header.get("Offset", header.get("Origin", header.get("Position")))
    offset_v = tuple(_numbers(offset, float, "Offset", p)) if offset else (0.0,) * ndims
    return MetaImage(arr.reshape(shape), spacing_v, offset_v, header, p)


def write_mhd(path: str | os.PathLike, array: Any, *, spacing: Sequence[float] | None = None,
              offset: Sequence[float] | None = None, compress: bool = False, channels: bool = False) -> Path:
    """Write an array as ``NAME.mhd`` + ``NAME.raw`` (or one ``.mha`` file with the data inline).

    Args:
        path: the header file (``.mhd`` or ``.mha``).
        array: voxels in C order, axes reversed relative to the header (``[t, y, x]``).
        spacing: ``ElementSpacing`` in header order (x first).
        offset: ``Offset`` in header order.
        compress: zlib-compress the data (``CompressedData = True``).
        channels: the last axis holds interleaved channels (``ElementNumberOfChannels``).

    Returns:
        The header path.

    Example:
        >>> import numpy as np
        >>> write_mhd("/tmp/a.mhd", np.zeros((3, 4, 5), np.uint8))  # doctest: +SKIP
        PosixPath('/tmp/a.mhd')
    """
    p = Path(path)
    a = np.ascontiguousarray(np.asarray(array))
    code = a.dtype.str[1:]
    if code not in _TYPE_OF_DTYPE:
        raise DatasetError(f"{p}: cannot write dtype {a.dtype} as MetaImage; use one of "
                           f"{', '.join(sorted(_TYPE_OF_DTYPE))}")
    spatial = a.shape[:-1] if channels else a.shape
    dims = list(reversed(spatial))
    n = len(dims)
    sp = [1.0] * n if spacing is None else [float(v) for v in spacing]
    off = [0.0] * n if offset is None else [float(v) for v in offset]
    if len(sp) != n or len(off) != n:
        raise DatasetError(f"{p}: spacing/offset need {n} values, got {len(sp)} and {len(off)}")
    data = a.astype(a.dtype.newbyteorder("<")).tobytes()
    if compress:
        data = zlib.compress(data)
    inline = p.suffix.lower() == ".mha"
    raw_name = p.with_suffix(".zraw" if compress else ".raw").name
    lines = [
        "ObjectType = Image",
        f"NDims = {n}",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        f"CompressedData = {'True' if compress else 'False'}",
    ]
    if compress:
        lines.append(f"CompressedDataSize = {len(data)}")
    lines += [
        f"Offset = {' '.join(f'{v:g}' for v in off)}",
        f"ElementSpacing = {' '.join(f'{v:g}' for v in sp)}",
        f"DimSize = {' '.join(str(d) for d in dims)}",
    ]
    if channels:
        lines.append(f"ElementNumberOfChannels = {a.shape[-1]}")
    lines += [f"ElementType = {_TYPE_OF_DTYPE[code]}", f"ElementDataFile = {'LOCAL' if inline else raw_name}"]
    text = ("\n".join(lines) + "\n").encode("latin-1")
    p.parent.mkdir(parents=True, exist_ok=True)
    if inline:
        p.write_bytes(text + data)
    else:
        p.write_bytes(text)
        (p.parent / raw_name).write_bytes(data)
    return p
