"""2-D maps of embeddings coloured by EF, and embedding files (``.npz``, Parquet).

CoReEcho's first stage (Rank-N-Contrast) orders embeddings by EF, so a 2-D map of good embeddings shows a
colour gradient along a continuous path rather than clusters. Maps:

* ``"umap"`` — UMAP (``umap-learn``, the ``viz`` extra); keeps local neighbourhoods, fair global layout;
* ``"tsne"`` — t-SNE (scikit-learn); local neighbourhoods only, distances between groups mean little;
* ``"pca"`` — first two principal components (scikit-learn); linear, exact, deterministic.

Plotting needs matplotlib (``viz`` extra); computing coordinates alone (:func:`embed_2d`) does not.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ef = rng.uniform(20, 80, 50)
    >>> emb = np.c_[ef, rng.normal(size=(50, 7))]
    >>> xy = plot_embeddings(emb, ef, method="pca", path="/tmp/emb.png")  # doctest: +SKIP
    >>> embed_2d(emb, "pca").shape
    (50, 2)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from coreecho.errors import InputError, MissingDependencyError

__all__ = ["METHODS", "default_method", "embed_2d", "plot_embeddings", "continuity_scores", "save_embeddings", "load_embeddings",
           "EmbeddingFile"]

#: 2-D map methods.
METHODS = ("umap", "tsne", "pca")


def _matrix(embeddings: Any) -> np.ndarray:
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().cpu().numpy()
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise InputError("embeddings", f"expected a matrix [N, D], got shape {np.shape(embeddings)}")
    return x


def _one_openmp_thread_if_torch():
    """With torch loaded, two OpenMP runtimes (torch's and scikit-learn's libgomp) spin against each other:
    t-SNE of 40 points then took 22 s instead of 0.04 s on 2 cores. One OpenMP thread avoids that."""
    import contextlib  # noqa: PLC0415
    import sys  # noqa: PLC0415

    if "torch" not in sys.modules:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="openmp")


def default_method(method: str | None = None, *, announce: bool = False) -> str:
    """``method`` if given, else ``"umap"`` when umap-learn is installed, else ``"tsne"``.

    Example:
        >>> default_method("pca")
        'pca'
    """
    if method is not None:
        return method
    try:
        import umap  # noqa: F401, PLC0415
    except ImportError:
        if announce:
            import sys  # noqa: PLC0415

            print("NOTE: umap-learn is not installed, so this map uses t-SNE instead of UMAP. For UMAP: "
                  "`pip install umap-learn`, or the viz extra (`pip install \"coreecho[viz]\"` from PyPI, "
                  "`pip install -e \".[viz]\"` in a clone).", file=sys.stderr)
        return "tsne"
    return "umap"


def embed_2d(embeddings: Any, method: str = "umap", *, seed: int = 0, standardize: bool = False,
             **kwargs: Any) -> np.ndarray:
    """2-D coordinates of embeddings ``[N, D]`` (rows with NaN get NaN coordinates).

    Args:
        embeddings: ``[N, D]`` numpy or torch.
        method: ``"umap"``, ``"tsne"`` or ``"pca"``.
        seed: random state of UMAP / t-SNE.
        standardize: z-score each dimension first.
        **kwargs: passed to ``umap.UMAP``, ``sklearn.manifold.TSNE`` or ``sklearn.decomposition.PCA``
            (defaults: ``n_neighbors=min(15, N - 1)``, ``perplexity=min(30, (N - 1) / 3)``).

    Returns:
        ``float64`` ``[N, 2]``.

    Raises:
        MissingDependencyError: ``"umap"`` without umap-learn installed.

    Example:
        >>> import numpy as np
        >>> embed_2d(np.random.default_rng(0).normal(size=(20, 5)), "pca").shape
        (20, 2)
    """
    if method not in METHODS:
        raise InputError(f"method={method!r}", f"expected one of {list(METHODS)}")
    x = _matrix(embeddings)
    ok = np.isfinite(x).all(axis=1)
    out = np.full((len(x), 2), np.nan)
    z = x[ok]
    n = len(z)
    if n < 3:
        raise InputError("embeddings", f"need at least 3 finite embeddings for a 2-D map, got {n}")
    if standardize:
        sd = z.std(axis=0)
        z = (z - z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    if method == "umap":
        try:
            import umap  # noqa: PLC0415
        except ImportError as err:
            raise MissingDependencyError("umap-learn", "viz", "method='umap' (UMAP maps of embeddings)") from err
        kw = {"n_neighbors": min(15, n - 1), "random_state": seed, "n_jobs": 1, **kwargs}
        xy = umap.UMAP(n_components=2, **kw).fit_transform(z)
    elif method == "tsne":
        from sklearn.manifold import TSNE  # noqa: PLC0415

        kw = {"perplexity": float(min(30.0, max(1.0, (n - 1) / 3.0))), "random_state": seed, "init": "pca", **kwargs}
        with _one_openmp_thread_if_torch():
            xy = TSNE(n_components=2, **kw).fit_transform(z)
    else:
        from sklearn.decomposition import PCA  # noqa: PLC0415

        if z.shape[1] == 1:
            xy = np.c_[z - z.mean(axis=0), np.zeros(n)]
        else:
            xy = PCA(n_components=2, **kwargs).fit_transform(z)
    out[ok] = np.asarray(xy, dtype=np.float64)
    return out


def plot_embeddings(embeddings: Any, values: Any = None, method: str = "umap", path: str | os.PathLike | None = None,
                    *, title: str | None = None, label: str = "EF (%)", cmap: str = "viridis", seed: int = 0,
                    standardize: bool = False, ax: Any = None, point_size: float = 18.0, dpi: int = 120,
                    **kwargs: Any) -> np.ndarray:
    """Scatter plot of a 2-D map of embeddings coloured by a value (EF), with a colour bar.

    Args:
        embeddings: ``[N, D]``.
        values: ``[N]`` colour values (e.g. EF), or ``None`` for one colour.
        method: ``"umap"``, ``"tsne"`` or ``"pca"`` (see :func:`embed_2d`).
        path: PNG (or any matplotlib format) to write; ``None`` writes nothing.
        title: figure title (default: the method's name and ``N``).
        label: colour-bar label.
        cmap: matplotlib colormap.
        seed: random state of UMAP / t-SNE.
        standardize: z-score each dimension first.
        ax: draw into this matplotlib ``Axes`` instead of a new figure (then ``path`` saves its figure).
        point_size: marker size.
        dpi: resolution of the written image.
        **kwargs: passed to the map method.

    Returns:
        The coordinates ``[N, 2]``.

    Raises:
        MissingDependencyError: matplotlib (or umap-learn for ``"umap"``) not installed.

    Example:
        >>> import numpy as np
        >>> emb = np.random.default_rng(0).normal(size=(30, 8))
        >>> plot_embeddings(emb, emb[:, 0] * 10 + 50, method="pca", path="/tmp/pca.png").shape  # doctest: +SKIP
        (30, 2)
    """
    x = _matrix(embeddings)
    if values is not None:
        v = np.asarray(values.detach().cpu().numpy() if hasattr(values, "detach") else values, dtype=np.float64)
        if v.shape != (len(x),):
            raise InputError("values", f"expected one value per embedding ({len(x)}), got shape {v.shape}")
    else:
        v = None
    if path is None and ax is None:
        return embed_2d(x, method, seed=seed, standardize=standardize, **kwargs)
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError as err:
        raise MissingDependencyError("matplotlib", "viz", "plotting embeddings") from err
    xy = embed_2d(x, method, seed=seed, standardize=standardize, **kwargs)
    if ax is None:
        fig = Figure(figsize=(5.6, 4.6), dpi=dpi)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ok = np.isfinite(xy).all(axis=1)
    if v is not None:
        ok &= np.isfinite(v)
        sc = ax.scatter(xy[ok, 0], xy[ok, 1], c=v[ok], cmap=cmap, s=point_size, linewidths=0)
        fig.colorbar(sc, ax=ax, label=label)
    else:
        ax.scatter(xy[ok, 0], xy[ok, 1], s=point_size, linewidths=0)
    names = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
    ax.set_title(title if title is not None else f"{names[method]} of {int(ok.sum())} embeddings")
    ax.set_xlabel(f"{names[method]} 1")
    ax.set_ylabel(f"{names[method]} 2")
    ax.set_xticks([])
    ax.set_yticks([])
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(p, dpi=dpi)
    return xy


def continuity_scores(embeddings: Any, values: Any, *, k: int = 5) -> dict[str, float]:
    """How continuously embeddings follow a value (EF): two scores that need no trained head.

    * ``spearman``: Spearman rank correlation between the Euclidean distance of every pair of embeddings and
      the absolute difference of their values (1 = distances ordered exactly as value gaps; about 0 = unrelated);
    * ``knn_mae``: mean absolute error of predicting each value as the mean of its ``k`` nearest other
      embeddings' values (leave-one-out), in the values' unit.

    Example:
        >>> import numpy as np
        >>> ef = np.linspace(10, 80, 30)
        >>> s = continuity_scores(np.c_[ef, np.zeros(30)], ef, k=2)
        >>> round(s["spearman"], 3), round(s["knn_mae"], 3)
        (0.998, 0.241)
    """
    from scipy.stats import spearmanr  # noqa: PLC0415

    x = _matrix(embeddings)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.shape != (len(x),):
        raise InputError("values", f"expected one value per embedding ({len(x)}), got shape {v.shape}")
    ok = np.isfinite(x).all(axis=1) & np.isfinite(v)
    x, v = x[ok], v[ok]
    n = len(x)
    if n < max(3, k + 1):
        raise InputError("embeddings", f"need at least {max(3, k + 1)} finite rows, got {n}")
    sq = np.einsum("ij,ij->i", x, x)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2.0 * x @ x.T, 0.0))
    iu = np.triu_indices(n, 1)
    rho = float(spearmanr(d[iu], np.abs(v[:, None] - v[None])[iu]).statistic)
    np.fill_diagonal(d, np.inf)
    nearest = np.argpartition(d, k - 1, axis=1)[:, :k]
    mae = float(np.abs(v[nearest].mean(axis=1) - v).mean())
    return {"spearman": rho, "knn_mae": mae}


# --------------------------------------------------------------------------------------------------- files
@dataclass
class EmbeddingFile:
    """Contents of an embedding file.

    Attributes:
        paths: one name per row (video paths).
        embeddings: ``float32`` ``[N, D]``.
        columns: per-row arrays (``ef``, ``split``...).
        metadata: file-level values (model name, coreecho version...).

    Example:
        >>> f = EmbeddingFile(["a.avi"], np.zeros((1, 4), np.float32), {"ef": np.array([60.0])})
        >>> len(f), float(f.columns["ef"][0])
        (1, 60.0)
    """

    paths: list[str]
    embeddings: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)


def _split_metadata(n: int, metadata: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    columns: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in ("paths", "embeddings", "metadata_json"):
            raise InputError(f"{key}=", "is a reserved name in embedding files")
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        if isinstance(value, (np.ndarray, list, tuple)) and len(value) == n and n > 0:
            arr = np.asarray(value)
            if arr.dtype == object:
                arr = arr.astype(str)
            if arr.ndim != 1:
                raise InputError(f"{key}=", f"per-row columns must be 1-D, got shape {arr.shape}")
            columns[key] = arr
        else:
            try:
                json.dumps(value)
            except TypeError as err:
                raise InputError(f"{key}=", "metadata must be a per-row sequence of length N or a JSON-ready "
                                            "value") from err
            scalars[key] = value
    return columns, scalars


def save_embeddings(path: str | os.PathLike, paths: Sequence[str], embeddings: Any, *, parquet: bool | None = None,
                    **metadata: Any) -> list[Path]:
    """Write embeddings with their video names as ``.npz`` and, when pyarrow is installed, Parquet.

    The ``.npz`` holds ``paths`` (strings), ``embeddings`` (``float32 [N, D]``), one array per per-row column
    and ``metadata_json`` (the file-level values as a JSON string); it loads with ``allow_pickle=False`` and
    has the layout of ``coreecho embed -o x.npz``. The Parquet file has a ``path`` column, an ``embedding``
    column (fixed-size lists of float32), the per-row columns, and the file-level values in the schema's
    metadata under ``coreecho``.

    Args:
        path: ``name``, ``name.npz`` or ``name.parquet``; with ``.parquet`` only Parquet is written.
        paths: one name per row.
        embeddings: ``[N, D]``.
        parquet: also write Parquet: ``None`` = when pyarrow is installed, ``True`` = required.
        **metadata: sequences of length N become per-row columns (e.g. ``ef=efs``); other JSON-ready values
            are stored once for the file (e.g. ``model="phantom-tiny"``).

    Returns:
        The files written.

    Example:
        >>> import numpy as np
        >>> files = save_embeddings("/tmp/emb", ["a.avi", "b.avi"], np.zeros((2, 4)), ef=[55.0, 60.0],
        ...                         model="phantom-tiny")  # doctest: +SKIP
        >>> load_embeddings(files[0]).columns["ef"]  # doctest: +SKIP
        array([55., 60.])
    """
    emb = _matrix(embeddings).astype(np.float32)
    names = [str(p) for p in paths]
    if len(names) != len(emb):
        raise InputError("paths", f"got {len(names)} names for {len(emb)} embeddings")
    columns, scalars = _split_metadata(len(emb), metadata)
    p = Path(path)
    suffix = p.suffix.lower()
    stem = p.with_suffix("") if suffix in (".npz", ".parquet") else p
    stem.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if suffix != ".parquet":
        out = stem.with_name(stem.name + ".npz")
        np.savez(out, paths=np.array(names, dtype=str), embeddings=emb,
                 metadata_json=np.array(json.dumps(scalars)), **columns)
        written.append(out)
    want_parquet = parquet if parquet is not None else (True if suffix == ".parquet" else None)
    if want_parquet is not False:
        try:
            import pyarrow as pa  # noqa: PLC0415
            import pyarrow.parquet as pq  # noqa: PLC0415
        except ImportError as err:
            if want_parquet:
                raise MissingDependencyError("pyarrow", "viz", "writing embeddings as Parquet") from err
            return written
        dim = emb.shape[1]
        table = {"path": pa.array(names, pa.string()),
                 "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), dim)}
        for key, arr in columns.items():
            table[key] = pa.array(arr)
        t = pa.table(table).replace_schema_metadata({"coreecho": json.dumps(scalars)})
        out = stem.with_name(stem.name + ".parquet")
        pq.write_table(t, out)
        written.append(out)
    return written


def load_embeddings(path: str | os.PathLike) -> EmbeddingFile:
    """Read a file written by :func:`save_embeddings` or ``coreecho embed`` (``.npz`` or ``.parquet``).

    Example:
        >>> data = load_embeddings("/tmp/emb.npz")  # doctest: +SKIP
        >>> data.embeddings.shape, data.paths[:1]  # doctest: +SKIP
        ((2, 4), ['a.avi'])
    """
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq  # noqa: PLC0415
        except ImportError as err:
            raise MissingDependencyError("pyarrow", "viz", "reading Parquet embedding files") from err
        try:
            t = pq.read_table(p)
        except (OSError, ValueError) as err:
            raise InputError(str(p), f"cannot read the Parquet file ({err})") from err
        if "path" not in t.column_names or "embedding" not in t.column_names:
            raise InputError(str(p), "expected columns 'path' and 'embedding'")
        emb_col = t.column("embedding").combine_chunks()
        n = t.num_rows
        flat = np.asarray(emb_col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        emb = flat.reshape(n, -1) if n else np.zeros((0, 0), np.float32)
        cols = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names if c not in ("path", "embedding")}
        meta_raw = (t.schema.metadata or {}).get(b"coreecho", b"{}")
        return EmbeddingFile(paths=[str(s) for s in t.column("path").to_pylist()], embeddings=emb, columns=cols,
                             metadata=json.loads(meta_raw))
    try:
        with np.load(p, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise InputError(str(p), f"cannot read the embedding file ({err})") from err
    if "paths" not in data or "embeddings" not in data:
        raise InputError(str(p), "expected arrays 'paths' and 'embeddings'")
    meta = json.loads(str(data.pop("metadata_json"))) if "metadata_json" in data else {}
    return EmbeddingFile(paths=[str(s) for s in data.pop("paths")], embeddings=data.pop("embeddings"),
                         columns=data, metadata=meta)
