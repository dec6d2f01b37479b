"""The inference preparation's fast paths give the same numbers as the plain ones: MJPEG frames decoded from the
packets kept at opening, the MJPEG frame-size check that skips the marker walk, and clips handed over from a loader
worker through :func:`coreecho.engine.items.share_clips`."""

from __future__ import annotations

import fractions

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from coreecho.data.layouts import write_echonet_layout  # noqa: E402
from coreecho.engine.items import share_clips  # noqa: E402
from coreecho.errors import VideoReadError  # noqa: E402
from coreecho.video.containers import PyAVReader  # noqa: E402
from coreecho.video.limits import Limits  # noqa: E402
from coreecho.video.mjpeg import MjpegSizes, jpeg_sof  # noqa: E402


@pytest.fixture(scope="module")
def avi(tmp_path_factory):
    rows = write_echonet_layout(tmp_path_factory.mktemp("echo"), 1, seed=3, splits=(0, 0, 1), n_frames=(60, 80),
                                fps=50, progress=False)
    return rows[0]["path"]


def _all_frames(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def test_mjpeg_reads_from_kept_packets_match_a_sequential_decode(avi):
    ref = _all_frames(avi)
    reader = PyAVReader(avi, Limits())
    assert reader.info.n_frames == len(ref)
    idx = np.array([len(ref) - 1, 0, 7, 7, 3, 40])
    assert reader._packets is not None  # the fast path is the one under test
    assert np.array_equal(reader.read(idx), ref[idx])
    assert np.array_equal(reader.read(np.arange(0, len(ref), 3)), ref[::3])  # a second read, same decoder
    reader.close()
    assert reader._packets is None
    assert np.array_equal(reader.read(idx), ref[idx])  # a closed reader opens the file again


def _jpeg(h: int, w: int, seed: int) -> bytes:
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = w, h, "yuvj420p", fractions.Fraction(1, 25)
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return bytes(ctx.encode(av.VideoFrame.from_ndarray(img, format="rgb24"))[0])


def test_mjpeg_size_check_refuses_a_change_whatever_the_header_layout():
    first, same, other = _jpeg(48, 64, 0), _jpeg(48, 64, 1), _jpeg(32, 64, 2)
    assert jpeg_sof(first)[0] == (48, 64)
    comment = b"\xff\xfe\x00\x05abc"  # one more segment before the frame header: the markers move
    sizes = MjpegSizes("clip.avi")
    sizes.check(first, 0)
    sizes.check(memoryview(same), 1)  # same layout, same size
    sizes.check(same[:2] + comment + same[2:], 2)  # another layout, same size: walked, accepted
    for i, packet in enumerate([other, other[:2] + comment + other[2:]], start=3):
        with pytest.raises(VideoReadError, match=f"frame {i} size is 32x64, unlike the first frame"):
            sizes.check(packet, i)


class _Clips(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> torch.Tensor:
        return share_clips(torch.arange(2 * 5 * 6 * 7 * 3, dtype=torch.int64).reshape(2, 5, 6, 7, 3).to(torch.uint8)
                           + i)


def test_share_clips_crosses_a_loader_worker_intact():
    x = torch.arange(120, dtype=torch.float32).reshape(2, 3, 20)[:, 1:]  # a non-contiguous view
    y = share_clips(x)
    assert y.is_shared() and y.is_contiguous() and torch.equal(y, x)
    assert share_clips(y) is y
    loader = torch.utils.data.DataLoader(_Clips(), batch_size=None, num_workers=1)
    got = list(loader)
    want = [_Clips.__getitem__(None, i) for i in range(3)]
    assert all(torch.equal(g, w) for g, w in zip(got, want))
