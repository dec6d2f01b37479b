"""Training of CoReEcho: stage 1 (Rank-N-Contrast), stage 2 (EF head), evaluation, multi-GPU, exact resume.

Nothing here is imported by ``import coreecho``: inference never loads training code. Names are imported lazily.

- :class:`TrainConfig` — the paper's recipe as defaults (:mod:`coreecho.train.config`).
- :func:`train_stage1` / :func:`train_stage2` — the two stages (:mod:`~coreecho.train.stage1`,
  :mod:`~coreecho.train.stage2`); the shared loop, checkpoints and resume are in :mod:`~coreecho.train.engine`.
- :func:`evaluate` — MAE / RMSE / R² with bootstrap intervals and a per-video table (:mod:`~coreecho.train.evaluation`).
- :func:`load_starts` — the official test starts file, read with a restricted unpickler (:mod:`~coreecho.train.starts`).

Example:
    >>> from coreecho.train import TrainConfig, train_stage1, train_stage2, evaluate
    >>> s1 = train_stage1(TrainConfig(data="EchoNet-Dynamic", out="runs/stage1"))  # doctest: +SKIP
    >>> s2 = train_stage2(TrainConfig(data="EchoNet-Dynamic", out="runs/stage2", init=str(s1.out)))  # doctest: +SKIP
    >>> evaluate(s2.final_model, "EchoNet-Dynamic", starts="test_start_indexes.pkl").metrics  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coreecho._lazy import lazy_exports

__all__ = ["TrainConfig", "train_stage1", "train_stage2", "evaluate", "EvalResult", "TrainResult",
           "TrainingInterrupted", "load_starts", "save_starts", "regression_metrics"]

_LAZY = {
    "TrainConfig": "coreecho.train.config",
    "train_stage1": "coreecho.train.stage1",
    "train_stage2": "coreecho.train.stage2",
    "evaluate": "coreecho.train.evaluation",
    "EvalResult": "coreecho.train.evaluation",
    "TrainResult": "coreecho.train.engine",
    "TrainingInterrupted": "coreecho.train.engine",
    "load_starts": "coreecho.train.starts",
    "save_starts": "coreecho.train.starts",
    "regression_metrics": "coreecho.train.metrics",
}

if TYPE_CHECKING:  # pragma: no cover
    from coreecho.train.config import TrainConfig
    from coreecho.train.engine import TrainingInterrupted, TrainResult
    from coreecho.train.evaluation import EvalResult, evaluate
    from coreecho.train.metrics import regression_metrics
    from coreecho.train.stage1 import train_stage1
    from coreecho.train.stage2 import train_stage2
    from coreecho.train.starts import load_starts, save_starts


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
