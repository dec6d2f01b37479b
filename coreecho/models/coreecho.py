"""The CoReEcho model: UniFormer encoder + shallow MLP head + the config that says how to feed it.

The model layer holds data and computes; it imports nothing above itself (no inference, weights, analysis, data,
training or CLI code). Two kinds of state beside the weights are declared on the class: ``calibration`` (a
conformal EF interval with its shift detector, :class:`coreecho.analysis.conformal.Calibration`) and
``shift_detector`` (what inference uses to flag distribution shift), both ``None`` until
:func:`coreecho.calibrate`, :func:`coreecho.analysis.shift.attach` or :func:`coreecho.load_model` sets them; the
types they must satisfy are the protocols :class:`CalibrationLike` and :class:`ShiftCheck` below.

The high-level methods (:meth:`CoReEcho.predict_ef`, :meth:`~CoReEcho.embed`, :meth:`~CoReEcho.save_pretrained`,
:meth:`~CoReEcho.push_to_hub`, :meth:`~CoReEcho.from_pretrained`) do their work in the layers above
(:mod:`coreecho.inference`, :mod:`coreecho.hub`): each calls an operation by name
(:func:`coreecho._lazy.operation`), which the package root :mod:`coreecho` binds to its implementation. The
import graph stays one-way; the binding is declared in one place.

Example:
    >>> import torch
    >>> from coreecho import CoReEcho
    >>> from coreecho.models.config import ModelConfig
    >>> cfg = ModelConfig(architecture="uniformer_custom",
    ...                   encoder_args={"depth": [1, 1, 1, 1], "embed_dim": [16, 32, 64, 128], "head_dim": 16})
    >>> model = CoReEcho(cfg).eval()
    >>> x = torch.zeros(2, 3, 8, 112, 112)
    >>> model.encoder(x).shape, model(x).shape
    (torch.Size([2, 128]), torch.Size([2]))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from coreecho._lazy import operation
from coreecho.models.args import check_model_args
from coreecho.models.config import ModelConfig
from coreecho.models.head import EF_BIAS, RegressionHead
from coreecho.models.uniformer import build_uniformer
from coreecho.video.pipeline import ClipPipeline

__all__ = ["CoReEcho", "CalibrationLike", "ShiftCheck"]


class ShiftCheck(Protocol):
    """What a model's ``shift_detector`` does (:class:`coreecho.analysis.shift.ShiftDetector` is one)."""

    def assess(self, embedding: Any) -> tuple[float, bool]:
        """Out-of-distribution score of one embedding ``[D]`` and whether it exceeds the calibrated threshold."""


class CalibrationLike(Protocol):
    """What a model's ``calibration`` holds (:class:`coreecho.analysis.conformal.Calibration` is one)."""

    interval: Any  # a ConformalInterval (EF interval) or None
    detector: ShiftCheck | None
    coverage: float
    fingerprint: str | None  # which weights it was fitted for (coreecho.analysis.conformal.state_fingerprint)


