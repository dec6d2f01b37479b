"""Datasets of coreecho: real on-disk layouts (EchoNet-Dynamic, CAMUS, HMC-QU) and synthetic phantoms.

:mod:`coreecho.data.phantom` makes apical-four-chamber-like echo cines with a known ejection fraction and
writes them in EchoNet-Dynamic's layout; the tests and demos of the library run on them.

Example:
    >>> from coreecho.data.phantom import make_phantom
    >>> frames, meta = make_phantom(ef=55.0, seed=0, n_frames=60, fps=50, heart_rate=75)
    >>> frames.shape, round(meta.ef, 3)
    ((60, 112, 112, 3), 55.0)
"""
