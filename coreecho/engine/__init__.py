"""The one inference loop: decode ahead in workers, batched forward passes, ordered predictions.

``predict_ef``, ``embed``, ``coreecho predict/embed/evaluate``, evaluation, calibration, the transfer recipes'
embeddings and predictions and the phantom benchmark are thin calls into :func:`stream`, the one loop of every
forward pass over data (training steps and Grad-CAM keep their own forward: they need gradients)::

    items (videos, or a dataset)  →  loader: worker processes run the model's ClipPipeline ahead of the model
                                     and hand over uint8 clips (pinned for a GPU)
                                  →  the model input made where the model runs, straight into each pass's batch
                                     (coreecho.video.model_input: bit-identical to normalising in the worker)
                                  →  clips gathered into forward passes of `batch_policy` clips
                                     (by activation size on a CPU, by free memory on a GPU), in `precision`
                                  →  one Prediction per item, in input order, as soon as its clips are done

Memory is bounded: each worker keeps at most ``prefetch`` videos ready, and the model sees one pass of clips at
a time. Per-video failures (:class:`~coreecho.errors.CoReEchoError`) come back as error predictions when
``errors="nan"``, or are raised in the caller's process when ``errors="raise"``.

One job per module: :mod:`~coreecho.engine.loop` (:func:`stream`), :mod:`~coreecho.engine.items` (what it runs:
videos, dataset items), :mod:`~coreecho.engine.policy` (clips per pass, workers) and :mod:`~coreecho.engine.forward`
(the one precision path: :func:`encode`, :func:`apply_head`, :func:`mixed_forward`). Every name is importable from
``coreecho.engine``.

Example:
    >>> import numpy as np, coreecho
    >>> from coreecho.engine import stream
    >>> model = coreecho.load_model("phantom-tiny")  # doctest: +SKIP
    >>> [p.ef for p in stream([np.zeros((60, 64, 64), np.uint8)], model)]  # doctest: +SKIP
    [31.2]
"""

from __future__ import annotations

from coreecho.engine.forward import apply_head, encode, mixed_forward
from coreecho.engine.items import DatasetItems, EncoderHead, Item, VideoItems, dataset_settings, source_name
from coreecho.engine.loop import EngineWarning, stream
from coreecho.engine.policy import (
    CPU_ACTIVATION_BYTES,
    GPU_MEMORY_FRACTION,
    MAX_BATCH,
    batch_policy,
    clips_per_pass,
    default_workers,
    is_compute_bound,
)

__all__ = ["stream", "batch_policy", "clips_per_pass", "default_workers", "VideoItems", "DatasetItems", "EncoderHead",
           "Item", "dataset_settings", "source_name", "encode", "apply_head", "mixed_forward", "is_compute_bound",
           "EngineWarning", "CPU_ACTIVATION_BYTES", "GPU_MEMORY_FRACTION", "MAX_BATCH"]
