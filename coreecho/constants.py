"""Numbers shared across coreecho: the one place they are defined.

Everything else imports them from here (or reads them from a model's
:class:`coreecho.models.config.PreprocessConfig`). This module imports nothing from coreecho, so any layer may use it.

Example:
    >>> from coreecho.constants import ECHONET_MEAN, ECHONET_STD
    >>> [round(v, 3) for v in ECHONET_MEAN]
    [32.49, 32.625, 32.928]
    >>> len(ECHONET_STD), PAD_STYLES[0]
    (3, 'coreecho')
"""

from __future__ import annotations

__all__ = ["ECHONET_MEAN", "ECHONET_STD", "PAD_STYLES"]

#: Per-channel mean of EchoNet-Dynamic in 0..255 pixel units (the official CoReEcho values, which are given in 0..1
#: units and multiplied by 255 here).
ECHONET_MEAN: tuple[float, float, float] = tuple(v * 255.0 for v in (0.12741163, 0.1279413, 0.12912785))  # type: ignore[assignment]
#: Per-channel standard deviation of EchoNet-Dynamic in 0..255 pixel units (same source and units as the mean).
ECHONET_STD: tuple[float, float, float] = tuple(v * 255.0 for v in (0.19557191, 0.19562256, 0.1965878))  # type: ignore[assignment]

#: What the training augmentation's ``pad`` means (:class:`coreecho.models.config.PreprocessConfig`):
#:
#: * ``"coreecho"`` (the default; the official CoReEcho recipe): ``pad`` is the zero padding added to each axis in
#:   total (``pad // 2`` before, the rest after: the official ``PadIfNeeded(112 + 12)``), then a ``size`` window is
#:   cropped at one of ``pad + 1`` uniform positions per axis. ``pad=12`` moves a clip by ``-6 .. +6`` px per axis.
#: * ``"echonet-dynamic"`` (EchoNet-Dynamic's convention; what ``pad`` meant in configs of ``format_version`` 1):
#:   ``pad`` zero pixels on each side, then a crop at one of ``2 * pad`` positions. ``pad=12`` moves a clip by
#:   ``-11 .. +12`` px per axis.
PAD_STYLES: tuple[str, str] = ("coreecho", "echonet-dynamic")
