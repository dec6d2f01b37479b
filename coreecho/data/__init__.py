"""Datasets of coreecho: real on-disk layouts (EchoNet-Dynamic, CSV lists, CAMUS, HMC-QU) and synthetic phantoms.

* :mod:`coreecho.data.contract`: what an evaluation-mode item is (:class:`~coreecho.data.contract.EvalItem`) and the
  one collate function (:func:`~coreecho.data.contract.collate_items`);
* :mod:`coreecho.data.echonet`: EchoNet-Dynamic and CSV-listed videos, items of clips
  (:class:`~coreecho.data.echonet.ClipDataset`);
* :mod:`coreecho.data.sequence`: the base of the datasets whose item is one resampled sequence, used by
  :mod:`coreecho.data.camus` and :mod:`coreecho.data.hmcqu`;
* :mod:`coreecho.data.folds`: cross-validation folds that keep patients whole;
* :mod:`coreecho.data.phantom`: apical-four-chamber-like echo cines with a known ejection fraction, and
  :mod:`coreecho.data.layouts`, which writes them in each dataset's layout (the tests and demos run on them).

Example:
    >>> from coreecho.data.phantom import make_phantom
    >>> frames, meta = make_phantom(ef=55.0, seed=0, n_frames=60, fps=50, heart_rate=75)
    >>> frames.shape, round(meta.ef, 3)
    ((60, 112, 112, 3), 55.0)
"""
