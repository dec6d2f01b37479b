"""Accuracy of a model on fresh phantoms with known EF (seeds disjoint from the training layouts).

``write_echonet_layout`` draws each video's seed from a 63-bit generator, so small consecutive seeds starting at
:data:`BENCHMARK_SEED` never coincide with training phantoms in practice.

Example:
    >>> import coreecho
    >>> result = phantom_benchmark(coreecho.load_model("phantom-tiny"), n=10)  # doctest: +SKIP
    >>> round(result["mae"], 2)  # doctest: +SKIP
    1.9
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreecho.data.phantom import make_phantom

__all__ = ["phantom_benchmark", "BENCHMARK_SEED"]

#: First seed of the benchmark phantoms.
BENCHMARK_SEED = 1_000_000


def phantom_benchmark(model: Any, n: int = 40, *, ef_range: tuple[float, float] = (15.0, 80.0),
                      seed: int = BENCHMARK_SEED, clips: int | str | None = None,
                      batch_size: int | None = None) -> dict[str, Any]:
    """Predict ``n`` phantoms with EF evenly spread over ``ef_range`` and report the errors.

    Args:
        model: a :class:`coreecho.CoReEcho`.
        n: number of phantoms.
        ef_range: smallest and largest true EF (%).
        seed: seed of the first phantom (phantom ``i`` uses ``seed + i``).
        clips: clip policy (default: the model's).
        batch_size: clips per forward pass (default: the engine's batch policy, as ``model.predict_ef``).

    Returns:
        ``{"mae", "rmse", "max_error", "true", "predicted", "seeds"}``.
    """
    true = np.linspace(ef_range[0], ef_range[1], n)
    videos = [make_phantom(ef=float(ef), seed=seed + i)[0] for i, ef in enumerate(true)]
    pred = np.asarray(model.predict_ef(videos, clips=clips, batch_size=batch_size), dtype=np.float64)
    err = pred - true
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "max_error": float(np.abs(err).max()), "true": true.tolist(), "predicted": pred.tolist(),
            "seeds": list(range(seed, seed + n))}
