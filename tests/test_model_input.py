"""uint8 to the device: the model input made from handed-over uint8 clips (and crop offsets) is bit-identical to
the float path of 0.2 (normalise in the worker, float64 arithmetic, pad-and-crop through a padded copy).

The reference is reconstructed here from its definition: ``normalize_reference`` (the float64 arithmetic of 0.2, kept in
``coreecho.video.model_input``) and a zero-pad-then-crop written below with the same draws as 0.2's augmentation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from coreecho import CoReEcho
from coreecho.data.echonet import EchoNetDynamic
from coreecho.data.layouts import write_echonet_layout
from coreecho.data.pipelined import batch_clips
from coreecho.engine import VideoItems, stream
from coreecho.models.config import PreprocessConfig
from coreecho.seeding import rng as seeded_rng
from coreecho.video import open_video
from coreecho.video.augment import draw_offsets, pad_and_crop
from coreecho.video.model_input import _lookup_device, normalize_reference, pixel_table, to_model_input
from coreecho.video.pipeline import ClipPipeline, sector_frames
from coreecho.video.transforms import normalize


def _pad_then_crop(clips: np.ndarray, pad: int, rng: np.random.Generator, style: str) -> np.ndarray:
    """0.2's augmentation, written out: a zero-padded copy, then one random window per clip."""
    before, positions = (pad // 2, pad + 1) if style == "coreecho" else (pad, 2 * pad)
    if positions <= 1:
        return clips
    k, t, h, w, c = clips.shape
    padded = np.zeros((k, t, h + positions - 1, w + positions - 1, c), np.uint8)
    padded[:, :, before:before + h, before:before + w] = clips
    out = np.empty_like(clips)
    for j in range(k):
        top, left = (int(v) for v in rng.integers(0, positions, size=2))
        out[j] = padded[j, :, top:top + h, left:left + w]
    return out


@pytest.mark.parametrize("mean,std", [((32.49, 32.62, 32.93), (49.87, 49.88, 50.13)), ((0.0, 127.5, 255.0),
                                                                                       (1.0, 0.7, 255.0))])
def test_every_pixel_value_matches_the_float64_arithmetic(mean, std):
    values = np.arange(256, dtype=np.uint8)
    px = np.stack([values, values[::-1], np.roll(values, 77)], -1).reshape(1, 4, 8, 8, 3)
    ref = normalize_reference(px, mean, std)
    assert torch.equal(to_model_input(px, mean, std), ref)
    assert torch.equal(normalize(px, mean, std), ref)
    out = torch.empty_like(ref)
    _lookup_device(torch.from_numpy(px), pixel_table(mean, std), None, out)  # the GPU code, run on the CPU
    assert torch.equal(out, ref)
    # a plain float32 (x - mean) / std is not exact: the reference rounds twice
    x = torch.from_numpy(px).permute(0, 4, 1, 2, 3).float()
    plain = (x - torch.tensor(mean).view(3, 1, 1, 1)) / torch.tensor(std).view(3, 1, 1, 1)
    assert not torch.equal(plain, ref)


@pytest.mark.parametrize("pad,style", [(12, "coreecho"), (4, "echonet-dynamic"), (40, "coreecho"), (0, "coreecho")])
def test_crop_offsets_give_the_augmented_input_bit_for_bit(pad, style):
    clips = np.random.default_rng(1).integers(0, 256, (5, 3, 20, 18, 3), dtype=np.uint8)
    for seed in range(8):
        ref = normalize_reference(_pad_then_crop(clips, pad, np.random.default_rng(seed), style))
        assert np.array_equal(pad_and_crop(clips, pad, np.random.default_rng(seed), style),
                              _pad_then_crop(clips, pad, np.random.default_rng(seed), style))
        offsets = draw_offsets(len(clips), pad, np.random.default_rng(seed), style)
        assert torch.equal(to_model_input(clips, offsets=offsets), ref)
        out = torch.empty_like(ref)
        _lookup_device(torch.from_numpy(clips), pixel_table(), torch.from_numpy(offsets), out)
        assert torch.equal(out, ref)
    if pad:
        assert np.abs(offsets).max() > 0


def test_writes_into_a_slice_of_a_preallocated_batch():
    px = np.random.default_rng(2).integers(0, 256, (2, 3, 6, 6, 3), dtype=np.uint8)
    batch = torch.full((5, 3, 3, 6, 6), 7.0)
    to_model_input(px, out=batch[1:3])
    assert torch.equal(batch[1:3], normalize_reference(px))
    assert bool((batch[0] == 7).all()) and bool((batch[3:] == 7).all())


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("echonet")
    write_echonet_layout(root, 6, seed=5, splits=(4, 0, 2), n_frames=(60, 90), fps=50, size=32, progress=False)
    return root


PRE = PreprocessConfig(frames=8, stride=2, size=32, pad=6)


def test_stage1_batch_is_bit_identical_to_the_float_path(layout):
    ds = EchoNetDynamic(layout, "train", preprocess=PRE, views=2, augment=True, seed=3)
    ds.set_epoch(2)
    ds.handover = "pixels"
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    batch = next(iter(loader))
    assert batch["pixels"].dtype == torch.uint8 and "video" not in batch
    got = batch_clips(batch, "cpu")
    refs = []
    for i, rec in enumerate(ds.records):  # 0.2: starts, then crops, from one stream; float path in the worker
        rng = seeded_rng(3, 2, i, 0x0EC0)
        pipe = ds.pipeline
        plan = pipe.sampler("random:2").plan(_frames(rec.path), frames=PRE.frames, stride=PRE.stride, rng=rng)
        clean = pipe(rec.path, plan.starts, rng=np.random.default_rng(0), output="pixels").pixels
        refs.append(normalize_reference(_pad_then_crop(clean, PRE.pad, rng, PRE.pad_style), PRE.mean, PRE.std))
    ref = torch.stack(refs)
    assert got.shape == ref.shape == (4, 2, 3, PRE.frames, PRE.size, PRE.size)
    assert torch.equal(got, ref)
    ds.handover = "tensor"  # the float items of the same seed, as before
    assert torch.equal(torch.stack([ds[i]["video"] for i in range(4)]), ref)


def test_stage2_single_view_batch(layout):
    ds = EchoNetDynamic(layout, "train", preprocess=PRE, views=1, augment=True, seed=0)
    ds.handover = "pixels"
    item = ds[1]
    assert item["pixels"].shape == (PRE.frames, PRE.size, PRE.size, 3) and item["offsets"].shape == (2,)
    got = batch_clips(torch.utils.data.default_collate([ds[1], ds[2]]), "cpu")
    ds.handover = "tensor"
    assert torch.equal(got, torch.stack([ds[1]["video"], ds[2]["video"]]))


def _frames(path: Path) -> int:
    reader = open_video(path)
    try:
        return reader.info.n_frames
    finally:
        reader.close()


def _captured(model: CoReEcho) -> tuple[list[torch.Tensor], object]:
    seen: list[torch.Tensor] = []
    handle = model.encoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    return seen, handle


def test_engine_input_is_bit_identical_to_the_float_path(layout):
    torch.manual_seed(0)
    model = CoReEcho(tiny_config(preprocessing=PreprocessConfig(frames=8, stride=2, size=32))).eval()
    pipe = model.pipeline()
    paths = sorted((layout / "Videos").glob("*.avi"))[:3]
    items = VideoItems(paths, pipe, clips=3)
    assert items[0].x.dtype == torch.uint8 and items[0].norm is not None  # workers hand over uint8
    seen, handle = _captured(model)
    try:
        list(stream(items, model, batch_size=4, workers=0))  # passes of 4 split items' clips across passes
    finally:
        handle.remove()
    ref = torch.cat([normalize_reference(pipe(p, 3).pixels, pipe.config.mean, pipe.config.std) for p in paths])
    assert [len(x) for x in seen] == [4, 4, 1]
    assert torch.equal(torch.cat(seen), ref)


def test_engine_with_workers_hands_over_uint8(layout):
    torch.manual_seed(0)
    model = CoReEcho(tiny_config(preprocessing=PreprocessConfig(frames=8, stride=2, size=32))).eval()
    paths = sorted((layout / "Videos").glob("*.avi"))[:2]
    seen, handle = _captured(model)
    try:
        a = list(model.predict_ef(paths, workers=1))
    finally:
        handle.remove()
    pipe = model.pipeline()
    ref = torch.cat([normalize_reference(pipe(p).pixels, pipe.config.mean, pipe.config.std) for p in paths])
    assert torch.equal(torch.cat(seen), ref)
    assert len(seen) >= 1 and a == list(model.predict_ef(paths, workers=0))


def test_decodes_only_the_union_of_the_clips_frames_once(layout):
    pipe = ClipPipeline(PreprocessConfig(frames=4, stride=3, size=24))  # 32 px frames: resized, fan-cropped
    path = sorted((layout / "Videos").glob("*.avi"))[0]
    want = sorted({s + 3 * t for s in (0, 4, 50) for t in range(4)})
    for attempt in range(2):
        reader = pipe.open(path)
        calls: list[list[int]] = []
        real = reader.read
        reader.read = lambda idx, real=real, calls=calls: calls.append([int(i) for i in idx]) or real(idx)
        try:
            batch = pipe(reader, [0, 4, 50], output="pixels")
            info = reader.info
        finally:
            reader.close()
        # one read, each frame once: the clips' frames, plus (frames to be resized, the first time only: the fan box
        # is remembered per file) the frames the fan is found in
        first = attempt == 0 and pipe.needs_sector(info)
        context = set(sector_frames(info.n_frames).tolist()) if first else set()
        assert calls == [sorted(set(want) | context)]
        assert batch.x is None and batch.offsets is None and batch.pixels.shape == (3, 4, 24, 24, 3)
    assert pipe.needs_sector(info)
