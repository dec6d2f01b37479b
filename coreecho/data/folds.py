"""Cross-validation splits at the patient level: CAMUS's official blocks, HMC-QU's stratified folds, generic ones.

Every splitter takes one entry per item (video) and returns ``k`` pairs ``(train_indices, test_indices)`` of
int64 item indices (sorted), like scikit-learn's splitters: the test sets are disjoint and cover every item,
and all items of a patient fall in the same fold.

* :func:`camus_folds` - the CAMUS protocol of CoReEcho's transfer experiments (10 folds of consecutive
  patients in sorted patient order; 50 patients per fold for the 500 patients of CAMUS).
* :func:`hmcqu_folds` - patient-level folds stratified by the patient's label (MI if any of the patient's
  recordings is MI-positive), shuffled with a seed.
* :func:`group_folds` - seeded patient-level folds for any dataset, stratified when labels are given.

Example:
    >>> folds = camus_folds([f"patient{i:04d}" for i in range(1, 21)], k=4)
    >>> [len(test) for _, test in folds], folds[0][1][:3].tolist()
    ([5, 5, 5, 5], [0, 1, 2])
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from coreecho.errors import InputError

__all__ = ["camus_folds", "hmcqu_folds", "group_folds", "check_folds", "Folds"]

#: ``k`` pairs of ``(train_indices, test_indices)``.
Folds = list[tuple[np.ndarray, np.ndarray]]


def _check_k(k: int, n_groups: int, what: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise InputError(f"k={k!r}", "the number of folds must be an integer >= 2")
    if k > n_groups:
        raise InputError(f"k={k}", f"more folds than {what} ({n_groups}); use k <= {n_groups}")
    return int(k)


def _as_folds(fold_of_item: np.ndarray, k: int) -> Folds:
    idx = np.arange(len(fold_of_item), dtype=np.int64)
    return [(idx[fold_of_item != f], idx[fold_of_item == f]) for f in range(k)]


def camus_folds(patients: Sequence[str], k: int = 10, *, universe: Sequence[str] | None = None) -> Folds:
    """CAMUS folds: consecutive blocks of patients in sorted patient order.

    The sorted list of patients (``universe``, or the patients of the items) is cut into ``k`` consecutive
    blocks of (nearly) equal size (``numpy.array_split`` sizes: the first ``n % k`` blocks get one extra
    patient); fold ``f`` tests on the items of block ``f``. With the 500 CAMUS patients and ``k=10`` this gives
    the official blocks ``patient0001..0050``, ``patient0051..0100``, ...

    Args:
        patients: the patient of each item (e.g. ``"patient0042"``).
        k: number of folds.
        universe: all patients that define the blocks. Pass every patient of the dataset folder when the items
            are a subset (e.g. only good and medium image quality), so that the blocks stay the official ones;
            a fold may then hold fewer items than others.

    Returns:
        ``k`` pairs ``(train_indices, test_indices)``.

    Raises:
        InputError: ``k < 2``, more folds than patients, or an item whose patient is not in ``universe``.

    Example:
        >>> folds = camus_folds(["p3", "p1", "p2", "p4"], k=2)
        >>> [t.tolist() for _, t in folds]
        [[1, 2], [0, 3]]
    """
    items = [str(p) for p in patients]
    if not items:
        raise InputError("patients", "no items to split")
    order = sorted({str(p) for p in universe}) if universe is not None else sorted(set(items))
    k = _check_k(k, len(order), "patients")
    block = {}
    for f, chunk in enumerate(np.array_split(np.arange(len(order)), k)):
        for i in chunk:
            block[order[int(i)]] = f
    missing = sorted(set(items) - set(block))
    if missing:
        raise InputError("universe", f"does not list patient(s) {', '.join(missing[:3])} of the items")
    return _as_folds(np.array([block[p] for p in items], dtype=np.int64), k)


def group_folds(groups: Sequence[Any], k: int = 5, *, labels: Sequence[Any] | None = None, seed: int = 0) -> Folds:
    """Seeded patient-level folds, stratified by the patient's label when ``labels`` are given.

    A patient's label is the maximum of its items' labels (for MI: positive when any recording is positive).
    Without labels, patients are shuffled with ``seed`` and dealt into ``k`` folds of (nearly) equal patient
    counts. With labels, :class:`sklearn.model_selection.StratifiedKFold` (shuffled, ``random_state=seed``)
    splits the patients; when a class has fewer patients than ``k`` it falls back to dealing the patients of
    each class round-robin after a seeded shuffle.

    Args:
        groups: the patient of each item.
        k: number of folds.
        labels: the class of each item (optional).
        seed: seed of the shuffle.

    Returns:
        ``k`` pairs ``(train_indices, test_indices)``.

    Example:
        >>> folds = group_folds(["a", "a", "b", "c", "d"], k=2, seed=0)
        >>> sorted(len(t) for _, t in folds)
        [2, 3]
    """
    items = [str(g) for g in groups]
    if not items:
        raise InputError("groups", "no items to split")
    uniq = sorted(set(items))
    k = _check_k(k, len(uniq), "patients")
    rng = np.random.default_rng(seed)
    fold_of_group: dict[str, int] = {}
    if labels is None:
        perm = rng.permutation(len(uniq))
        for pos, gi in enumerate(perm):
            fold_of_group[uniq[int(gi)]] = pos % k
    else:
        lab = list(labels)
        if len(lab) != len(items):
            raise InputError("labels", f"got {len(lab)} labels for {len(items)} items")
        per_group: dict[str, Any] = {}
        for g, y in zip(items, lab):
            per_group[g] = y if g not in per_group else max(per_group[g], y)
        y_groups = np.array([per_group[g] for g in uniq])
        _, counts = np.unique(y_groups, return_counts=True)
        if counts.min() >= k:
            from sklearn.model_selection import StratifiedKFold  # noqa: PLC0415

            skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=int(seed) % (2**32))
            for f, (_, test) in enumerate(skf.split(np.zeros(len(uniq)), y_groups)):
                for gi in test:
                    fold_of_group[uniq[int(gi)]] = f
        else:
            offset = 0
            for cls in np.unique(y_groups):
                members = np.flatnonzero(y_groups == cls)
                for pos, gi in enumerate(rng.permutation(members)):
                    fold_of_group[uniq[int(gi)]] = (offset + pos) % k
                offset += len(members)
    return _as_folds(np.array([fold_of_group[g] for g in items], dtype=np.int64), k)


def hmcqu_folds(patients: Sequence[str], labels: Sequence[int], k: int = 5, seed: int = 0) -> Folds:
    """HMC-QU folds: patient-level, stratified by MI, seeded (CoReEcho's transfer protocol used 5 folds).

    Args:
        patients: the patient of each recording.
        labels: MI label of each recording (1 = MI, 0 = no MI).
        k: number of folds.
        seed: seed of the shuffle.

    Returns:
        ``k`` pairs ``(train_indices, test_indices)``; see :func:`group_folds`.

    Example:
        >>> labels = [1, 0, 1, 0]
        >>> folds = hmcqu_folds(["ES0001", "ES0002", "ES0003", "ES0004"], labels, k=2, seed=1)
        >>> [sorted(labels[i] for i in test) for _, test in folds]  # one MI and one non-MI patient per fold
        [[0, 1], [0, 1]]
    """
    return group_folds(patients, k, labels=[int(v) for v in labels], seed=seed)


def check_folds(folds: Folds, n_items: int, groups: Sequence[Any] | None = None) -> None:
    """Raise :class:`InputError` unless the test sets are disjoint, cover ``0..n_items-1`` and keep patients whole.

    Example:
        >>> check_folds(camus_folds(["a", "b", "c"], k=3), 3)
    """
    seen = np.zeros(n_items, dtype=np.int64)
    for f, (train, test) in enumerate(folds):
        train, test = np.asarray(train), np.asarray(test)
        if len(test) == 0:
            raise InputError(f"fold {f}", "has an empty test set")
        if np.intersect1d(train, test).size:
            raise InputError(f"fold {f}", "train and test sets overlap")
        if train.size and (train.min() < 0 or train.max() >= n_items) or test.min() < 0 or test.max() >= n_items:
            raise InputError(f"fold {f}", f"has indices outside 0..{n_items - 1}")
        seen[test] += 1
        if groups is not None:
            g = np.asarray([str(v) for v in groups])
            if set(g[train]) & set(g[test]):
                raise InputError(f"fold {f}", "a patient is in both the train and the test set")
    if not (seen == 1).all():
        raise InputError("folds", "the test sets must be disjoint and cover every item exactly once")
