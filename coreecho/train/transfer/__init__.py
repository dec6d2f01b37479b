"""Transfer recipes: the CoReEcho encoder as a backbone for CAMUS (EF), HMC-QU (MI) or any labelled videos.

Three recipes (``mode``), each for regression or classification:

* ``"linear"`` - linear probing: the encoder is frozen, every video's embedding is computed once (mean over its
  clips), and a scikit-learn linear model is fitted on standardised embeddings: ridge regression with the
  penalty chosen by efficient leave-one-out (``RidgeCV``), or logistic regression (L2, ``C=1``).
* ``"mlp"`` - MLP probing (stage-2 style): the encoder is frozen and a fresh CoReEcho head
  (``BatchNorm → Dropout → Linear → BatchNorm → GELU → Dropout → Linear``,
  :func:`~coreecho.train.transfer.recipes.fresh_head`) is trained on the precomputed embeddings with AdamW (L1
  loss for regression, cross-entropy for classification).
* ``"full"`` - full fine-tuning: encoder and a fresh head are trained end to end on clips (AdamW, a small
  encoder learning rate, a larger head learning rate, pad-and-crop augmentation) for a few epochs.

Regression heads are trained on standardised targets (``(y - mean) / sd`` of the training fold) and the
scaling is folded into the last layer afterwards, so the head outputs label units (EF in %) and the learning
rate does not depend on the label's scale. Classification heads have one output per class.

:func:`cross_validate` runs a recipe over folds (the dataset's protocol by default: CAMUS's 10 official blocks,
HMC-QU's 5 stratified patient-level folds) and reports the paper's metrics per fold and as mean ± sd over
folds, plus the metrics of the pooled out-of-fold predictions:

* regression: Pearson correlation, MAE, RMSE and R², overall and per image quality when the dataset has one
  (CAMUS: ``good``, ``medium``, ``poor`` and ``good+medium``, the subset CoReEcho reports);
* classification: F1, accuracy, sensitivity, specificity, precision (class 1 positive) and ROC AUC.

:func:`finetune` fits a recipe on a whole dataset and returns a :class:`~coreecho.CoReEcho` with the new
head, ready for ``save_pretrained`` and ``predict_ef``.

One job per module: :mod:`~coreecho.train.transfer.config` (:class:`TransferConfig`),
:mod:`~coreecho.train.transfer.data` (what the recipes read from a dataset), :mod:`~coreecho.train.transfer.passes`
(embeddings and predictions of a frozen model, through :func:`coreecho.engine.stream`),
:mod:`~coreecho.train.transfer.recipes` (the fresh head and the three recipes' training),
:mod:`~coreecho.train.transfer.cross_validation`, :mod:`~coreecho.train.transfer.finetuning` and
:mod:`~coreecho.train.transfer.reports` (metrics, :class:`TransferResult`, the paper's numbers). The names below
are importable from ``coreecho.train.transfer`` itself.

Example:
    >>> from coreecho import load_model
    >>> from coreecho.data.camus import CAMUS
    >>> model = load_model("coreecho-echonet")  # doctest: +SKIP
    >>> pre = model.config.preprocessing  # doctest: +SKIP
    >>> ds = CAMUS("CAMUS_public", frames=pre.frames, size=pre.size, mean=pre.mean, std=pre.std)  # doctest: +SKIP
    >>> result = cross_validate(model, ds, mode="mlp", dataset_name="camus")  # doctest: +SKIP
    >>> print(result.table())  # doctest: +SKIP
"""

from __future__ import annotations

from coreecho.train.transfer.config import MODES, TASKS, TransferConfig
from coreecho.train.transfer.cross_validation import cross_validate
from coreecho.train.transfer.finetuning import finetune
from coreecho.train.transfer.passes import extract_embeddings
from coreecho.train.transfer.reports import (
    PAPER_RESULTS,
    TransferResult,
    aggregate,
    classification_report,
    regression_report,
)

__all__ = [
    "MODES",
    "TASKS",
    "PAPER_RESULTS",
    "TransferConfig",
    "TransferResult",
    "cross_validate",
    "finetune",
    "extract_embeddings",
    "regression_report",
    "classification_report",
    "aggregate",
]
