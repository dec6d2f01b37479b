"""Embedding maps (PCA / t-SNE / UMAP) and embedding files (.npz / Parquet)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from coreecho.analysis.plots import EmbeddingFile, embed_2d, load_embeddings, plot_embeddings, save_embeddings
from coreecho.errors import InputError, MissingDependencyError


def _line_in_noise(n: int = 60, d: int = 16, seed: int = 0):
    """EF along one direction with a large spread, small isotropic noise elsewhere, then a random rotation."""
    rng = np.random.default_rng(seed)
    ef = rng.uniform(10, 85, n)
    x = np.c_[(ef - 50) / 10.0, 0.3 * rng.normal(size=(n, 1)), 0.05 * rng.normal(size=(n, d - 2))]
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return x @ q.T, ef


def test_pca_recovers_the_known_structure():
    emb, ef = _line_in_noise()
    xy = embed_2d(emb, "pca")
    assert xy.shape == (len(ef), 2)
    assert abs(np.corrcoef(xy[:, 0], ef)[0, 1]) > 0.99  # first component = the EF direction
    assert xy[:, 0].var() > 20 * xy[:, 1].var()


def test_plot_writes_png_and_returns_coordinates(tmp_path):
    pytest.importorskip("matplotlib")
    emb, ef = _line_in_noise()
    out = tmp_path / "sub" / "pca.png"
    xy = plot_embeddings(emb, ef, method="pca", path=out, title="test")
    assert xy.shape == (60, 2) and np.isfinite(xy).all()
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    np.testing.assert_allclose(xy, embed_2d(emb, "pca"))  # no path: coordinates only
    np.testing.assert_allclose(plot_embeddings(emb, ef, method="pca"), xy)


def test_tsne_and_nan_rows(tmp_path):
    pytest.importorskip("matplotlib")
    emb, ef = _line_in_noise(n=40)
    emb[3] = np.nan
    xy = plot_embeddings(emb, ef, method="tsne", path=tmp_path / "tsne.png", seed=0)
    assert xy.shape == (40, 2) and np.isnan(xy[3]).all() and np.isfinite(np.delete(xy, 3, axis=0)).all()
    assert (tmp_path / "tsne.png").stat().st_size > 0


def test_umap_missing_gives_clear_error(monkeypatch):
    emb, ef = _line_in_noise(n=40)
    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    with pytest.raises(MissingDependencyError, match=r"coreecho\[viz\]"):
        embed_2d(emb, "umap")
    with pytest.raises(MissingDependencyError, match="umap-learn"):
        plot_embeddings(emb, ef, method="umap")


@pytest.mark.slow
def test_umap_map(tmp_path):
    """UMAP itself (slow: numba compiles on first use, about 30 s)."""
    pytest.importorskip("umap")
    pytest.importorskip("matplotlib")
    emb, ef = _line_in_noise(n=60)
    xy = plot_embeddings(emb, ef, method="umap", path=tmp_path / "umap.png", seed=0)
    assert xy.shape == (60, 2) and np.isfinite(xy).all()
    assert (tmp_path / "umap.png").stat().st_size > 0


def test_validation():
    with pytest.raises(InputError, match="method"):
        embed_2d(np.zeros((5, 3)), "mds")
    with pytest.raises(InputError, match="one value per embedding"):
        plot_embeddings(np.zeros((5, 3)), np.zeros(4), method="pca")
    with pytest.raises(InputError, match="at least 3"):
        embed_2d(np.zeros((2, 3)), "pca")


def test_save_load_npz(tmp_path):
    emb = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    paths = [f"v{i}.avi" for i in range(5)]
    files = save_embeddings(tmp_path / "emb", paths, emb, parquet=False, ef=np.arange(5.0),
                            split=["TRAIN"] * 3 + ["TEST"] * 2, model="tiny", clips=3)
    assert [f.name for f in files] == ["emb.npz"]
    back = load_embeddings(files[0])
    assert isinstance(back, EmbeddingFile) and len(back) == 5 and back.paths == paths
    np.testing.assert_array_equal(back.embeddings, emb)
    np.testing.assert_array_equal(back.columns["ef"], np.arange(5.0))
    assert list(back.columns["split"]) == ["TRAIN"] * 3 + ["TEST"] * 2
    assert back.metadata == {"model": "tiny", "clips": 3}
    with np.load(files[0], allow_pickle=False) as npz:  # plain arrays, no pickle
        assert set(npz.files) >= {"paths", "embeddings", "ef", "split"}
    with pytest.raises(InputError, match="names"):
        save_embeddings(tmp_path / "x", paths[:2], emb)
    with pytest.raises(InputError, match="JSON"):
        save_embeddings(tmp_path / "x", paths, emb, model=object())


def test_save_load_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    emb = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    files = save_embeddings(tmp_path / "emb.npz", ["a", "b", "c", "d"], emb, ef=[1.0, 2.0, 3.0, 4.0], model="m")
    assert sorted(f.suffix for f in files) == [".npz", ".parquet"]
    back = load_embeddings(tmp_path / "emb.parquet")
    assert back.paths == ["a", "b", "c", "d"] and back.metadata == {"model": "m"}
    np.testing.assert_array_equal(back.embeddings, emb)
    np.testing.assert_array_equal(back.columns["ef"], [1.0, 2.0, 3.0, 4.0])
    only = save_embeddings(tmp_path / "only.parquet", ["a", "b", "c", "d"], emb)
    assert [f.name for f in only] == ["only.parquet"]


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    emb = np.zeros((2, 3))
    assert [f.suffix for f in save_embeddings(tmp_path / "e", ["a", "b"], emb)] == [".npz"]  # silently npz only
    with pytest.raises(MissingDependencyError, match="pyarrow"):
        save_embeddings(tmp_path / "e", ["a", "b"], emb, parquet=True)


def test_reads_coreecho_embed_output(tmp_path):
    """The layout written by ``coreecho embed -o x.npz`` loads too."""
    p = tmp_path / "cli.npz"
    np.savez(p, paths=np.array(["a.avi", "b.avi"]), embeddings=np.ones((2, 4), np.float32),
             ef=np.array([50.0, 60.0], np.float32), errors=np.array(["", ""]))
    back = load_embeddings(p)
    assert back.paths == ["a.avi", "b.avi"] and set(back.columns) == {"ef", "errors"} and back.metadata == {}


def test_continuity_scores():
    from coreecho.analysis.plots import continuity_scores

    emb, ef = _line_in_noise(n=50)
    good = continuity_scores(emb, ef)
    shuffled = continuity_scores(emb, np.random.default_rng(0).permutation(ef))
    assert good["spearman"] > 0.9 and abs(shuffled["spearman"]) < 0.2
    assert good["knn_mae"] < 3.0 < shuffled["knn_mae"]
    with pytest.raises(InputError):
        continuity_scores(emb, ef[:3])
