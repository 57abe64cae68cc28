"""Clinical reporting: per-hospital metrics, classification reports, the worst hospital.

A federated model is only as good as it is at the hospital it serves worst. This module turns
predictions into the tables a clinical audience reads:

* :func:`collect_predictions` scores each hospital's own test (or validation) set, with one
  global model or with each hospital's personalised model (FedBN, local-only training);
* :func:`metrics_table`: one row per hospital plus ``pooled`` (every hospital's predictions
  together) with AUROC, accuracy, sensitivity, specificity, F1 and ECE;
* :func:`classification_report_frame`: scikit-learn's per-class precision / recall / F1;
* :func:`worst_hospital`: which hospital a metric is lowest at, and the spread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import classification_report
from torch import nn

from .calibration import expected_calibration_error
from .client import Client, predict_proba
from .metrics import classification_metrics
from .utils import StateDict

__all__ = ["Predictions", "collect_predictions", "metrics_table", "classification_report_frame",
           "worst_hospital", "markdown_table", "POOLED"]

POOLED = "pooled"
#: ``{test set name: (labels (N,), class probabilities (N, C))}``.
Predictions = dict[str, tuple[np.ndarray, np.ndarray]]
_COLUMNS = ("n", "disease %", "auroc", "accuracy", "sensitivity", "specificity",
            "balanced_accuracy", "f1", "ece")


def collect_predictions(model: nn.Module, clients: Sequence[Client],
                        state_of: Callable[[Client], StateDict] | None = None) -> Predictions:
    """Each client's test-set labels and predicted probabilities.

    With ``state_of`` each client is scored with its own weights ``state_of(client)``
    (personalised models); otherwise everyone with ``model`` as it is. ``model`` is used as
    scratch space when ``state_of`` is given, and restored afterwards.
    """
    saved = {k: v.clone() for k, v in model.state_dict().items()} if state_of else None
    out: Predictions = {}
    for c in clients:
        if c.test is None:
            continue
        if state_of is not None:
            model.load_state_dict(state_of(c))
        x, y = c.test.tensors[0], c.test.tensors[1]
        out[c.name] = (y.numpy().astype(np.int64), predict_proba(model, x).numpy())
    if saved is not None:
        model.load_state_dict(saved)
    return out


def _pool(preds: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    ys = [y for name, (y, _) in preds.items() if name != POOLED]
    ps = [p for name, (_, p) in preds.items() if name != POOLED]
    return np.concatenate(ys), np.concatenate(ps)


def metrics_table(preds: Mapping[str, tuple[np.ndarray, np.ndarray]], threshold: float = 0.5,
                  n_bins: int = 10, pooled: bool = True) -> pd.DataFrame:
    """One row per hospital (and ``pooled``): size, disease rate and the clinical metrics.

    ``pooled`` concatenates every hospital's predictions: for one global model that is its
    score on the union of the test sets; for personalised models it is the score of the
    system "each hospital uses its own model". ECE is the positive-class ECE with
    ``n_bins`` bins (see :mod:`fedlearn.calibration`). Non-finite probabilities (a diverged
    model) give NaN metrics instead of an exception, so a sweep can record the failure.
    """
    if not preds:
        raise ValueError("no predictions")
    items = [(n, yp) for n, yp in preds.items() if n != POOLED]
    if pooled:
        items.append((POOLED, _pool(preds)))
    rows = {}
    for name, (y, p) in items:
        row: dict[str, float] = {"n": int(len(y)), "disease %": 100.0 * float(np.mean(y == 1))}
        if np.isfinite(p).all():
            m = classification_metrics(y, p, threshold)
            row.update({k: m[k] for k in _COLUMNS[2:-1]},
                       ece=expected_calibration_error(y, p, n_bins))
        else:  # a diverged model (e.g. a negative BatchNorm variance): record it, do not crash
            row.update({k: float("nan") for k in _COLUMNS[2:]})
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")[list(_COLUMNS)]


def classification_report_frame(y_true: np.ndarray | torch.Tensor,
                                proba: np.ndarray | torch.Tensor,
                                class_names: Sequence[str], threshold: float = 0.5,
                                ) -> pd.DataFrame:
    """scikit-learn's classification report (precision, recall, F1, support per class).

    Binary tasks are decided at ``threshold`` on the probability of class 1 (the disease),
    the same rule as :func:`fedlearn.classification_metrics`, so the recall of class 1 is the
    sensitivity and the recall of class 0 the specificity.
    """
    y = np.asarray(y_true.numpy() if isinstance(y_true, torch.Tensor) else y_true).reshape(-1)
    p = np.asarray(proba.numpy() if isinstance(proba, torch.Tensor) else proba)
    if p.ndim != 2 or len(class_names) != p.shape[1]:
        raise ValueError(f"class_names has {len(class_names)} names for probabilities of shape "
                         f"{p.shape}")
    pred = (p[:, 1] >= threshold).astype(int) if p.shape[1] == 2 else p.argmax(axis=1)
    rep = classification_report(y, pred, labels=list(range(p.shape[1])),
                                target_names=list(class_names), output_dict=True,
                                zero_division=0)
    frame = pd.DataFrame(rep).T
    frame["support"] = frame["support"].astype(int)
    return frame


def worst_hospital(table: pd.DataFrame, metric: str = "auroc") -> dict[str, object]:
    """The hospital where ``metric`` is lowest, the best one, and the spread between them.

    ``table`` is a :func:`metrics_table` (its ``pooled`` row is ignored). Hospitals where the
    metric is undefined (NaN: one class only) are skipped.
    """
    if metric not in table.columns:
        raise KeyError(f"unknown metric {metric!r}; have {list(table.columns)}")
    s = table.drop(index=POOLED, errors="ignore")[metric].dropna()
    if s.empty:
        raise ValueError(f"no hospital has a defined {metric}")
    return {"metric": metric, "worst": str(s.idxmin()), "worst_value": float(s.min()),
            "best": str(s.idxmax()), "best_value": float(s.max()),
            "mean": float(s.mean()), "gap": float(s.max() - s.min())}


def markdown_table(frame: pd.DataFrame, digits: int = 3, index: bool = True) -> str:
    """A GitHub Markdown table (pandas' ``to_markdown`` needs the optional ``tabulate``).

    Floats get ``digits`` decimals, except in columns whose values are all whole numbers
    (counts that pandas turned into floats), which print as integers.
    """
    df = frame.reset_index() if index else frame

    def whole(col: pd.Series) -> bool:
        vals = pd.to_numeric(col, errors="coerce").dropna().to_numpy(dtype=float)
        return bool(vals.size) and bool(np.all(vals == np.round(vals)))

    counts = {c for c in df.columns if pd.api.types.is_float_dtype(df[c]) and whole(df[c])}

    def fmt(v: object, col: object) -> str:
        if isinstance(v, float | np.floating):
            if not np.isfinite(v):
                return "nan"
            return f"{int(v)}" if col in counts else f"{v:.{digits}f}"
        return str(v)

    cols = list(df.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |",
             "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---"
                            for c in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v, c) for v, c in zip(row, cols, strict=True)) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines)
