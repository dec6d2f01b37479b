"""coreecho: ejection fraction and continuous embeddings from echocardiogram videos (CoReEcho).

The public API is small and stable:

- :func:`load_model` — a registered name, a folder, a Hub repo id or an official ``.pth`` → :class:`CoReEcho`.
- :func:`predict_ef` / :func:`embed` — EF or 512-d embeddings of videos (paths, arrays, lists).
- :func:`calibrate` — conformal EF intervals and a shift detector from held-out videos, saved with the weights.
- :class:`CoReLoss` — the exact Rank-N-Contrast loss of CoReEcho's first stage.
- :class:`CoReEcho` — the model (UniFormer encoder + MLP head + preprocessing config).

Names are imported lazily so that ``import coreecho`` stays fast; training code lives in
:mod:`coreecho.train` and is never imported by the package itself.

Example:
    >>> import coreecho
    >>> model = coreecho.load_model("phantom-tiny")  # doctest: +SKIP
    >>> model.predict_ef("a4c.avi")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coreecho._lazy import declare_operations, lazy_exports
from coreecho._version import __version__
from coreecho.errors import CoReEchoError

__all__ = ["load_model", "embed", "predict_ef", "calibrate", "CoReLoss", "CoReEcho", "list_models", "CoReEchoError",
           "__version__"]

_LAZY = {
    "load_model": "coreecho.hub.resolve",
    "list_models": "coreecho.hub.registry",
    "embed": "coreecho.inference",
    "predict_ef": "coreecho.inference",
    "calibrate": "coreecho.analysis.calibration",
    "CoReLoss": "coreecho.losses",
    "CoReEcho": "coreecho.models.coreecho",
}

if TYPE_CHECKING:  # pragma: no cover
    from coreecho.analysis.calibration import calibrate
    from coreecho.hub.registry import list_models
    from coreecho.hub.resolve import load_model
    from coreecho.inference import embed, predict_ef
    from coreecho.losses import CoReLoss
    from coreecho.models.coreecho import CoReEcho


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

# The high-level methods of CoReEcho (a model-layer class, which imports nothing above it) are done by these
# functions of the layers above; see coreecho.models.coreecho and coreecho._lazy.
declare_operations({
    "predict_ef": "coreecho.inference:predict_ef",
    "embed": "coreecho.inference:embed",
    "save_pretrained": "coreecho.hub.folder:save_pretrained",
    "push_to_hub": "coreecho.hub.folder:push_to_hub",
    "load_model": "coreecho.hub.resolve:load_model",
})


def _install_timm_hook() -> None:
    from coreecho.models.timm_hook import install

    install()


_install_timm_hook()
