"""Transfer recipes: the CoReEcho encoder as a backbone for CAMUS (EF), HMC-QU (MI) or any labelled videos.

Three recipes (``mode``), each for regression or classification:

* ``"linear"`` - linear probing: the encoder is frozen, every video's embedding is computed once (mean over its
  clips), and a scikit-learn linear model is fitted on standardised embeddings: ridge regression with the
  penalty chosen by efficient leave-one-out (``RidgeCV``), or logistic regression (L2, ``C=1``).
* ``"mlp"`` - MLP probing (stage-2 style): the encoder is frozen and a fresh CoReEcho head
  (``BatchNorm → Dropout → Linear → BatchNorm → GELU → Dropout → Linear``, from ``model.reset_head``) is trained
  on the precomputed embeddings with AdamW (L1 loss for regression, cross-entropy for classification).
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

import contextlib
import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from coreecho.errors import InputError
from coreecho.models.config import PreprocessConfig
from coreecho.models.coreecho import CoReEcho
from coreecho.models.head import RegressionHead

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

MODES = ("linear", "mlp", "full")
TASKS = ("regression", "classification")

#: CoReEcho's transfer results (arXiv 2403.10164): CAMUS on good+medium quality (10 folds), HMC-QU (5 folds).
#: Classification metrics are fractions (the paper prints percentages).
PAPER_RESULTS: dict[tuple[str, str], dict[str, float]] = {
    ("camus", "full"): {"pearson": 0.807, "mae": 5.29},
    ("camus", "mlp"): {"pearson": 0.730, "mae": 6.28},
    ("hmcqu", "full"): {"f1": 0.9291, "accuracy": 0.9064, "specificity": 0.8607},
    ("hmcqu", "mlp"): {"f1": 0.8955, "accuracy": 0.8518},
}
_MODE_NAMES = {"linear": "linear probing", "mlp": "MLP probing", "full": "full fine-tuning"}
_HEADLINE = {"regression": ("pearson", "mae", "rmse", "r2"),
             "classification": ("f1", "accuracy", "sensitivity", "specificity", "precision", "auc")}


@dataclass
class TransferConfig:
    """Hyper-parameters of the recipes (the defaults are this library's choices; the paper does not list them).

    Example:
        >>> cfg = TransferConfig(mode="full")
        >>> cfg.epochs, cfg.batch_size, cfg.lr, cfg.head_lr
        (10, 16, 1e-05, 0.001)

    Attributes:
        mode: ``"linear"``, ``"mlp"`` or ``"full"``.
        epochs: training epochs (default: 100 for ``mlp``, 10 for ``full``; unused by ``linear``).
        batch_size: videos (``full``) or embeddings (``mlp``) per step; default 16 / 32.
        lr: encoder learning rate of ``full``.
        head_lr: head learning rate of ``mlp`` and ``full``.
        weight_decay: AdamW weight decay.
        augment: pad-and-crop augmentation during ``full`` training.
        eval_clips: clips per video for embeddings and evaluation of clip datasets (CSV); sequence datasets
            (CAMUS, HMC-QU) have one clip per item.
        ridge_alphas: penalties tried by ``RidgeCV`` (``linear`` regression).
        logistic_c: inverse penalty of the logistic regression (``linear`` classification).
        seed: seed of initialisation, data order, dropout and augmentation (each fold derives its own).
        device: ``None`` picks CUDA when available.
        num_workers: DataLoader workers.
    """

    mode: str = "mlp"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float = 1e-5
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    augment: bool = True
    eval_clips: int = 3
    ridge_alphas: tuple[float, ...] = tuple(float(10.0**e) for e in range(-3, 5))
    logistic_c: float = 1.0
    seed: int = 0
    device: str | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError("mode", f"expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.epochs is None:
            self.epochs = {"linear": 0, "mlp": 100, "full": 10}[self.mode]
        if self.batch_size is None:
            self.batch_size = 32 if self.mode == "mlp" else 16
        if self.mode != "linear" and self.epochs < 1:
            raise InputError("epochs", f"must be >= 1 for mode {self.mode!r}, got {self.epochs}")
        if self.batch_size < 2:
            raise InputError("batch_size", f"must be >= 2 (the head has BatchNorm), got {self.batch_size}")
        if min(self.lr, self.head_lr) <= 0 or self.weight_decay < 0 or self.eval_clips < 1:
            raise InputError("config", "lr and head_lr must be > 0, weight_decay >= 0 and eval_clips >= 1")


# ----------------------------------------------------------------------------------------------------------
# metrics


def _nan() -> float:
    return float("nan")


def _pearson(t: np.ndarray, p: np.ndarray) -> float:
    if t.size < 2 or t.std() == 0 or p.std() == 0:
        return _nan()
    return float(np.corrcoef(t, p)[0, 1])


def regression_report(y_true: Any, y_pred: Any, strata: dict[str, Sequence[str]] | None = None) -> dict[str, float]:
    """Pearson r, MAE, RMSE, R² and ``n``, overall and per stratum value (keys ``"mae[quality=good]"``...).

    A ``quality`` stratum with good and medium items also gets the combined ``good+medium`` subset.

    Example:
        >>> m = regression_report([50, 60, 70], [52, 58, 71], {"quality": ["good", "good", "poor"]})
        >>> round(m["mae"], 3), round(m["pearson"], 3), m["n[quality=good]"]
        (1.667, 0.978, 2)
    """
    from coreecho.train.metrics import regression_metrics  # noqa: PLC0415

    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)

    def one(mask: np.ndarray) -> dict[str, float]:
        if not mask.any():
            return {}
        m = regression_metrics(t[mask], p[mask], bootstrap=0)
        return {"n": int(mask.sum()), "pearson": _pearson(t[mask], p[mask]), "mae": m["mae"], "rmse": m["rmse"],
                "r2": m["r2"]}

    out: dict[str, float] = dict(one(np.ones(t.size, dtype=bool)))
    for name, values in (strata or {}).items():
        vals = np.asarray([str(v) for v in values])
        subsets = {v: vals == v for v in sorted(set(vals.tolist()))}
        if name == "quality" and {"good", "medium"} <= set(subsets):
            subsets["good+medium"] = (vals == "good") | (vals == "medium")
        for value, mask in subsets.items():
            for k, v in one(mask).items():
                out[f"{k}[{name}={value}]"] = v
    return out


def classification_report(y_true: Any, y_pred: Any, score: Any = None) -> dict[str, float]:
    """F1, accuracy, sensitivity, specificity, precision (class 1 = positive), ROC AUC (from ``score``) and ``n``.

    Undefined ratios (e.g. specificity without negatives) are NaN. Multi-class labels report accuracy and
    macro F1 only.

    Example:
        >>> m = classification_report([1, 1, 0, 0], [1, 0, 0, 0], score=[0.9, 0.4, 0.2, 0.1])
        >>> m["accuracy"], m["sensitivity"], m["specificity"], round(m["f1"], 3), m["auc"]
        (0.75, 0.5, 1.0, 0.667, 1.0)
    """
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape or t.size == 0:
        raise InputError("metrics", f"need equally long non-empty arrays, got {t.size} and {p.size}")

    def ratio(a: float, b: float) -> float:
        return float(a / b) if b > 0 else _nan()

    out: dict[str, float] = {"n": int(t.size), "accuracy": float((t == p).mean())}
    if max(t.max(), p.max()) > 1:
        from sklearn.metrics import f1_score  # noqa: PLC0415

        out["f1"] = float(f1_score(t, p, average="macro"))
        return out
    tp = float(((t == 1) & (p == 1)).sum())
    tn = float(((t == 0) & (p == 0)).sum())
    fp = float(((t == 0) & (p == 1)).sum())
    fn = float(((t == 1) & (p == 0)).sum())
    out.update({"f1": ratio(2 * tp, 2 * tp + fp + fn), "sensitivity": ratio(tp, tp + fn),
                "specificity": ratio(tn, tn + fp), "precision": ratio(tp, tp + fp), "auc": _nan()})
    if score is not None and len(np.unique(t)) == 2:
        from sklearn.metrics import roc_auc_score  # noqa: PLC0415

        out["auc"] = float(roc_auc_score(t, np.asarray(score, dtype=np.float64).reshape(-1)))
    return out


def aggregate(per_fold: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation over folds of every metric (NaNs ignored; ``n`` keys summed).

    Example:
        >>> aggregate([{"mae": 4.0, "n": 5}, {"mae": 6.0, "n": 5}])["mae"]
        {'mean': 5.0, 'sd': 1.4142135623730951, 'folds': 2}
    """
    keys: list[str] = []
    for d in per_fold:
        keys += [k for k in d if k not in keys]
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = np.array([d.get(k, np.nan) for d in per_fold], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if k == "n" or k.startswith("n["):
            out[k] = {"total": int(vals.sum()), "folds": int(vals.size)}
            continue
        mean = float(vals.mean()) if vals.size else _nan()
        sd = float(vals.std(ddof=1)) if vals.size > 1 else (0.0 if vals.size else _nan())
        out[k] = {"mean": mean, "sd": sd, "folds": int(vals.size)}
    return out


# ----------------------------------------------------------------------------------------------------------
# data plumbing (works for coreecho.data.camus.SequenceDataset subclasses and coreecho.data.echonet.ClipDataset)


def _collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    videos = [it["video"] if it["video"].dim() == 5 else it["video"][None] for it in items]
    labels = [it["label"] if "label" in it else it["ef"] for it in items]
    return {"video": torch.cat(videos), "counts": [v.shape[0] for v in videos],
            "label": torch.stack([torch.as_tensor(v) for v in labels]),
            "index": [int(it["index"]) for it in items]}


@contextlib.contextmanager
def _mode(dataset: Any, train: bool, cfg: TransferConfig) -> Iterator[None]:
    """Training (augmented, one random clip) or evaluation (deterministic, ``eval_clips`` clips) items."""
    saved = {k: getattr(dataset, k) for k in ("augment", "clips", "clip_policy") if hasattr(dataset, k)}
    if "augment" in saved:
        dataset.augment = bool(train and cfg.augment)
    if "clips" in saved:  # a ClipDataset: None = one random clip per item, k = k evenly spaced clips
        dataset.clips = None if train else cfg.eval_clips
        dataset.clip_policy = "random" if train else "even"
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(dataset, k, v)


def _task_of(dataset: Any, task: str | None) -> str:
    task = task or getattr(dataset, "task", None) or "regression"
    if task not in TASKS:
        raise InputError("task", f"expected one of {', '.join(TASKS)}, got {task!r}")
    return task


def _labels(dataset: Any, task: str) -> np.ndarray:
    y = np.asarray(dataset.labels, dtype=np.float64)
    if task == "classification":
        if not np.allclose(y, np.rint(y)) or y.min() < 0:
            raise InputError("labels", "classification needs integer class labels 0, 1, ...")
        return np.rint(y).astype(np.int64)
    return y


def _groups(dataset: Any) -> list[str]:
    groups = getattr(dataset, "groups", None)
    return [str(g) for g in groups] if groups is not None else [str(n) for n in dataset.names]


def _resolve_device(device: str | None) -> torch.device:
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def _loader(dataset: Any, indices: Sequence[int], batch_size: int, cfg: TransferConfig, *, shuffle: bool = False,
            seed: int = 0) -> DataLoader:
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    n = len(indices)
    drop_last = shuffle and n > batch_size and n % batch_size == 1  # a batch of 1 breaks BatchNorm
    return DataLoader(Subset(dataset, list(int(i) for i in indices)), batch_size=batch_size, shuffle=shuffle,
                      generator=gen, num_workers=cfg.num_workers, collate_fn=_collate, drop_last=drop_last)


@torch.no_grad()
def extract_embeddings(model: CoReEcho, dataset: Any, indices: Sequence[int] | None = None, *,
                       config: TransferConfig | None = None, batch_size: int = 16) -> np.ndarray:
    """Frozen-encoder embeddings ``[N, D]`` (float32) of the items, each the mean over its clips.

    Example:
        >>> emb = extract_embeddings(model, dataset)  # doctest: +SKIP
        >>> emb.shape  # doctest: +SKIP
        (450, 512)
    """
    cfg = config or TransferConfig()
    idx = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    device = model.device
    was_training = model.training
    model.eval()
    out = []
    try:
        with _mode(dataset, False, cfg):
            for batch in _loader(dataset, idx, batch_size, cfg):
                emb = model.encoder(batch["video"].to(device=device, dtype=model.dtype)).float().cpu()
                for part in emb.split(batch["counts"]):
                    out.append(part.mean(0))
    finally:
        model.train(was_training)
    return torch.stack(out).numpy() if out else np.zeros((0, model.embed_dim), np.float32)


# ----------------------------------------------------------------------------------------------------------
# recipes


def _derive(seed: int, *parts: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *parts]).generate_state(1)[0])


