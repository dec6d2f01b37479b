"""The base of every dataset: items made by the model's :class:`~coreecho.video.pipeline.ClipPipeline`.

Example:
    >>> from coreecho.data.echonet import ClipDataset
    >>> issubclass(ClipDataset, PipelineDataset)
    True
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from coreecho.errors import ConfigError, InputError
from coreecho.models.config import PreprocessConfig

__all__ = ["PipelineDataset", "check_clips", "resolve_preprocess"]


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
    """

    preprocess: PreprocessConfig
    pipeline: Any
    clips: Any = None
    epoch: int = 0

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
