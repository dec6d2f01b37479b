"""The item contract of coreecho datasets in evaluation mode, and the one collate function for such items.

Every dataset of :mod:`coreecho.data` (EchoNet-Dynamic, the CSV-listed :class:`~coreecho.data.echonet.
VideoRegressionDataset`, CAMUS, HMC-QU) hands out items of one shape once it is in *evaluation mode*
(``clips=k``, ``"all"``, ``"every"`` or fixed starts; see :class:`EvalDataset`). An item is a dict
(:class:`EvalItem`):

* ``"video"``: float32 tensor ``[K, 3, T, S, S]``, always 5-D (``K`` clips, also when ``K == 1``);
* ``"label"``: scalar tensor, the target: float32 EF in % for EF datasets, int64 class index for
  classification datasets (HMC-QU); :func:`collate_items` turns labels into one float32 vector;
* ``"name"``: str, the item's name in results and starts files;
* ``"starts"``: int64 tensor ``[K]``, the source frame each clip starts at (``0`` for sequence datasets, whose
  one clip is the whole resampled sequence);
* ``"index"``: int, the item's position in the dataset;
* dataset-specific extras: ``"patient"`` and ``"quality"`` (CAMUS), ``"segments"``, ``"first"`` and ``"last"``
  (HMC-QU), and ``"ef"`` on EF datasets, a deprecated duplicate of ``"label"`` kept for one release.

Training mode (``clips=None``, the default of every dataset) keeps the shapes the training loops expect:
``[3, T, S, S]`` for one view, ``[V, 3, T, S, S]`` for ``V`` views; :func:`collate_items` reads such a 4-D video
as one clip, so one collate serves both modes.

Example:
    >>> import torch
    >>> a = {"video": torch.zeros(2, 3, 4, 8, 8), "label": torch.tensor(50.0), "name": "a.avi",
    ...      "starts": torch.tensor([0, 4]), "index": 0}
    >>> b = {"video": torch.zeros(1, 3, 4, 8, 8), "label": torch.tensor(35.0), "name": "b.avi",
    ...      "starts": torch.tensor([2]), "index": 1}
    >>> check_item(a)["name"]
    'a.avi'
    >>> batch = collate_items([a, b])
    >>> batch["video"].shape, batch["counts"].tolist(), batch["label"].tolist(), batch["name"]
    (torch.Size([3, 3, 4, 8, 8]), [2, 1], [50.0, 35.0], ['a.avi', 'b.avi'])
    >>> [p.tolist() for p in torch.zeros(3).split(batch["counts"].tolist())]  # per-item clips
    [[0.0, 0.0], [0.0]]
"""

from __future__ import annotations

from typing import Any, Mapping, NotRequired, Protocol, Required, Sequence, TypedDict, runtime_checkable

import numpy as np
import torch

from coreecho.errors import DatasetError

__all__ = ["EvalItem", "EvalBatch", "EvalDataset", "check_item", "collate_items", "ITEM_KEYS", "BATCH_KEYS"]

#: Keys every evaluation-mode item has.
ITEM_KEYS = ("video", "label", "name", "starts")
#: Keys every :func:`collate_items` batch has (``"index"`` too when every item has one).
BATCH_KEYS = ("video", "counts", "label", "name", "starts")
# deprecated duplicates that collate_items drops (the batch has them under their new key)
_DEPRECATED_KEYS = ("ef",)


class EvalItem(TypedDict, total=False):
    """One item of a dataset in evaluation mode (see the module docstring for the meaning of each key)."""

    video: Required[torch.Tensor]  # float32 [K, 3, T, S, S]
    label: Required[torch.Tensor]  # scalar: float32 (regression) or int64 (classification)
    name: Required[str]
    starts: Required[torch.Tensor]  # int64 [K]
    index: NotRequired[int]
    ef: NotRequired[torch.Tensor]  # deprecated duplicate of "label" on EF datasets
    patient: NotRequired[str]
    quality: NotRequired[str]


class EvalBatch(TypedDict, total=False):
    """What :func:`collate_items` returns for ``B`` items holding ``sum K`` clips."""

    video: Required[torch.Tensor]  # float32 [sum K, 3, T, S, S]
    counts: Required[torch.Tensor]  # int64 [B], clips per item (split per-clip outputs with .tolist())
    label: Required[torch.Tensor]  # float32 [B]
    name: Required[list[str]]
    starts: Required[list[torch.Tensor]]  # one int64 [K] tensor per item
    index: NotRequired[torch.Tensor]  # int64 [B], when every item has an index


@runtime_checkable
class EvalDataset(Protocol):
    """What code that evaluates a dataset may rely on (``isinstance(ds, EvalDataset)`` checks the members).

    Attributes:
        preprocess: the :class:`~coreecho.models.config.PreprocessConfig` items are made with.
        clips: ``None`` is training mode; anything else (``k``, ``"all"``, ``"every"``) is evaluation mode, whose
            items follow :class:`EvalItem`. Sequence datasets (CAMUS, HMC-QU) have one clip per item whatever
            ``k`` is.
        augment: whether items get the training augmentation (turn it off to evaluate).
    """

    preprocess: Any
    clips: Any
    augment: bool

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...

    @property
    def names(self) -> list[str]:
        """Per-item names, in order (``item["name"]`` of each item)."""
        ...

    @property
    def labels(self) -> np.ndarray:
        """Per-item labels, in order."""
        ...

    def set_starts(self, starts: Mapping[str, Sequence[int]] | None) -> None:
        """Fix the clip starts of every item (``{name: [s1, s2, ...]}``; ``None`` goes back to ``clips``)."""
        ...