def _fold_scale(head: nn.Module, mean: float, sd: float) -> None:
    """Make a head trained on ``(y - mean) / sd`` output ``y``."""
    last = head[-1]
    with torch.no_grad():
        last.weight.mul_(sd)
        last.bias.mul_(sd).add_(mean)


def _target(y: torch.Tensor, task: str, mean: float, sd: float) -> torch.Tensor:
    return y.long() if task == "classification" else (y.float() - mean) / sd


def _loss(out: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    if task == "classification":
        return F.cross_entropy(out.float(), target)
    return F.l1_loss(out.float().reshape(-1), target.reshape(-1))


def _head_args(model: CoReEcho) -> dict[str, Any]:
    args = {k: v for k, v in model.config.head_args.items() if k in ("hidden_dim", "dropout")}
    return args


def _fit_linear(emb: np.ndarray, y: np.ndarray, task: str, cfg: TransferConfig) -> Any:
    from sklearn.linear_model import LogisticRegression, RidgeCV  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    if task == "classification":
        est = LogisticRegression(C=cfg.logistic_c, max_iter=5000)
    else:
        est = RidgeCV(alphas=cfg.ridge_alphas)
    return make_pipeline(StandardScaler(), est).fit(emb.astype(np.float64), y)


def _train_head(head: nn.Module, emb: np.ndarray, y: np.ndarray, task: str, cfg: TransferConfig, seed: int,
                mean: float, sd: float, device: torch.device) -> nn.Module:
    torch.manual_seed(seed)
    x_all = torch.as_tensor(emb, dtype=torch.float32, device=device)
    y_all = torch.as_tensor(y, device=device)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.head_lr, weight_decay=cfg.weight_decay)
    n, bs = len(x_all), int(cfg.batch_size or 32)
    gen = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(int(cfg.epochs or 1)):
        perm = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, bs):
            b = perm[start:start + bs]
            if len(b) < 2:
                continue
            loss = _loss(head(x_all[b]), _target(y_all[b], task, mean, sd), task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    head.eval()
    if task == "regression":
        _fold_scale(head, mean, sd)
    return head


def _train_full(model: CoReEcho, dataset: Any, indices: Sequence[int], task: str, cfg: TransferConfig, seed: int,
                mean: float, sd: float, log: Callable[[str], None] | None) -> CoReEcho:
    torch.manual_seed(seed)
    device = model.device
    opt = torch.optim.AdamW([
        {"params": list(model.encoder.parameters()), "lr": cfg.lr},
        {"params": list(model.head.parameters()), "lr": cfg.head_lr},
    ], weight_decay=cfg.weight_decay)
    model.train()
    with _mode(dataset, True, cfg):
        for epoch in range(int(cfg.epochs or 1)):
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(_derive(seed, epoch) % (2**31))
            total, count = 0.0, 0
            for batch in _loader(dataset, indices, int(cfg.batch_size or 16), cfg, shuffle=True,
                                 seed=_derive(seed, epoch, 1)):
                x = batch["video"].to(device=device, dtype=model.dtype)
                if x.shape[0] < 2:
                    continue
                counts = batch["counts"]
                y = batch["label"].repeat_interleave(torch.as_tensor(counts)).to(device)
                loss = _loss(model(x), _target(y, task, mean, sd), task)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, count = total + loss.item() * x.shape[0], count + x.shape[0]
            if log is not None:
                log(f"    epoch {epoch + 1}/{cfg.epochs}: training loss {total / max(count, 1):.4f}")
    model.eval()
    if task == "regression":
        _fold_scale(model.head, mean, sd)
    return model


@torch.no_grad()
def _predict_full(model: CoReEcho, dataset: Any, indices: Sequence[int], task: str,
                  cfg: TransferConfig) -> np.ndarray:
    model.eval()
    out = []
    with _mode(dataset, False, cfg):
        for batch in _loader(dataset, indices, int(cfg.batch_size or 16), cfg):
            y = model(batch["video"].to(device=model.device, dtype=model.dtype)).float().cpu()
            if task == "classification":
                y = y.softmax(-1)
            for part in y.split(batch["counts"]):
                out.append(part.mean(0))
    return torch.stack(out).numpy()


def _n_classes(y: np.ndarray) -> int:
    return max(2, int(y.max()) + 1)


def _stats(y: np.ndarray, task: str) -> tuple[float, float]:
    if task == "classification":
        return 0.0, 1.0
    sd = float(y.std())
    return float(y.mean()), sd if sd > 1e-8 else 1.0


def _fresh_head(model: CoReEcho, out_dim: int, device: torch.device) -> RegressionHead:
    return RegressionHead(model.embed_dim, out_dim=out_dim, bias_init=0.0 if out_dim == 1 else None,
                          **_head_args(model)).to(device)


# ----------------------------------------------------------------------------------------------------------
# results


@dataclass
class TransferResult:
    """Cross-validated transfer metrics.

    Example:
        >>> r = TransferResult("csv", "mlp", "regression", [{"mae": 4.0}, {"mae": 6.0}],
        ...                    aggregate([{"mae": 4.0}, {"mae": 6.0}]), {"mae": 5.0})
        >>> r.summary["mae"]["mean"], r.headline("mae")
        (5.0, 5.0)

    Attributes:
        dataset: dataset name (``camus``, ``hmcqu``, ``csv``...).
        mode: recipe.
        task: ``regression`` or ``classification``.
        folds: per-fold metrics (see :func:`regression_report` / :func:`classification_report`).
        summary: metric → ``{"mean", "sd", "folds"}`` over folds (``n`` keys: ``{"total", "folds"}``).
        pooled: metrics of all out-of-fold predictions together.
        predictions: one dict per item: ``name``, ``patient``, ``fold``, ``true``, ``pred`` (and ``score``, the
            probability of class 1, for classification), plus the strata values.
        config: the :class:`TransferConfig` and run details (model, seconds).
        paper: CoReEcho's published numbers for this dataset and recipe, when there are any.
    """

    dataset: str
    mode: str
    task: str
    folds: list[dict[str, float]]
    summary: dict[str, dict[str, float]]
    pooled: dict[str, float]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes ``None``)."""
        def clean(v: Any) -> Any:
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, (np.floating, float)):
                return None if not math.isfinite(float(v)) else float(v)
            if isinstance(v, np.integer):
                return int(v)
            return v

        return clean(asdict(self))

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as indented JSON."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    def headline(self, metric: str) -> float:
        """Mean over folds of a metric, on CAMUS's good+medium subset when the results have one."""
        for key in (f"{metric}[quality=good+medium]", metric):
            if key in self.summary:
                return float(self.summary[key]["mean"])
        return _nan()

    def table(self) -> str:
        """A printable table: mean ± sd over folds, pooled, and the paper's numbers."""
        pct = self.task == "classification"

        def fmt(v: float, key: str) -> str:
            if v is None or not math.isfinite(v):
                return "-"
            base = key.split("[")[0]
            if pct and base != "auc":
                return f"{100 * v:.2f}"
            return f"{v:.3f}" if base in ("pearson", "r2", "auc") else f"{v:.2f}"

        n_total = self.summary.get("n", {}).get("total", len(self.predictions))
        lines = [f"{self.dataset} | {_MODE_NAMES.get(self.mode, self.mode)} | {self.task} | "
                 f"{len(self.folds)} folds | {n_total} videos",
                 f"{'metric':<34} {'mean ± sd over folds':>22} {'pooled':>9} {'paper':>8}"]
        subset = "[quality=good+medium]" if any(k.endswith("[quality=good+medium]") for k in self.summary) else ""
        keys = [k for k in self.summary if k.split("[")[0] in _HEADLINE[self.task]]
        keys.sort(key=lambda k: ("[" in k, k.split("[", 1)[1] if "[" in k else "",
                                 _HEADLINE[self.task].index(k.split("[")[0])))
        for k in keys:
            s = self.summary[k]
            paper = None
            if self.paper and k.split("[")[0] in self.paper and k == k.split("[")[0] + subset:
                paper = self.paper[k.split("[")[0]]
            ms = f"{fmt(s['mean'], k)} ± {fmt(s['sd'], k)}" if math.isfinite(s["mean"]) else "-"
            lines.append(f"{k:<34} {ms:>22} {fmt(self.pooled.get(k, _nan()), k):>9} "
                         f"{fmt(paper, k) if paper is not None else '':>8}")
        if pct:
            lines.append("(classification metrics in %; AUC as a fraction)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


# ----------------------------------------------------------------------------------------------------------
# entry points


def _config(mode: str | None, config: TransferConfig | None, overrides: dict[str, Any]) -> TransferConfig:
    if config is None:
        return TransferConfig(mode=mode or "mlp", **overrides)
    fields_ = asdict(config)
    if mode is not None and mode != config.mode:  # epochs/batch size defaults follow the new mode
        fields_.update(mode=mode, epochs=None, batch_size=None)
    fields_.update(overrides)
    return TransferConfig(**fields_)


def cross_validate(model: CoReEcho, dataset: Any, *, mode: str | None = None, folds: int | Sequence[tuple[Any, Any]] | None
                   = None, task: str | None = None, config: TransferConfig | None = None, dataset_name: str | None = None,
                   log: Callable[[str], None] | None = None, **overrides: Any) -> TransferResult:
    """Run a transfer recipe over cross-validation folds and report the paper's metrics.

    Args:
        model: the pretrained model (moved to ``config.device`` but otherwise not modified; ``full`` fine-tunes a
            copy per fold).
        dataset: a :class:`~coreecho.data.camus.CAMUS`, :class:`~coreecho.data.hmcqu.HMCQU`, any
            :class:`~coreecho.data.camus.SequenceDataset`, or a :class:`~coreecho.data.echonet.ClipDataset` such as
            :class:`~coreecho.data.echonet.VideoRegressionDataset` (optionally with a ``groups`` attribute).
        mode: ``"linear"``, ``"mlp"`` or ``"full"`` (default: ``config.mode``, else ``"mlp"``).
        folds: number of folds for the dataset's protocol (``dataset.default_folds(k, seed)``; CAMUS 10, HMC-QU 5,
            others 5 patient-level folds), or explicit ``(train_indices, test_indices)`` pairs.
        task: ``"regression"`` or ``"classification"`` (default: the dataset's ``task``, else regression).
        config: hyper-parameters; ``**overrides`` replace single fields (``epochs=3``...).
        dataset_name: name used in the report and to look up the paper's numbers (``"camus"``, ``"hmcqu"``).
        log: called with progress lines (e.g. ``print``).

    Returns:
        A :class:`TransferResult`.

    Raises:
        InputError: an unknown mode or task, bad folds, or non-integer class labels.

    Example:
        >>> result = cross_validate(model, HMCQU("HMC-QU"), mode="full", folds=5, epochs=5)  # doctest: +SKIP
        >>> result.summary["f1"]["mean"]  # doctest: +SKIP
        0.91
    """
    from coreecho.data.folds import check_folds, group_folds  # noqa: PLC0415

    cfg = _config(mode, config, overrides)
    task = _task_of(dataset, task)
    y = _labels(dataset, task)
    groups = _groups(dataset)
    name = dataset_name or type(dataset).__name__.lower()
    if folds is None or isinstance(folds, (int, np.integer)):
        default_k = {"camus": 10, "hmcqu": 5}.get(name, 5)
        k = int(folds) if folds is not None else default_k
        if hasattr(dataset, "default_folds"):
            split = dataset.default_folds(k, cfg.seed)
        else:
            split = group_folds(groups, k, labels=y if task == "classification" else None, seed=cfg.seed)
    else:
        split = [(np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64)) for tr, te in folds]
    empty = [f for f, (_, te) in enumerate(split) if len(te) == 0]
    if empty and log:
        log(f"skipping {len(empty)} fold(s) without test videos (e.g. a CAMUS block with no patient of the kept "
            "image qualities)")
    split = [(tr, te) for tr, te in split if len(te)]
    check_folds(split, len(dataset), groups)
    strata = dict(getattr(dataset, "strata", {}) or {})
    device = _resolve_device(cfg.device)
    base = model.to(device)
    started = time.perf_counter()
    emb = None
    if cfg.mode in ("linear", "mlp"):
        if log:
            log(f"embedding {len(dataset)} videos with the frozen encoder")
        emb = extract_embeddings(base, dataset, config=cfg, batch_size=int(cfg.batch_size or 16))
    preds = np.zeros(len(dataset), dtype=np.float64)
    scores = np.full(len(dataset), np.nan)
    fold_of = np.full(len(dataset), -1, dtype=np.int64)
    per_fold = []
    for f, (train, test) in enumerate(split):
        seed = _derive(cfg.seed, f)
        y_tr = y[train]
        if task == "classification" and len(np.unique(y_tr)) < 2:
            raise InputError(f"fold {f}", "its training set has a single class; use fewer folds")
        mean, sd = _stats(y_tr, task)
        out_dim = _n_classes(y) if task == "classification" else 1
        if cfg.mode == "linear":
            est = _fit_linear(emb[train], y_tr, task, cfg)
            if task == "classification":
                proba = est.predict_proba(emb[test].astype(np.float64))
                p_full = np.zeros((len(test), out_dim))
                p_full[:, est.classes_] = proba
                out = p_full
            else:
                out = est.predict(emb[test].astype(np.float64))
        elif cfg.mode == "mlp":
            head = _train_head(_fresh_head(base, out_dim, device), emb[train], y_tr, task, cfg, seed, mean, sd, device)
            with torch.no_grad():
                out = head(torch.as_tensor(emb[test], dtype=torch.float32, device=device)).float().cpu()
            out = out.softmax(-1).numpy() if task == "classification" else out.numpy()
        else:
            m = copy.deepcopy(base)
            m.reset_head(out_dim)
            if task == "regression":
                with torch.no_grad():
                    m.head[-1].bias.zero_()
            if log:
                log(f"  fold {f + 1}/{len(split)}: fine-tuning on {len(train)} videos")
            _train_full(m, dataset, train, task, cfg, seed, mean, sd, log)
            out = _predict_full(m, dataset, test, task, cfg)
            del m
        if task == "classification":
            preds[test] = np.argmax(out, axis=-1)
            scores[test] = out[:, 1] if out.shape[1] > 1 else out[:, 0]
            metrics = classification_report(y[test], preds[test], scores[test])
        else:
            preds[test] = np.asarray(out, dtype=np.float64).reshape(-1)
            metrics = regression_report(y[test], preds[test], {k: [v[i] for i in test] for k, v in strata.items()})
        fold_of[test] = f
        per_fold.append(metrics)
        if log:
            shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in _HEADLINE[task] if k in metrics
                              and math.isfinite(metrics[k]))
            log(f"  fold {f + 1}/{len(split)}: {len(test)} test videos: {shown}")
    if task == "classification":
        pooled = classification_report(y, preds.astype(np.int64), scores)
    else:
        pooled = regression_report(y, preds, strata)
    rows = []
    names = [str(n) for n in getattr(dataset, "names", [str(i) for i in range(len(dataset))])]
    for i in range(len(dataset)):
        row: dict[str, Any] = {"name": names[i], "patient": groups[i], "fold": int(fold_of[i]),
                               "true": float(y[i]) if task == "regression" else int(y[i]),
                               "pred": float(preds[i]) if task == "regression" else int(preds[i])}
        if task == "classification":
            row["score"] = float(scores[i])
        for k, v in strata.items():
            row[k] = v[i]
        rows.append(row)
    details = {**asdict(cfg), "model": model.config.architecture, "seconds": round(time.perf_counter() - started, 2),
               "device": str(device)}
    return TransferResult(name, cfg.mode, task, per_fold, aggregate(per_fold), pooled, rows, details,
                          PAPER_RESULTS.get((name, cfg.mode)))


