"""The CoReEcho model: UniFormer encoder + shallow MLP head + the config that says how to feed it.

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
from typing import Any

import torch
from torch import nn

from coreecho.models.config import ModelConfig
from coreecho.models.head import EF_BIAS, RegressionHead
from coreecho.models.uniformer import build_uniformer

__all__ = ["CoReEcho"]


class CoReEcho(nn.Module):
    """Echo video → embedding → EF.

    Attributes:
        encoder: the UniFormer video encoder; ``encoder(x)`` gives ``[B, D]`` embeddings.
        head: the regression head; ``head(embedding)`` gives ``[B]`` (EF in %).
        config: the :class:`~coreecho.models.config.ModelConfig` this model was built from.

    Args:
        config: architecture, head and preprocessing; defaults to CoReEcho's UniFormer-S setup.
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        from coreecho.models.build import check_model_args

        self.config = config if config is not None else ModelConfig()
        enc_args, head_args = check_model_args(self.config)  # ConfigError before anything is allocated
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
            (torch.Size([3, 3, 36, 112, 112]), [0, 3, 5])
        """
        from coreecho.video.pipeline import ClipPipeline

        kwargs.setdefault("clips", self.config.test_clips)
        return ClipPipeline(self.config.preprocessing, train=train, **kwargs)

    # Inference helpers live in coreecho.inference so that this module stays small.
    def predict_ef(self, video: Any, *, clips: int | str | None = None, starts: Any = None,
                   batch_size: int = 16, return_details: bool = False, **kwargs: Any) -> Any:
        """EF (%) of one video or a list of videos; see :func:`coreecho.inference.predict_ef`.

        Example:
            >>> from coreecho.data.phantom import make_phantom
            >>> frames, meta = make_phantom(ef=60, seed=0)
            >>> model = CoReEcho(ModelConfig(architecture="uniformer_custom", encoder_args={
            ...     "depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 64], "head_dim": 8})).eval()
            >>> isinstance(model.predict_ef(frames), float)
            True
        """
        from coreecho.inference import predict_ef

        return predict_ef(video, model=self, clips=clips, starts=starts, batch_size=batch_size,
                          return_details=return_details, **kwargs)

    def embed(self, video: Any, *, clips: int | str | None = None, starts: Any = None, batch_size: int = 16,
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
        from coreecho.inference import embed

        return embed(video, model=self, clips=clips, starts=starts, batch_size=batch_size,
                     return_details=return_details, **kwargs)

    def save_pretrained(self, directory: str | Path, **card: Any) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a model card to ``directory``.

        See :func:`coreecho.hub.save_pretrained`.
        """
        from coreecho.hub import save_pretrained

        return save_pretrained(self, directory, **card)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload to the Hugging Face Hub; see :func:`coreecho.hub.push_to_hub`."""
        from coreecho.hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)