def check_item(item: Mapping[str, Any]) -> Mapping[str, Any]:
    """``item`` itself when it follows :class:`EvalItem`; otherwise a :class:`~coreecho.errors.DatasetError`
    that names the first key that does not.

    Example:
        >>> import torch
        >>> check_item({"video": torch.zeros(3, 4, 8, 8), "label": torch.tensor(1.0), "name": "x",
        ...             "starts": torch.tensor([0])})  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        DatasetError: item 'x': "video" must be a float tensor [K, 3, T, S, S], got shape (3, 4, 8, 8)
    """
    name = item.get("name")
    where = f"item {name!r}" if isinstance(name, str) else "item"
    missing = [k for k in ITEM_KEYS if k not in item]
    if missing:
        raise DatasetError(f"{where}: missing key(s) {', '.join(missing)}; an evaluation-mode item has "
                           f"{', '.join(ITEM_KEYS)}")
    video, label, starts = item["video"], item["label"], item["starts"]
    if not (isinstance(video, torch.Tensor) and video.dim() == 5 and video.shape[1] == 3
            and video.shape[-1] == video.shape[-2] and video.is_floating_point()):
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise DatasetError(f'{where}: "video" must be a float tensor [K, 3, T, S, S], got shape {shape}')
    if not (isinstance(label, torch.Tensor) and label.dim() == 0
            and label.dtype in (torch.float32, torch.int64)):
        raise DatasetError(f'{where}: "label" must be a float32 or int64 scalar tensor, got {label!r}')
    if not isinstance(name, str):
        raise DatasetError(f'{where}: "name" must be a str, got {type(name).__name__}')
    if not (isinstance(starts, torch.Tensor) and starts.dtype == torch.int64
            and tuple(starts.shape) == (video.shape[0],)):
        raise DatasetError(f'{where}: "starts" must be an int64 tensor [K] with K = {video.shape[0]} clips, '
                           f"got {starts!r}")
    if "ef" in item and float(item["ef"]) != float(label):
        raise DatasetError(f'{where}: the deprecated "ef" ({float(item["ef"])}) differs from "label" '
                           f"({float(label)})")
    return item


def collate_items(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The DataLoader ``collate_fn`` of dataset items: clips of all items concatenated along dim 0.

    Items may hold different clip counts (``clips="all"``/``"every"``). A 4-D training-mode video
    ``[3, T, S, S]`` counts as one clip. Returns an :class:`EvalBatch`: ``"video"`` ``[sum K, 3, T, S, S]``,
    ``"counts"`` int64 ``[B]``, ``"label"`` float32 ``[B]`` (class indices are exact in float32; call
    ``.long()`` for a classification loss), ``"name"`` and ``"starts"`` lists, ``"index"`` int64 ``[B]`` when
    every item has one, and every other key (``"patient"``, ``"quality"``...) as a list; the deprecated
    ``"ef"`` is dropped (it is ``"label"``).

    Raises:
        DatasetError: an empty batch, or an item without ``"video"`` or ``"label"``.

    Example:
        >>> import torch
        >>> one = {"video": torch.zeros(3, 4, 8, 8), "label": torch.tensor(1), "name": "p1", "patient": "P"}
        >>> out = collate_items([one, dict(one, name="p2")])
        >>> out["video"].shape, out["counts"].tolist(), out["label"].dtype, out["patient"]
        (torch.Size([2, 3, 4, 8, 8]), [1, 1], torch.float32, ['P', 'P'])
    """
    if len(items) == 0:
        raise DatasetError("collate_items: no item to collate")
    for it in items:
        if "video" not in it or "label" not in it:
            raise DatasetError(f"collate_items: item {it.get('name', '?')!r} lacks "
                               f"{'video' if 'video' not in it else 'label'}; dataset items must follow "
                               "coreecho.data.contract.EvalItem")
    videos = [it["video"] if it["video"].dim() == 5 else it["video"][None] for it in items]
    out: dict[str, Any] = {
        "video": torch.cat(videos),
        "counts": torch.tensor([v.shape[0] for v in videos], dtype=torch.int64),
        "label": torch.stack([torch.as_tensor(it["label"]).to(torch.float32).reshape(()) for it in items]),
        "name": [it.get("name") for it in items],
        "starts": [torch.as_tensor(it.get("starts", []), dtype=torch.int64) for it in items],
    }
    if all("index" in it for it in items):
        out["index"] = torch.tensor([int(it["index"]) for it in items], dtype=torch.int64)
    extras = [k for k in items[0] if k not in out and k not in _DEPRECATED_KEYS and k != "index"]
    for key in extras:
        out[key] = [it.get(key) for it in items]
    return out
