"""Analysis tools built on a trained model: distribution-shift detection, Grad-CAM and embedding plots.

Submodules (imported on first use, so ``import coreecho.analysis`` costs almost nothing, and
``import coreecho`` never imports this package):

- :mod:`coreecho.analysis.shift` — :class:`~coreecho.analysis.shift.ShiftDetector`: kNN-distance and
  Mahalanobis (Ledoit-Wolf) out-of-distribution scores on embeddings, with a threshold calibrated on
  held-out in-distribution embeddings for a chosen false-alarm rate; :func:`~coreecho.analysis.shift.attach`
  puts a detector on a model so that detailed predictions report a shift score.
- :mod:`coreecho.analysis.calibration` — :func:`~coreecho.analysis.calibration.calibrate`: split-conformal EF
  intervals (locally adaptive) and a shift detector fitted on held-out labelled videos, saved with the weights.
- :mod:`coreecho.analysis.gradcam` — Grad-CAM heatmaps ``[T, H, W]`` for the EF output at any encoder stage
  (``coreecho explain`` on the command line); :mod:`coreecho.analysis.rendering` draws them: overlays, GIF/MP4
  and PNG montages.
- :mod:`coreecho.analysis.plots` — 2-D maps (UMAP, t-SNE, PCA) of embeddings coloured by EF, and
  ``.npz``/Parquet files of embeddings.

Example:
    >>> from coreecho.analysis import ShiftDetector  # loads coreecho.analysis.shift on demand
    >>> ShiftDetector.__module__
    'coreecho.analysis.shift'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coreecho._lazy import lazy_exports

__all__ = [
    "ShiftDetector",
    "attach",
    "Calibration",
    "ConformalInterval",
    "calibrate",
    "GradCAM",
    "Explanation",
    "explain",
    "explain_clip",
    "overlay",
    "save_overlay",
    "save_montage",
    "plot_embeddings",
    "save_embeddings",
    "load_embeddings",
]

_LAZY = {
    "ShiftDetector": "coreecho.analysis.shift",
    "attach": "coreecho.analysis.shift",
    "Calibration": "coreecho.analysis.conformal",
    "ConformalInterval": "coreecho.analysis.conformal",
    "calibrate": "coreecho.analysis.calibration",
    "GradCAM": "coreecho.analysis.gradcam",
    "Explanation": "coreecho.analysis.gradcam",
    "explain": "coreecho.analysis.gradcam",
    "explain_clip": "coreecho.analysis.gradcam",
    "overlay": "coreecho.analysis.rendering",
    "save_overlay": "coreecho.analysis.rendering",
    "save_montage": "coreecho.analysis.rendering",
    "plot_embeddings": "coreecho.analysis.plots",
    "save_embeddings": "coreecho.analysis.plots",
    "load_embeddings": "coreecho.analysis.plots",
}

if TYPE_CHECKING:  # pragma: no cover
    from coreecho.analysis.calibration import calibrate
    from coreecho.analysis.conformal import Calibration, ConformalInterval
    from coreecho.analysis.gradcam import Explanation, GradCAM, explain, explain_clip
    from coreecho.analysis.rendering import overlay, save_montage, save_overlay
    from coreecho.analysis.plots import (
        load_embeddings,
        plot_embeddings,
        save_embeddings,
    )
    from coreecho.analysis.shift import ShiftDetector, attach


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
