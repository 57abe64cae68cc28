"""Clinical evaluation metrics, computed with scikit-learn.

Accuracy alone misleads on imbalanced medical data (a model that calls every X-ray
"pneumonia" scores 62.5 % on PneumoniaMNIST's test set). Clinicians read:

* sensitivity (recall of the positive class): the share of sick patients found;
* specificity (recall of the negative class): the share of healthy patients left alone;
* AUROC: threshold-free ranking quality, the probability a random sick patient scores
  higher than a random healthy one;
* balanced accuracy: the mean of per-class recalls.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from .client import predict_proba

__all__ = ["classification_metrics", "evaluate", "METRIC_NAMES"]

METRIC_NAMES = ("loss", "accuracy", "balanced_accuracy", "auroc", "sensitivity",
                "specificity", "f1")


def _as_numpy(a: np.ndarray | torch.Tensor) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def classification_metrics(y_true: np.ndarray | torch.Tensor, proba: np.ndarray | torch.Tensor,
                           threshold: float = 0.5, positive: int = 1) -> dict[str, float]:
    """Metrics from true labels ``(N,)`` and predicted class probabilities ``(N, C)``.

    Binary tasks (C = 2): class ``positive`` is the disease; a case is called positive
    when its probability is at least ``threshold``. Multi-class: predictions are the arg
    max, AUROC is one-vs-rest macro, sensitivity is the macro recall and specificity the
    macro mean of per-class specificities. AUROC is NaN when the labels hold one class only.
    """
    from sklearn import metrics as skm  # here, not at the top: keeps ``import fedlearn`` lean

    y = _as_numpy(y_true).astype(np.int64).reshape(-1)
    p = _as_numpy(proba).astype(np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"proba must be (N, C) with N={y.shape[0]}, got {p.shape}")
    n_classes = p.shape[1]
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    if y.size == 0:
        return {k: float("nan") for k in METRIC_NAMES}
    labels = np.arange(n_classes)
    eps = 1e-12
    loss = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], eps, 1.0))))
    if n_classes == 2:
        pred = (p[:, positive] >= threshold).astype(np.int64)
        pred = np.where(pred == 1, positive, 1 - positive)
    else:
        pred = p.argmax(axis=1)
    cm = skm.confusion_matrix(y, pred, labels=labels)
    tp = np.diag(cm).astype(float)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / (tp + fn)
        spec = tn / (tn + fp)
    out: dict[str, float] = {"loss": loss, "accuracy": float(skm.accuracy_score(y, pred))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["balanced_accuracy"] = float(np.nanmean(recall)) if np.isfinite(recall).any() \
            else float("nan")
        present = np.unique(y)
        if len(present) < 2:
            out["auroc"] = float("nan")
        elif n_classes == 2:
            out["auroc"] = float(skm.roc_auc_score(y == positive, p[:, positive]))
        else:
            pr = p / p.sum(axis=1, keepdims=True)
            out["auroc"] = float(skm.roc_auc_score(y, pr, multi_class="ovr", average="macro",
                                                   labels=labels)) \
                if len(present) == n_classes else float("nan")
        if n_classes == 2:
            out["sensitivity"] = float(recall[positive])
            out["specificity"] = float(spec[positive])
            out["f1"] = float(skm.f1_score(y, pred, pos_label=positive, zero_division=0))
        else:
            out["sensitivity"] = float(np.nanmean(recall))
            out["specificity"] = float(np.nanmean(spec))
            out["f1"] = float(skm.f1_score(y, pred, average="macro", labels=labels,
                                           zero_division=0))
    return out


def evaluate(model: nn.Module, data: TensorDataset, threshold: float = 0.5) -> dict[str, float]:
    """All metrics of ``model`` on a labelled dataset."""
    x, y = data.tensors[0], data.tensors[1]
    return classification_metrics(y, predict_proba(model, x), threshold=threshold)
