"""Tests of coreecho.video.transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coreecho.data.phantom import make_phantom
from coreecho.errors import InputError
from coreecho.video.transforms import (
    ECHONET_MEAN,
    ECHONET_STD,
    crop_sector,
    find_sector_bbox,
    normalize,
    pad_to_square,
    prepare_frames,
    resample_fps,
    resample_indices,
    resize_frames,
    to_rgb,
)


def _scanner_screen(t: int = 12, seed: int = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 240x320 'scanner screen': a speckled fan, static burned-in text, a coloured moving ECG strip."""
    rng = np.random.default_rng(seed)
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w]
    apex_x, apex_y, radius = 170, 30, 170
    r = np.hypot(xx - apex_x, yy - apex_y)
    ang = np.degrees(np.arctan2(xx - apex_x, yy - apex_y))
    fan = (r <= radius) & (np.abs(ang) <= 40) & (yy >= apex_y)
    frames = np.zeros((t, h, w, 3), np.uint8)
    speckle = rng.rayleigh(40.0, (t, h, w)).clip(0, 255).astype(np.uint8)
    frames[..., 0] = np.where(fan, speckle, 0)
    frames[..., 1] = frames[..., 0]
    frames[..., 2] = frames[..., 0]
    # static white text (top-left), a static grey depth scale (right edge)
    frames[:, 5:20, 5:80] = 255
    frames[:, 40:200:10, 300:304] = 200
    # ECG strip: a green trace moving along the bottom
    for i in range(t):
        x = np.arange(10, 310)
        y = (222 + 8 * np.sin((x + 9 * i) / 7.0)).astype(int)
        frames[i, y, x] = (30, 220, 60)
        frames[i, y + 1, x] = (30, 220, 60)
    ys, xs = np.nonzero(fan)
    return frames, (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)


def test_to_rgb():
    g = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    assert to_rgb(g).shape == (2, 2, 2, 3) and np.array_equal(to_rgb(g)[..., 2], g)
    assert to_rgb(g[..., None]).shape == (2, 2, 2, 3)
    rgba = np.ones((1, 2, 2, 4), np.float32)
    assert to_rgb(rgba).shape == (1, 2, 2, 3) and to_rgb(rgba).dtype == np.float32
    rgb = np.zeros((1, 2, 2, 3), np.uint8)
    assert to_rgb(rgb) is rgb
    with pytest.raises(InputError, match="shape"):
        to_rgb(np.zeros((1, 2, 2, 2)))


def test_sector_bbox_ignores_text_scale_and_ecg():
    frames, (top, bottom, left, right) = _scanner_screen()
    t, b, l, r = find_sector_bbox(frames)
    assert abs(t - top) <= 3 and abs(b - bottom) <= 3 and abs(l - left) <= 3 and abs(r - right) <= 3
    crop = crop_sector(frames)
    assert crop.shape[1:3] == (b - t, r - l)
    assert crop[:, :, :, 1].astype(int).sum() > 0.9 * frames[:, top:bottom, left:right, 1].astype(int).sum()


def test_sector_bbox_on_large_frames_uses_a_coarse_grid():
    frames, (top, bottom, left, right) = _scanner_screen(t=6)
    big = np.repeat(np.repeat(frames, 3, axis=1), 3, axis=2)  # 720 x 960
    t, b, l, r = find_sector_bbox(big)
    assert abs(t - 3 * top) <= 9 and abs(b - 3 * bottom) <= 9 and abs(l - 3 * left) <= 9 and abs(r - 3 * right) <= 9


def test_sector_bbox_phantom_in_a_larger_canvas():
    frames, _ = make_phantom(ef=50, seed=2, n_frames=24, fps=50, heart_rate=100)
    canvas = np.zeros((24, 300, 400, 3), np.uint8)
    canvas[:, 100:212, 150:262] = frames
    canvas[:, 10:30, 10:120] = 255  # static label
    t, b, l, r = find_sector_bbox(canvas)
    ys, xs = np.nonzero(frames.max(axis=(0, 3)) > 0)
    assert abs(t - (100 + ys.min())) <= 3 and abs(b - (101 + ys.max())) <= 3
    assert abs(l - (150 + xs.min())) <= 3 and abs(r - (151 + xs.max())) <= 3


def test_sector_bbox_single_frame_and_blank():
    frames, _ = _scanner_screen(t=1)
    frames[:, 5:20, 5:80] = 0  # no text: the only bright region is the fan
    frames[..., :] = frames[..., :1]  # and no colour
    t, b, l, r = find_sector_bbox(frames)
    assert b - t > 150 and r - l > 200
    blank = np.zeros((3, 50, 60, 3), np.uint8)
    assert find_sector_bbox(blank) == (0, 50, 0, 60)


