"""Tests of coreecho.video.sampling and coreecho.video.clips: official clip policies, zero padding, selective
decoding; the one sampling module and its deprecated aliases."""

from __future__ import annotations

import functools
import random

import numpy as np
import pytest

from coreecho.data.phantom import make_phantom
from coreecho.errors import InputError, VideoReadError
from coreecho.video import (
    clip_indices,
    load_video,
    max_start,
    padded_length,
    read_video,
    test_starts,
    train_start,
    write_video,
)
from coreecho.video.clips import extract_clips, read_clips
from coreecho.video.transforms import prepare_frames


def _ramp(n: int, h: int = 4, w: int = 5) -> np.ndarray:
    """Frame i is filled with (i % 250) + 1, so padding (0) is distinguishable from every frame."""
    vals = (np.arange(n) % 250 + 1).astype(np.uint8)
    return np.broadcast_to(vals[:, None, None, None], (n, h, w, 3)).copy()


@pytest.fixture(scope="module")
def avis(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    long_frames, meta = make_phantom(ef=45, seed=3, n_frames=160, fps=50, heart_rate=70)
    short_frames, _ = make_phantom(ef=45, seed=4, n_frames=60, fps=50, heart_rate=70)
    return {
        "long": write_video(root / "long.avi", long_frames, fps=50),
        "short": write_video(root / "short.avi", short_frames, fps=50),
        "one": write_video(root / "one.avi", short_frames[:1], fps=50),
    }


def test_lengths():
    assert padded_length(100) == 144 and padded_length(200) == 200
    assert max_start(100) == 3 and max_start(144) == 3 and max_start(200) == 59
    assert max_start(10, frames=4, stride=2) == 3 and max_start(5, frames=4, stride=2) == 1


def test_train_start_official_range():
    # official: start drawn from range(f - (36 - 1) * 4), f the padded length
    rng = np.random.default_rng(0)
    short = {train_start(100, rng=rng) for _ in range(400)}
    assert short == {0, 1, 2, 3}
    long = [train_start(200, rng=rng) for _ in range(3000)]
    assert min(long) == 0 and max(long) == 59 and len(set(long)) == 60
    assert train_start(200, rng=5) == train_start(200, rng=5)
    assert 0 <= train_start(200, rng=random.Random(1)) <= 59
    assert 0 <= train_start(50, frames=4, stride=2) <= max_start(50, 4, 2)
    with pytest.raises(InputError, match="1 frame"):
        train_start(1)
    with pytest.raises(InputError, match="integer"):
        train_start(10.5)  # type: ignore[arg-type]


def test_test_starts():
    assert test_starts(200, clips=3) == [0, 30, 59]
    assert test_starts(100, clips=3) == [0, 2, 3]
    assert test_starts(200, clips=1) == [30] == test_starts(200, clips=3)[1:2]  # the middle clip of k=3
    assert test_starts(200, clips=2) == [0, 59]
    assert test_starts(300, clips="all") == [0, 144]
    assert test_starts(432, clips="all") == [0, 144, 288]
    assert test_starts(100, clips="all") == [0]
    assert test_starts(150, clips="every") == list(range(10))
    assert test_starts(200) == test_starts(200)  # deterministic
    for bad in (0, -1, "some", True, 2.5):
        with pytest.raises(InputError, match="clips="):
            test_starts(200, clips=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="stride"):
        test_starts(200, stride=0)
    with pytest.raises(InputError, match="0 frames"):
        test_starts(0)


def test_clip_indices():
    idx = clip_indices([0, 5], frames=36, stride=4)
    assert idx.shape == (2, 36) and idx[1, 0] == 5 and idx[1, -1] == 5 + 35 * 4
    assert clip_indices(3, frames=2, stride=1).tolist() == [[3, 4]]


def test_extract_clips_values_and_padding():
    v = _ramp(200)
    clips = extract_clips(v, [0, 59])
    assert clips.shape == (2, 36, 4, 5, 3) and clips.dtype == np.uint8
    assert clips[1, :, 0, 0, 0].tolist() == [(59 + 4 * i) % 250 + 1 for i in range(36)]
    short = _ramp(50)
    c = extract_clips(short, [3])  # padded to 144: frames 3, 7, ..., 143; only < 50 are real
    col = c[0, :, 0, 0, 0]
    real = [3 + 4 * i for i in range(36) if 3 + 4 * i < 50]
    assert col[: len(real)].tolist() == [i + 1 for i in real] and (col[len(real):] == 0).all()
    assert (c[0, len(real):] == 0).all()
    # n_frames: frames at or after it are padding even when the array holds more
    c2 = extract_clips(v, [0], frames=4, stride=10, n_frames=25)
    assert c2[0, :, 0, 0, 0].tolist() == [1, 11, 21, 0]


@pytest.mark.parametrize("starts, match", [([-1], "negative"), ([4], "beyond"), ([0, 500], "beyond"),
                                           ([], "non-empty"), ([1.5], "integers"), ([[0, 1]], "1-D")])
def test_extract_clips_bad_starts(starts, match):
    with pytest.raises(InputError, match=match):
        extract_clips(_ramp(100), starts)


def test_extract_clips_bad_videos():
    with pytest.raises(InputError, match="1 frame"):
        extract_clips(_ramp(1), [0])
    with pytest.raises(InputError, match="uint8"):
        extract_clips(_ramp(10).astype(np.float32), [0])
    with pytest.raises(InputError, match="holds 10 frames"):
        extract_clips(_ramp(10), [0], frames=4, stride=4, n_frames=20)
    assert extract_clips(_ramp(2), [0], frames=36, stride=4).shape == (1, 36, 4, 5, 3)


def test_extract_clips_from_partial_video():
    full = load_video(_ramp(200))
    need = np.unique(clip_indices([10], 36, 4))
    part = load_video(full, indices=need)
    assert np.array_equal(extract_clips(part, [10]), extract_clips(full.frames, [10]))
    with pytest.raises(InputError, match="not decoded"):
        extract_clips(part, [11])


def test_read_clips_matches_full_decode(avis):
    full = read_video(avis["long"]).frames
    for policy in (3, "all", [0, 7, 19], "every"):
        clips, starts = read_clips(avis["long"], policy)
        assert np.array_equal(clips, extract_clips(full, starts))
    clips, starts = read_clips(avis["long"], 3)
    assert starts == [0, 10, 19] and clips.shape == (3, 36, 112, 112, 3)


def test_read_clips_decodes_only_needed_frames(avis, monkeypatch):
    from coreecho.video.base import VideoReader

    seen = {}
    real = VideoReader.read

    def spy(self, indices=None):
        seen["indices"] = np.asarray(indices).tolist()
        return real(self, indices)

    monkeypatch.setattr(VideoReader, "read", spy)
    read_clips(avis["long"], [0, 2])
    expect = sorted(set(range(0, 141, 4)) | set(range(2, 143, 4)))
    assert seen["indices"] == expect and len(expect) == 72


def test_read_clips_short_video_is_zero_padded(avis):
    full = read_video(avis["short"]).frames  # 60 frames
    clips, starts = read_clips(avis["short"], 3)
    assert starts == [0, 2, 3]
    assert np.array_equal(clips, extract_clips(full, starts))
    assert (clips[:, 15:] == 0).all() and clips[:, :15].max() > 0  # frames 0..56 real, 60+ padding


def test_read_clips_train_rng_transform_fps_and_arrays(avis):
    a, s1 = read_clips(avis["long"], "train", rng=np.random.default_rng(1))
    b, s2 = read_clips(avis["long"], "train", rng=np.random.default_rng(1))
    assert s1 == s2 and len(s1) == 1 and np.array_equal(a, b)
    small, _ = read_clips(avis["long"], [0], transform=functools.partial(prepare_frames, size=64, crop_sector=False))
    assert small.shape == (1, 36, 64, 64, 3)
    # 50 fps -> 25 fps: frame j of the resampled video is source frame 2j
    full = read_video(avis["long"]).frames
    c25, st = read_clips(avis["long"], [0], frames=10, stride=2, target_fps=25)
    assert np.array_equal(c25[0], full[[4 * i for i in range(10)]])
    arr = _ramp(100)
    c, st = read_clips(arr, 3, frames=8, stride=2)
    assert np.array_equal(c, extract_clips(arr, st, 8, 2))
    with pytest.raises(InputError, match="frame rate is unknown"):
        read_clips(arr, 1, target_fps=25)
    with pytest.raises(InputError, match="transform"):
        read_clips(arr, [0], frames=4, stride=2, transform=lambda f: f[:1])


def test_read_clips_bad_inputs(avis, tmp_path):
    with pytest.raises(InputError, match="1 frame"):
        read_clips(avis["one"], 3)
    with pytest.raises(InputError, match="beyond"):
        read_clips(avis["long"], [20])
    with pytest.raises(InputError, match="negative"):
        read_clips(avis["long"], [-3])
    with pytest.raises(VideoReadError, match="no such file"):
        read_clips(tmp_path / "missing.avi")


def test_sampling_is_one_module_and_old_paths_warn():
    """Clip sampling lives in coreecho.video.sampling; coreecho.video.samplers and the alternative recipes in
    coreecho.video resolve to the same objects for one release, with a DeprecationWarning."""
    import warnings

    import coreecho.video as video
    from coreecho.video import clips, sampling, samplers, transforms

    for name in ("ClipPlan", "Sampler", "EvenClips", "RandomClips", "FixedStarts", "AllClips", "EveryStart",
                 "WholeSequence", "as_sampler", "MAX_CLIPS"):
        with pytest.warns(DeprecationWarning, match=f"use coreecho.video.sampling.{name}"):
            assert getattr(samplers, name) is getattr(sampling, name)
    moved = {"read_clips": clips, "extract_clips": clips, "prepare_frames": transforms, "normalize": transforms}
    for name, home in moved.items():
        assert name not in video.__all__
        with pytest.warns(DeprecationWarning, match="ClipPipeline"):
            assert getattr(video, name) is getattr(home, name)
    for name in ("read_clips", "extract_clips"):
        with pytest.warns(DeprecationWarning, match=f"use coreecho.video.clips.{name}"):
            assert getattr(sampling, name) is getattr(clips, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the recipe and the samplers come from coreecho.video without a warning
        from coreecho.video import ClipPipeline, EvenClips, as_sampler  # noqa: F401
        assert video.ClipPipeline.__module__ == "coreecho.video.pipeline"
        assert sorted(video.__all__) == sorted(set(video.__all__)) and all(hasattr(video, n) for n in video.__all__)
    with pytest.raises(AttributeError):
        video.no_such_name  # noqa: B018


def test_video_layer_imports_nothing_above_it_and_has_no_circle():
    """Every import in coreecho/video/ (module level, in functions, under TYPE_CHECKING) stays in the bottom layer,
    and the modules of coreecho.video import each other without a cycle."""
    import ast
    from pathlib import Path

    import coreecho.video

    root = Path(coreecho.video.__file__).parent
    allowed = ("coreecho.video", "coreecho.errors", "coreecho.constants", "coreecho._")
    graph: dict[str, set[str]] = {}
    for path in sorted(root.glob("*.py")):
        name = "coreecho.video" + ("" if path.stem == "__init__" else "." + path.stem)
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                if target.startswith("coreecho"):
                    assert target.startswith(allowed), f"{name} imports {target}"
                    if target.startswith("coreecho.video.") and target.split(".")[2] != "__init__":
                        graph[name].add("coreecho.video." + target.split(".")[2])
    graph = {k: {v for v in deps if v in graph and v != k} for k, deps in graph.items()}
    graph["coreecho.video"] = set()  # the package itself imports its modules lazily, on attribute access
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            assert state.get(dep) != 1, "import circle: " + " -> ".join(trail + [node, dep])
            if dep not in state:
                visit(dep, trail + [node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert "coreecho.video.sampling" in graph["coreecho.video.pipeline"]  # the graph was read


def test_read_clips_is_the_pipelines_pixels(avis):
    """read_clips is the pipeline's sampling, selective decoding and assembly: on a 112 px video (no fan crop)
    its uint8 clips are the pipeline's ClipBatch.pixels, for the same starts."""
    from coreecho.models.config import PreprocessConfig
    from coreecho.video import ClipPipeline

    pipe = ClipPipeline(PreprocessConfig(frames=36, stride=4, size=112))
    for policy in (3, [0, 7, 19], "all"):
        batch = pipe(avis["long"], policy)
        pixels, starts = read_clips(avis["long"], policy)
        assert starts == batch.starts and np.array_equal(pixels, batch.pixels)
