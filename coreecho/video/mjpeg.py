"""MJPEG packet headers: the frame size a JPEG states (:func:`jpeg_sof`) and the check that every packet of a stream
states the first one's (:class:`MjpegSizes`), read without decoding.

Example:
    >>> jpeg_sof(bytes.fromhex("ffd8ffc0000b08007000a0010111"))
    ((112, 160), 2)
"""

from __future__ import annotations

from coreecho.errors import VideoReadError

__all__ = ["jpeg_sof", "MjpegSizes"]


def jpeg_sof(data, steps: list[int] | None = None) -> tuple[tuple[int, int], int] | None:
    """Height and width from a JPEG's start-of-frame marker and its offset, or None; ``steps`` receives the offsets
    of the markers walked over."""
    i, n = 2, len(data)
    while i + 9 <= n:
        if steps is not None:
            steps.append(i)
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return (int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")), i
        i += 2 + length
    return None


class MjpegSizes:
    """Refuses an MJPEG packet whose stated frame size differs from the first packet's (the first that states one).

    The marker walk of :func:`jpeg_sof` reads, at each marker, its first 4 bytes (marker and length) and at the
    start-of-frame marker 9; a packet with the same bytes at the first packet's marker offsets walks the same way to
    the same size, so the walk runs only for packets laid out differently (its tables may differ: their bytes are
    never read)."""

    def __init__(self, source: str):
        self.source, self.first, self._marks = source, None, ()

    def check(self, data, i: int) -> None:
        """``data``: the packet's bytes (any bytes-like object); ``i``: its frame number."""
        if self._marks and len(data) >= self._marks[-1][1]:
            for a, b, ref in self._marks:
                if data[a:b] != ref:
                    break
            else:
                return
        steps: list[int] = []
        found = jpeg_sof(data, steps)
        if found is None:
            return
        size, at = found
        if self.first is None:
            self.first = size
            self._marks = tuple((p, p + 4, bytes(data[p:p + 4])) for p in steps[:-1]) + (
                (at, at + 9, bytes(data[at:at + 9])),)
        elif size != self.first:
            raise VideoReadError(self.source, f"frame {i} size is {size[0]}x{size[1]}, unlike the first frame "
                                              f"({self.first[0]}x{self.first[1]}); videos that change size "
                                              "mid-stream are not supported - export it again at one size")
