"""Confidence intervals for per-hospital clinical metrics.

A hospital's test set holds 12 to 205 images in the case study. An AUROC of 1.0 on 12 images,
or a sensitivity of 0.88 on 17 pneumonia cases, is a measurement with a wide error bar, and a
table without the bar invites the reader to compare noise. Two intervals, both at
``confidence`` (95 % by default):

* **sensitivity and specificity** are proportions (``k`` of ``n`` positives found): the
  **Wilson score interval** (Wilson 1927), from SciPy's ``binomtest``. Unlike the normal
  approximation ``p +- 1.96 sqrt(p(1-p)/n)``, it never has zero width at 0 or 1 (12 of 12
  gives [0.76, 1], not [1, 1]) and stays inside [0, 1];
* **AUROC** has no closed form we trust on a dozen images: a seeded **stratified bootstrap**
  (resample the positives and the negatives separately, so every replicate keeps both classes
  and the disease rate), the percentile interval of ``n_boot`` replicates (scikit-learn's
  ``roc_auc_score`` scores each).

Every draw comes from ``seed``, so a table is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["wilson_interval", "bootstrap_auroc_interval", "metrics_with_intervals"]


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (SciPy's ``binomtest``).

    ``n = 0`` gives ``(nan, nan)``: there is nothing to estimate.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k = {k}, n = {n}")
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _positive_scores(p: np.ndarray) -> np.ndarray:
    """The score of the positive class: ``p`` itself, or its column 1 for class probabilities."""
    s = np.asarray(p, dtype=float)
    return s[:, 1] if s.ndim == 2 else s


def _auroc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC of every row: the Mann-Whitney statistic from mid-ranks (ties count 1/2), all
    replicates at once (the same number scikit-learn's ``roc_auc_score`` gives, tested)."""
    from scipy.stats import rankdata

    m, k = pos.shape[1], neg.shape[1]
    ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    return (ranks[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * k)


def bootstrap_auroc_interval(y: np.ndarray, p: np.ndarray, *, seed: int, n_boot: int = 1000,
                             confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the AUROC over a stratified bootstrap (seeded).

    ``p`` is the score of the positive class (or the ``(n, 2)`` class probabilities). With
    only one class present the AUROC is undefined: ``(nan, nan)``.
    """
    if n_boot < 10:
        raise ValueError(f"n_boot must be >= 10, got {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    y = np.asarray(y).astype(int)
    s = _positive_scores(p)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = _auroc_rows(s[rng.choice(pos, (n_boot, len(pos)))],
                        s[rng.choice(neg, (n_boot, len(neg)))])
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def metrics_with_intervals(preds: Mapping[str, tuple[np.ndarray, np.ndarray]],
                           threshold: float = 0.5, *, seed: int, n_boot: int = 1000,
                           confidence: float = 0.95) -> pd.DataFrame:
    """Per hospital (and pooled): AUROC, sensitivity and specificity with their intervals.

    ``preds`` maps a hospital to ``(y_true, probabilities)`` as
    :func:`fedlearn.report.collect_predictions` returns them; hospital ``i`` (in order)
    bootstraps from ``seed + i``.
    """
    from sklearn.metrics import roc_auc_score

    from .report import POOLED, _pool

    items = [(n, yp) for n, yp in preds.items() if n != POOLED] + [(POOLED, _pool(preds))]
    rows = {}
    for i, (name, (y, p)) in enumerate(items):
        y = np.asarray(y).astype(int)
        s = _positive_scores(p)
        called = s >= threshold
        tp, pos = int(np.sum(called & (y == 1))), int(np.sum(y == 1))
        tn, neg = int(np.sum(~called & (y == 0))), int(np.sum(y == 0))
        auroc = float(roc_auc_score(y, s)) if pos and neg else float("nan")
        a_lo, a_hi = bootstrap_auroc_interval(y, s, seed=seed + i, n_boot=n_boot,
                                              confidence=confidence)
        se_lo, se_hi = wilson_interval(tp, pos, confidence)
        sp_lo, sp_hi = wilson_interval(tn, neg, confidence)
        rows[name] = {"n": len(y), "auroc": auroc, "auroc lo": a_lo, "auroc hi": a_hi,
                      "sensitivity": tp / pos if pos else float("nan"),
                      "sens lo": se_lo, "sens hi": se_hi,
                      "specificity": tn / neg if neg else float("nan"),
                      "spec lo": sp_lo, "spec hi": sp_hi}
    return pd.DataFrame.from_dict(rows, orient="index")