def finetune(model: CoReEcho, dataset: Any, *, mode: str | None = None, task: str | None = None,
             config: TransferConfig | None = None, label_name: str | None = None,
             log: Callable[[str], None] | None = None, **overrides: Any) -> CoReEcho:
    """Fit a recipe on a whole dataset and return a new model with the trained head (the input is not modified).

    ``mode="mlp"`` trains a fresh head on frozen embeddings; ``mode="full"`` fine-tunes encoder and head. Linear
    probes are scikit-learn models, not CoReEcho heads: use :func:`cross_validate` for their metrics.

    Args:
        model: the pretrained model.
        dataset: see :func:`cross_validate`.
        mode: ``"mlp"`` or ``"full"`` (default: ``config.mode``, else ``"mlp"``).
        task: ``"regression"`` or ``"classification"`` (default: the dataset's).
        config: hyper-parameters; ``**overrides`` replace single fields.
        label_name: stored as the config's ``task`` (e.g. ``"mi"``); default: ``"ef"`` for regression heads
            with one output, ``"custom"`` for classification.
        log: called with progress lines.

    Returns:
        The fine-tuned :class:`~coreecho.CoReEcho` (save it with ``save_pretrained``); its config's metadata
        records the recipe, and its preprocessing is the dataset's (``dataset.preprocess``, e.g. CAMUS's whole
        sequences resampled to ``frames`` frames), so ``predict_ef`` feeds it as it was fine-tuned.

    Example:
        >>> tuned = finetune(model, VideoRegressionDataset("videos.csv"), mode="mlp", epochs=50)  # doctest: +SKIP
        >>> tuned.save_pretrained("my-model")  # doctest: +SKIP
    """
    cfg = _config(mode, config, overrides)
    if cfg.mode == "linear":
        raise InputError("mode", "a linear probe is a scikit-learn model, not a CoReEcho head; use mode='mlp' or "
                                 "'full' to get a model, or cross_validate(..., mode='linear') for its metrics")
    task = _task_of(dataset, task)
    y = _labels(dataset, task)
    device = _resolve_device(cfg.device)
    tuned = copy.deepcopy(model).to(device)
    out_dim = _n_classes(y) if task == "classification" else 1
    mean, sd = _stats(y, task)
    seed = _derive(cfg.seed, 10_000)
    tuned.reset_head(out_dim)
    if task == "regression":
        with torch.no_grad():
            tuned.head[-1].bias.zero_()
    if cfg.mode == "mlp":
        if log:
            log(f"embedding {len(dataset)} videos with the frozen encoder")
        emb = extract_embeddings(tuned, dataset, config=cfg, batch_size=int(cfg.batch_size or 16))
        _train_head(tuned.head, emb, y, task, cfg, seed, mean, sd, device)
    else:
        _train_full(tuned, dataset, range(len(dataset)), task, cfg, seed, mean, sd, log)
    tuned.eval()
    tuned.config.task = label_name or ("ef" if task == "regression" else "custom")
    pre = getattr(dataset, "preprocess", None)
    if isinstance(pre, PreprocessConfig):  # served as fine-tuned (e.g. CAMUS: whole sequences, not clips)
        tuned.config.preprocessing = pre
    tuned.config.metadata = {**tuned.config.metadata, "finetune": {
        "mode": cfg.mode, "task": task, "n_videos": len(dataset), "epochs": cfg.epochs, "lr": cfg.lr,
        "head_lr": cfg.head_lr, "weight_decay": cfg.weight_decay, "batch_size": cfg.batch_size, "seed": cfg.seed,
        "classes": out_dim if task == "classification" else None,
        "label_mean": mean if task == "regression" else None}}
    return tuned