def test_crop_sector_errors():
    f = np.zeros((2, 10, 10, 3), np.uint8)
    assert crop_sector(f, bbox=(1, 9, 2, 8)).shape == (2, 8, 6, 3)
    with pytest.raises(InputError, match="bbox"):
        crop_sector(f, bbox=(5, 5, 0, 10))
    with pytest.raises(InputError, match="uint8"):
        crop_sector(f.astype(np.float32))
    with pytest.raises(InputError, match="shape"):
        find_sector_bbox(np.zeros((10, 10, 3), np.uint8))


def test_pad_to_square():
    f = np.ones((2, 3, 7, 3), np.uint8)
    out = pad_to_square(f)
    assert out.shape == (2, 7, 7, 3)
    assert out[:, :2].sum() == 0 and out[:, 2:5].min() == 1 and out[:, 5:].sum() == 0
    assert pad_to_square(np.ones((1, 4, 4, 3))) .shape == (1, 4, 4, 3)
    assert pad_to_square(np.ones((1, 6, 3, 3), np.uint8)).shape == (1, 6, 6, 3)


def test_resize_frames():
    const = np.full((3, 300, 200, 3), 77, np.uint8)
    out = resize_frames(const, 112)
    assert out.shape == (3, 112, 112, 3) and out.dtype == np.uint8 and (out == 77).all()
    same = np.zeros((1, 112, 112, 3), np.uint8)
    assert resize_frames(same, 112) is same
    # antialiasing: a 1-pixel checkerboard averages to mid-grey instead of aliasing
    checker = ((np.indices((448, 448)).sum(0) % 2) * 255).astype(np.uint8)
    small = resize_frames(np.repeat(checker[None, ..., None], 3, -1), 112)
    assert abs(float(small.mean()) - 127.5) < 2 and small.std() < 3
    assert resize_frames(const, (50, 60)).shape == (3, 50, 60, 3)
    with pytest.raises(InputError):
        resize_frames(const, 0)


def test_prepare_frames_passthrough_is_bit_exact():
    frames, _ = make_phantom(ef=40, seed=0, n_frames=20, fps=50, heart_rate=110)
    before = frames.copy()
    out = prepare_frames(frames, size=112)
    assert out is frames and np.array_equal(out, before)
    out2 = prepare_frames(frames, size=112, crop_sector=False)
    assert out2 is frames


def test_prepare_frames_crops_pads_resizes():
    frames, _ = _scanner_screen(t=6)
    out = prepare_frames(frames, size=112)
    assert out.shape == (6, 112, 112, 3) and out.dtype == np.uint8
    assert out[:, :, :, 1].astype(int).sum() > 0
    # without the crop the text block survives in a corner; with it, it is gone
    nocrop = prepare_frames(frames, size=112, crop_sector=False)
    assert nocrop.shape == (6, 112, 112, 3)
    assert nocrop[:, 17:20, 3:27].min() > 200  # the text (top-left) after padding/resizing
    assert out[:, :20, :30].max() < 200  # the crop removed it
    grey = prepare_frames(frames[..., 0], size=64)
    assert grey.shape == (6, 64, 64, 3)


def test_normalize_matches_numpy_reference():
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (2, 5, 4, 6, 3), dtype=np.uint8)
    x = normalize(clips, ECHONET_MEAN, ECHONET_STD)
    assert x.dtype == torch.float32 and tuple(x.shape) == (2, 3, 5, 4, 6)
    # reference: the official pipeline on one clip, float32 array with in-place float64 constants
    mean = np.array([0.12741163, 0.1279413, 0.12912785]) * 255
    std = np.array([0.19557191, 0.19562256, 0.1965878]) * 255
    for k in range(2):
        v = clips[k].transpose(3, 0, 1, 2).astype(np.float32)  # (C, T, H, W)
        v -= mean.reshape(3, 1, 1, 1)
        v /= std.reshape(3, 1, 1, 1)
        assert np.array_equal(x[k].numpy(), v)
    assert tuple(normalize(clips[0]).shape) == (1, 3, 5, 4, 6)
    assert torch.equal(normalize(torch.from_numpy(clips)), x)
    zero = normalize(np.zeros((1, 1, 1, 1, 3), np.uint8))
    assert np.allclose(zero.flatten().numpy(), -mean / std, rtol=1e-6)
    with pytest.raises(InputError, match="shape"):
        normalize(np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(InputError, match="std"):
        normalize(clips, ECHONET_MEAN, (1.0, 0.0, 1.0))


def test_resample():
    assert resample_indices(10, 50, 25).tolist() == [0, 2, 4, 6, 8]
    assert resample_indices(4, 25, 50).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert resample_indices(5, 30, 30).tolist() == [0, 1, 2, 3, 4]
    assert len(resample_indices(100, 47, 50)) == 106
    f = np.arange(10)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    assert resample_fps(f, 50, 50) is f
    assert resample_fps(f, 100, 50)[:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8]
    with pytest.raises(InputError, match="positive"):
        resample_indices(10, 0, 50)
    with pytest.raises(InputError, match="positive"):
        resample_indices(10, 50, float("nan"))
    with pytest.raises(InputError):
        resample_indices(0, 50, 25)
