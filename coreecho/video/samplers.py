"""Deprecated: the samplers live in :mod:`coreecho.video.sampling`, the one module of clip sampling.

Every name of this module still resolves (with a :class:`DeprecationWarning`) for one release.

Example:
    >>> from coreecho.video.sampling import EvenClips  # instead of coreecho.video.samplers
"""

from __future__ import annotations

from coreecho._deprecation import deprecated_aliases

_MOVED = ("ClipPlan", "Sampler", "EvenClips", "RandomClips", "FixedStarts", "AllClips", "EveryStart", "WholeSequence",
          "as_sampler", "MAX_CLIPS")

__all__: list[str] = []

__getattr__ = deprecated_aliases(__name__, {name: "coreecho.video.sampling" for name in _MOVED})
