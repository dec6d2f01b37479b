"""Grey levels of DICOM pixels: the attributes that map stored values to display (rescale, modality LUT, VOI window
or LUT, palette), checked before use, and the mapping of monochrome pixels to 8-bit grey.

Each attribute is read as the standard defines it: ``RescaleSlope`` and ``RescaleIntercept`` hold one number,
``WindowCenter``/``WindowWidth`` one or more (the first pair is used), a LUT descriptor three. A value that is not a
number, NaN, infinite, multi-valued where one is allowed, a ``RescaleSlope`` of 0 or a ``WindowWidth`` below or at
0 is a :class:`~coreecho.errors.VideoReadError` naming the file and the attribute, raised when the file is opened
(before any pixel is decoded), never a blank or saturated video that still gets an EF.

Example:
    >>> import numpy as np
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.WindowCenter, ds.WindowWidth = 100, 0
    >>> check_grey_attributes("a.dcm", ds, "MONOCHROME2")
    Traceback (most recent call last):
    ...
    coreecho.errors.VideoReadError: a.dcm: WindowWidth = 0 is invalid: a VOI window must be wider than 0 ...
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from coreecho.errors import VideoReadError

__all__ = ["check_grey_attributes", "monochrome_to_grey", "palette_bits", "grey_values"]

_SINGLE = ("RescaleSlope", "RescaleIntercept")
_MULTI = ("WindowCenter", "WindowWidth")
_PALETTE = ("Red", "Green", "Blue")


def grey_values(p: Path | str, ds: Any, key: str, *, multi: bool = False) -> list[float] | None:
    """The finite numbers of attribute ``key`` (``None`` when absent or empty).

    Raises:
        VideoReadError: naming the file and ``key``: unreadable, not a number, NaN/infinite, or several values where
            the standard allows one (``multi=False``).
    """
    try:
        if key not in ds:
            return None
        value = ds[key].value
    except Exception as exc:  # noqa: BLE001 - pydicom converts raw values lazily and raises many kinds
        raise VideoReadError(str(p), f"{key} cannot be read ({type(exc).__name__}: {str(exc)[:120]})") from exc
    if value is None or (isinstance(value, (str, bytes)) and not value.strip()):
        return None
    values = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    if not values:
        return None
    if not multi and len(values) != 1:
        raise VideoReadError(str(p), f"{key} holds {len(values)} values ({', '.join(map(str, values[:4]))}), but "
                                     "DICOM allows exactly one; the file's grey levels cannot be trusted - export it "
                                     "again")
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise VideoReadError(str(p), f"{key} = {str(v)[:40]!r} is not a number; the file's grey levels cannot "
                                         "be trusted - export it again") from None
        if not math.isfinite(f):
            raise VideoReadError(str(p), f"{key} = {v} is not a finite number; the file's grey levels cannot be "
                                         "trusted - export it again")
        out.append(f)
    return out


def _descriptor(p: Path | str, ds: Any, key: str) -> tuple[int, int, int]:
    values = grey_values(p, ds, key, multi=True)
    if values is None or len(values) != 3 or any(v != int(v) for v in values):
        raise VideoReadError(str(p), f"{key} must hold three integers (entries, first value mapped, bits), found "
                                     f"{values}")
    entries, first, bits = (int(v) for v in values)
    if not 0 <= entries <= 65535 or not 1 <= bits <= 16:
        raise VideoReadError(str(p), f"{key} = {values} is invalid (entries 0..65535, 1..16 bits per entry)")
    return entries or 65536, first, bits


def _check_lut_items(p: Path | str, ds: Any, seq_key: str) -> None:
    try:
        seq = ds[seq_key].value if seq_key in ds else None
    except Exception as exc:  # noqa: BLE001
        raise VideoReadError(str(p), f"{seq_key} cannot be read ({type(exc).__name__})") from exc
    for i, item in enumerate(seq or []):
        entries, _, _ = _descriptor(p, item, "LUTDescriptor")
        data = item.get("LUTData")
        n = len(data) if data is not None and not isinstance(data, (int, float)) else (1 if data is not None else 0)
        if isinstance(data, (bytes, bytearray)):
            n //= 2
        if n < entries:
            raise VideoReadError(str(p), f"{seq_key}[{i}].LUTData holds {n} entries, but its LUTDescriptor declares "
                                         f"{entries}")


def check_grey_attributes(p: Path | str, ds: Any, photometric: str) -> None:
    """Check every attribute that maps ``ds``'s stored pixels to grey levels or colours (see the module docstring).

    Raises:
        VideoReadError: naming the file and the attribute.
    """
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        for key in _SINGLE:
            grey_values(p, ds, key)
        slope = grey_values(p, ds, "RescaleSlope")
        if slope is not None and slope[0] == 0.0:
            raise VideoReadError(str(p), "RescaleSlope = 0 maps every pixel to one value (a blank video); export "
                                         "it again")
        centers = grey_values(p, ds, "WindowCenter", multi=True)
        widths = grey_values(p, ds, "WindowWidth", multi=True)
        for w in widths or []:
            if w <= 0.0:
                raise VideoReadError(str(p), f"WindowWidth = {w:g} is invalid: a VOI window must be wider than 0 "
                                             "(DICOM requires at least 1); export it again")
        if centers is not None and widths is not None and len(centers) != len(widths):
            raise VideoReadError(str(p), f"WindowCenter holds {len(centers)} values but WindowWidth {len(widths)}; "
                                         "they come in pairs")
        for seq in ("ModalityLUTSequence", "VOILUTSequence"):
            _check_lut_items(p, ds, seq)
    elif photometric == "PALETTE COLOR":
        bits = {_descriptor(p, ds, f"{c}PaletteColorLookupTableDescriptor")[2] for c in _PALETTE}
        if not bits <= {8, 16}:
            raise VideoReadError(str(p), f"the palette LUT descriptors declare {sorted(bits)} bits per entry; DICOM "
                                         "allows 8 or 16")


def palette_bits(p: Path | str, ds: Any) -> int:
    """Bits per entry of the (checked) palette LUTs."""
    return _descriptor(p, ds, "RedPaletteColorLookupTableDescriptor")[2]


def monochrome_to_grey(p: Path | str, ds: Any, arr: np.ndarray) -> tuple[np.ndarray, str]:
    """8-bit grey ``[T, H, W]`` from monochrome stored values (before any MONOCHROME1 inversion) and how it was
    mapped: 8-bit pixels as stored; otherwise the modality transform (LUT or rescale), then the first VOI window,
    the VOI LUT, or the range of the decoded frames."""
    if arr.dtype == np.uint8:
        return arr, "as stored (8-bit)"
    src = str(p)
    try:
        if "ModalityLUTSequence" in ds:
            from pydicom.pixels import apply_modality_lut  # noqa: PLC0415

            x = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
        else:
            slope = (grey_values(p, ds, "RescaleSlope") or [1.0])[0]
            intercept = (grey_values(p, ds, "RescaleIntercept") or [0.0])[0]
            x = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        centers = grey_values(p, ds, "WindowCenter", multi=True)
        widths = grey_values(p, ds, "WindowWidth", multi=True)
        if centers and widths:
            c, w = centers[0], widths[0]
            lo, hi, how = c - w / 2.0, c + w / 2.0, f"window {c:g}/{w:g}"
        elif "VOILUTSequence" in ds:
            from pydicom.pixels import apply_voi_lut  # noqa: PLC0415

            bits = _descriptor(p, ds["VOILUTSequence"][0], "LUTDescriptor")[2]
            x = np.asarray(apply_voi_lut(np.rint(x).astype(np.int64), ds, prefer_lut=True), dtype=np.float32)
            lo, hi, how = 0.0, float(2**bits - 1), f"VOI LUT ({bits} bits)"
        else:
            lo, hi = float(x.min()), float(x.max())
            how = f"min-max {lo:g}..{hi:g} of the decoded frames"
    except VideoReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom's LUT functions raise many kinds on broken tables
        raise VideoReadError(src, f"its modality/VOI lookup table cannot be applied ({type(exc).__name__}: "
                                  f"{str(exc)[:160]})") from exc
    if not (math.isfinite(lo) and math.isfinite(hi)) or not np.isfinite(x).all():
        raise VideoReadError(src, "RescaleSlope/RescaleIntercept map the stored values outside the finite range; "
                                  "the file's grey levels cannot be trusted - export it again")
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.rint((x - lo) * scale), 0, 255).astype(np.uint8), how