class CoReEcho(nn.Module):
    """Echo video → embedding → EF.

    Attributes:
        encoder: the UniFormer video encoder; ``encoder(x)`` gives ``[B, D]`` embeddings.
        head: the regression head; ``head(embedding)`` gives ``[B]`` (EF in %).
        config: the :class:`~coreecho.models.config.ModelConfig` this model was built from.
        calibration: the conformal EF interval and shift detector fitted for these weights
            (:func:`coreecho.calibrate`; saved and loaded with them), or ``None``.
        shift_detector: the detector inference uses for ``shift_score``/``is_shifted`` (normally
            ``calibration.detector``; :func:`coreecho.analysis.shift.attach` sets another), or ``None``.

    Args:
        config: architecture, head and preprocessing; defaults to CoReEcho's UniFormer-S setup.
        source: what the config came from (a file name), named first in error messages.

    Raises:
        ConfigError: an invalid config (:func:`coreecho.models.args.check_model_args`), before anything is
            allocated.
    """

    calibration: CalibrationLike | None = None
    shift_detector: ShiftCheck | None = None
    #: Operations the high-level methods call (bound by the package root, see the module docstring).
    OPERATIONS: ClassVar[tuple[str, ...]] = ("predict_ef", "embed", "save_pretrained", "push_to_hub", "load_model")

    def __init__(self, config: ModelConfig | None = None, *, source: str = "config"):
        super().__init__()
        self.config = config if config is not None else ModelConfig()
        enc_args, head_args = check_model_args(self.config, source)  # ConfigError before anything is allocated
        self.encoder = build_uniformer(self.config.architecture, num_classes=0, **enc_args)
        self.head = RegressionHead(self.encoder.num_features, **head_args)

    @property
    def embed_dim(self) -> int:
        """Size of the embedding (512 for UniFormer-S)."""
        return self.encoder.num_features

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model's parameters."""
        return next(self.parameters()).dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed clips ``(B, 3, T, size, size)`` → head output (``[B]`` EF for the default head)."""
        return self.head(self.encoder(x))

    def reset_head(self, out_dim: int = 1, *, bias_init: float | None = None, hidden_dim: int | None = None,
                   dropout: float | None = None) -> "CoReEcho":
        """Replace the head by a fresh one with ``out_dim`` outputs (for fine-tuning), keeping the encoder.

        The config's ``head_args`` and ``task`` are updated so that a saved model rebuilds the new head.

        Example:
            >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
            ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8}))
            >>> model.reset_head(2).head[-1].out_features
            2
        """
        args = dict(self.config.head_args)
        args["out_dim"] = out_dim
        if hidden_dim is not None:
            args["hidden_dim"] = hidden_dim
        if dropout is not None:
            args["dropout"] = dropout
        args["bias_init"] = bias_init if bias_init is not None else (EF_BIAS if out_dim == 1 else None)
        head = RegressionHead(self.embed_dim, **args)
        self.head = head.to(device=self.device, dtype=self.dtype)
        self.config.head_args = args
        if out_dim != 1 or bias_init is not None:
            self.config.task = "custom"
        return self

    def pipeline(self, train: bool = False, **kwargs: Any) -> Any:
        """The :class:`~coreecho.video.pipeline.ClipPipeline` that feeds this model the input it was trained on.

        Built from ``config.preprocessing`` (clip length, stride or whole-sequence sampling, size, mean/std) and
        ``config.test_clips``; every consumer of the library (inference, datasets, evaluation, fine-tuning,
        Grad-CAM) uses it, so the same video and starts give the same tensor everywhere.

        Args:
            train: random clips and the pad-and-crop augmentation (needs ``rng=`` per call).
            **kwargs: ``backend``, ``limits``, ``clips`` (default policy) of the pipeline.

        Example:
            >>> import numpy as np
            >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
            ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8})).eval()
            >>> batch = model.pipeline()(np.zeros((150, 112, 112), np.uint8))
            >>> batch.x.shape, batch.starts
            (torch.Size([3, 3, 36, 112, 112]), [0, 5, 9])
        """
        kwargs.setdefault("clips", self.config.test_clips)
        return ClipPipeline(self.config.preprocessing, train=train, **kwargs)

    # ------------------------------------------------------------------- high-level methods (layers above)
    def predict_ef(self, video: Any, *, clips: int | str | None = None, starts: Any = None,
                   batch_size: int | None = None, return_details: bool = False, **kwargs: Any) -> Any:
        """EF (%) of one video or a list of videos; see :func:`coreecho.inference.predict_ef`.

        Example:
            >>> from coreecho.data.phantom import make_phantom
            >>> frames, meta = make_phantom(ef=60, seed=0)
            >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
            ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8})).eval()
            >>> isinstance(model.predict_ef(frames), float)
            True
        """
        return operation("predict_ef")(video, model=self, clips=clips, starts=starts, batch_size=batch_size,
                          return_details=return_details, **kwargs)

    def embed(self, video: Any, *, clips: int | str | None = None, starts: Any = None, batch_size: int | None = None,
              return_details: bool = False, **kwargs: Any) -> Any:
        """Embedding (mean over clips) of one video or a list; see :func:`coreecho.inference.embed`.

        Example:
            >>> from coreecho.data.phantom import make_phantom
            >>> frames, _ = make_phantom(ef=45, seed=1)
            >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
            ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8})).eval()
            >>> model.embed(frames).shape
            (64,)
        """
        return operation("embed")(video, model=self, clips=clips, starts=starts, batch_size=batch_size,
                     return_details=return_details, **kwargs)

    def save_pretrained(self, directory: str | Path, **card: Any) -> Path:
        """Write ``config.json``, ``model.safetensors``, the calibration (if any) and a model card to ``directory``.

        See :func:`coreecho.hub.folder.save_pretrained`.
        """
        return operation("save_pretrained")(self, directory, **card)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload to the Hugging Face Hub; see :func:`coreecho.hub.folder.push_to_hub`."""
        return operation("push_to_hub")(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> "CoReEcho":
        """The same as :func:`coreecho.load_model` (a registered name, folder, ``.pth`` or Hub repo id).

        Example:
            >>> CoReEcho.from_pretrained("phantom-tiny", device="cpu").embed_dim  # doctest: +SKIP
            64
        """
        return operation("load_model")(name_or_path, **kwargs)
