"""The base of every dataset: items made by the model's :class:`~coreecho.video.pipeline.ClipPipeline`.

Example:
    >>> from coreecho.data.echonet import ClipDataset
    >>> issubclass(ClipDataset, PipelineDataset)
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from coreecho.errors import ConfigError, InputError
from coreecho.models.config import PreprocessConfig

__all__ = ["PipelineDataset", "check_clips", "resolve_preprocess", "HANDOVERS", "batch_clips"]

#: Values of :attr:`PipelineDataset.handover`.
HANDOVERS = ("tensor", "pixels")


def check_clips(clips: Any) -> Any:
    """``clips`` itself when it is a dataset's clip mode: ``None`` (training mode), a positive int, ``"all"`` or
    ``"every"`` (evaluation mode, see :mod:`coreecho.data.contract`); otherwise an
    :class:`~coreecho.errors.InputError`.

    Example:
        >>> check_clips(3), check_clips(None)
        (3, None)
    """
    if not (clips is None or clips in ("all", "every")
            or (isinstance(clips, int) and not isinstance(clips, bool) and clips >= 1)):
        raise InputError("clips", f"expected None, a positive int, 'all' or 'every', got {clips!r}")
    return clips


def resolve_preprocess(preprocess: PreprocessConfig | None, overrides: dict[str, Any]) -> PreprocessConfig:
    """``preprocess`` (default: the CoReEcho recipe) with the keyword overrides applied; bad values are an
    :class:`~coreecho.errors.InputError` naming the field."""
    try:
        return (preprocess or PreprocessConfig()).replace(**overrides)
    except ConfigError as err:
        raise InputError("dataset", str(err)) from None


class PipelineDataset(Dataset):
    """Shared by the datasets: the recipe (:attr:`preprocess`), the pipeline, switchable augmentation, epochs.

    Attributes:
        preprocess: the :class:`~coreecho.models.config.PreprocessConfig` items are made with.
        pipeline: the :class:`~coreecho.video.pipeline.ClipPipeline` (its training mode is :attr:`augment`).
        clips: ``None`` for training mode, else evaluation mode (items follow :mod:`coreecho.data.contract`).
        epoch: selects the random stream (see :meth:`set_epoch`).
        handover: ``"tensor"`` (default): items carry the float32 model input under ``"video"``. ``"pixels"``
            (datasets that support it: :class:`~coreecho.data.echonet.ClipDataset`): items carry the uint8 clips
            instead, ``"pixels"`` ``[..., T, S, S, 3]`` (a quarter of the bytes), with ``"offsets"`` (int64 ``[..., 2]``
            training crops, :func:`coreecho.video.augment.draw_offsets`; zeros without augmentation) and ``"norm"``
            (float64 ``[2, 3]``: mean, std); :func:`batch_clips` makes the same ``"video"`` from a batch of them,
            bit for bit, on the device. The training loop and the inference engine use it.
    """

    preprocess: PreprocessConfig
    pipeline: Any
    clips: Any = None
    epoch: int = 0
    handover: str = "tensor"

    @property
    def augment(self) -> bool:
        """Whether items get the training augmentation (switchable: it is the pipeline's training mode)."""
        return self.pipeline.train

    @augment.setter
    def augment(self, value: bool) -> None:
        self.pipeline.train = bool(value)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of an epoch (call before iterating; DataLoader workers get a copy)."""
        self.epoch = int(epoch)

    # the recipe, for code that reads it off the dataset
    frames = property(lambda self: self.preprocess.frames)
    stride = property(lambda self: self.preprocess.stride)
    size = property(lambda self: self.preprocess.size)
    pad = property(lambda self: self.preprocess.pad)
    temporal = property(lambda self: self.preprocess.temporal)


def batch_clips(batch: dict[str, Any], device: str | torch.device) -> torch.Tensor:
    """The model input of a collated batch on ``device``: its ``"video"``, or the same tensor made there from its
    uint8 ``"pixels"``, ``"offsets"`` and ``"norm"`` (see :attr:`PipelineDataset.handover`) in one pass
    (:func:`coreecho.video.model_input.to_model_input`; a non-blocking copy of uint8 from pinned memory to a GPU).

    Example:
        >>> import numpy as np, torch
        >>> from coreecho.video.transforms import normalize
        >>> px = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 2, 4, 8, 8, 3), dtype=np.uint8))
        >>> norm = torch.tensor([[30.0, 30.0, 30.0], [50.0, 50.0, 50.0]], dtype=torch.float64).expand(2, 2, 3)
        >>> x = batch_clips({"pixels": px, "offsets": torch.zeros(2, 2, 2, dtype=torch.int64), "norm": norm}, "cpu")
        >>> x.shape, torch.equal(x[1], normalize(px[1], (30.0,) * 3, (50.0,) * 3))
        (torch.Size([2, 2, 3, 4, 8, 8]), True)
    """
    if "pixels" not in batch:
        return batch["video"].to(device, non_blocking=True)
    from coreecho.video.model_input import to_model_input  # noqa: PLC0415

    px = batch["pixels"]
    lead = tuple(px.shape[:-4])
    mean, std = batch["norm"].reshape(-1, 2, 3)[0].tolist()
    x = to_model_input(px.reshape((-1,) + tuple(px.shape[-4:])), mean, std,
                       offsets=batch["offsets"].reshape(-1, 2), device=device)
    return x.reshape(lead + tuple(x.shape[1:]))
