"""The one way the library derives seeds and random generators from integers.

Every seeded stream (a fold of a transfer recipe, an epoch, a training step, a dataset item) is a pure function of
a tuple of integers, through :class:`numpy.random.SeedSequence`: order matters, each part is taken modulo 2**32,
and nearby tuples give unrelated streams.

Example:
    >>> derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 1, 3)
    True
    >>> float(rng(0, 1).random()) == float(rng(0, 1).random())
    True
"""

from __future__ import annotations

import numpy as np

__all__ = ["derive_seed", "rng"]


def _sequence(parts: tuple[int, ...]) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts])


def derive_seed(*parts: int) -> int:
    """A 63-bit seed (for ``torch.manual_seed``, a ``torch.Generator``...) from integers, order mattering.

    Example:
        >>> 0 <= derive_seed(7) < 2**63
        True
    """
    state = _sequence(parts).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def rng(*parts: int) -> np.random.Generator:
    """A numpy generator seeded by integers (``np.random.default_rng([p & 0xFFFFFFFF for p in parts])``).

    Example:
        >>> int(rng(1, 2).integers(0, 10**6)) == int(np.random.default_rng([1, 2]).integers(0, 10**6))
        True
    """
    return np.random.default_rng(_sequence(parts))
