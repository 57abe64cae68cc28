"""Calibration: does "80 % pneumonia" mean pneumonia 80 % of the time?

AUROC only asks whether sick patients score higher than healthy ones; a clinician reading a
probability also needs it to be *calibrated*. Among all X-rays the model calls 80 %
pneumonia, about 80 % should have pneumonia. Class-weighted training (used here because the
pneumonia training split is 90 % pneumonia) and a test population whose disease rate differs
from the training one both break that, even for a model with an excellent AUROC.

* A **reliability diagram** bins the predictions by predicted probability and plots, per bin,
  the observed frequency against the mean prediction; a calibrated model lies on the
  diagonal.
* The **expected calibration error** (Naeini et al., 2015; Guo et al., 2017) is the
  bin-size-weighted mean gap, ``ECE = sum_b (n_b / n) |freq_b - conf_b|``.

Two conventions exist and both are offered: ``kind="positive"`` bins the predicted
probability of disease and compares it with the disease rate (what a clinician reads, and
what scikit-learn's ``calibration_curve`` computes); ``kind="top-label"`` bins the confidence
of the predicted class and compares it with accuracy (Guo et al.'s definition). Bins are
``n_bins`` equal-width intervals of [0, 1], closed on the right as in scikit-learn.

:func:`fit_temperature` is the standard post-hoc fix (temperature scaling, Guo et al.), done
federatedly: each hospital only reports its summed log-loss at a grid of temperatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["Reliability", "reliability", "expected_calibration_error", "plot_reliability",
           "apply_temperature", "fit_temperature"]

Kind = Literal["positive", "top-label"]


def _arrays(y_true: np.ndarray | torch.Tensor, proba: np.ndarray | torch.Tensor
            ) -> tuple[np.ndarray, np.ndarray]:
    y = (y_true.detach().cpu().numpy() if isinstance(y_true, torch.Tensor)
         else np.asarray(y_true)).astype(np.int64).reshape(-1)
    p = (proba.detach().cpu().numpy() if isinstance(proba, torch.Tensor)
         else np.asarray(proba)).astype(np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"proba must be (N, C) with N={y.shape[0]}, got shape {p.shape}")
    if y.size == 0:
        raise ValueError("no predictions to calibrate")
    if (p < -1e-9).any() or (p > 1 + 1e-9).any():
        raise ValueError("proba must hold probabilities in [0, 1] (apply the softmax first)")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must lie in [0, {p.shape[1]}), got [{y.min()}, {y.max()}]")
    return y, p


@dataclass(frozen=True)
class Reliability:
    """One reliability diagram: per bin, the mean prediction, the observed rate and the count.

    Empty bins have ``count == 0`` and NaN ``confidence`` / ``frequency``.
    """

    edges: np.ndarray
    confidence: np.ndarray
    frequency: np.ndarray
    count: np.ndarray
    kind: str

    @property
    def ece(self) -> float:
        """``sum_b (n_b / n) |frequency_b - confidence_b|`` over the non-empty bins."""
        m = self.count > 0
        w = self.count[m] / self.count.sum()
        return float(np.sum(w * np.abs(self.frequency[m] - self.confidence[m])))

    @property
    def mce(self) -> float:
        """Maximum calibration error: the worst non-empty bin's gap."""
        m = self.count > 0
        return float(np.max(np.abs(self.frequency[m] - self.confidence[m])))

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready (NaN becomes None) so benchmark results can store the diagram."""
        def clean(a: np.ndarray) -> list:
            return [None if not np.isfinite(v) else float(v) for v in a]
        return {"edges": clean(self.edges), "confidence": clean(self.confidence),
                "frequency": clean(self.frequency), "count": [int(c) for c in self.count],
                "kind": self.kind}  # type: ignore[dict-item]

    @classmethod
    def from_dict(cls, d: dict) -> Reliability:
        def arr(key: str) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in d[key]], dtype=float)
        return cls(arr("edges"), arr("confidence"), arr("frequency"),
                   np.asarray(d["count"], dtype=np.int64), str(d["kind"]))


def reliability(y_true: np.ndarray | torch.Tensor, proba: np.ndarray | torch.Tensor,
                n_bins: int = 10, kind: Kind = "positive", positive: int = 1) -> Reliability:
    """The reliability diagram of predicted class probabilities ``proba`` (N, C).

    ``kind="positive"`` (binary tasks): x = predicted P(class ``positive``), y = observed rate
    of that class. ``kind="top-label"``: x = confidence of the arg-max class, y = accuracy.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    y, p = _arrays(y_true, proba)
    if kind == "positive":
        score = p[:, positive]
        hit = (y == positive).astype(float)
    elif kind == "top-label":
        pred = p.argmax(axis=1)
        score = p[np.arange(len(y)), pred]
        hit = (pred == y).astype(float)
    else:
        raise ValueError(f"kind must be 'positive' or 'top-label', got {kind!r}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds (edges[b], edges[b+1]], the first bin also 0: scikit-learn's convention
    ids = np.searchsorted(edges[1:-1], np.clip(score, 0.0, 1.0))
    count = np.bincount(ids, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(ids, weights=score, minlength=n_bins) / count
        freq = np.bincount(ids, weights=hit, minlength=n_bins) / count
    return Reliability(edges, conf, freq, count, kind)


def expected_calibration_error(y_true: np.ndarray | torch.Tensor,
                               proba: np.ndarray | torch.Tensor, n_bins: int = 10,
                               kind: Kind = "positive", positive: int = 1) -> float:
    """ECE of :func:`reliability` (0 = perfectly calibrated on these bins, at most 1)."""
    return reliability(y_true, proba, n_bins, kind, positive).ece


def plot_reliability(rel: Reliability | Sequence[Reliability], ax: Axes | None = None,
                     labels: Sequence[str] | None = None, show_counts: bool = True) -> Axes:
    """Draw one or several reliability diagrams with the diagonal of perfect calibration.

    With one diagram and ``show_counts``, a histogram of how many predictions fall in each
    bin is drawn on a second axis: a bin with 3 patients is not evidence of miscalibration.
    """
    import matplotlib.pyplot as plt

    rels = [rel] if isinstance(rel, Reliability) else list(rel)
    if labels is not None and len(labels) != len(rels):
        raise ValueError(f"{len(labels)} labels for {len(rels)} diagrams")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.0))
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="perfect calibration")
    for i, r in enumerate(rels):
        m = r.count > 0
        name = labels[i] if labels is not None else None
        text = f"{name}: ECE {r.ece:.3f}" if name else f"ECE {r.ece:.3f}"
        ax.plot(r.confidence[m], r.frequency[m], marker="o", label=text)
    if show_counts and len(rels) == 1:
        r = rels[0]
        twin = ax.twinx()
        width = np.diff(r.edges)
        twin.bar(r.edges[:-1], r.count, width=width, align="edge", alpha=0.15, color="C0")
        twin.set_ylabel("predictions per bin")
    kind = rels[0].kind if rels else "positive"
    ax.set_xlabel("mean predicted probability of disease" if kind == "positive"
                  else "mean confidence of the predicted class")
    ax.set_ylabel("observed disease rate" if kind == "positive" else "observed accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return ax


def apply_temperature(proba: np.ndarray | torch.Tensor, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: soften (T > 1) or sharpen (T < 1) predicted probabilities.

    Dividing the logits by ``T`` keeps their order, so accuracy at the arg-max and the AUROC
    do not change; only the confidence does. ``log p`` equals the logits up to a per-row
    constant, which the softmax ignores.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    p = proba.detach().cpu().numpy() if isinstance(proba, torch.Tensor) else np.asarray(proba)
    z = np.log(np.clip(p.astype(np.float64), 1e-12, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(sites: Sequence[tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]],
                    grid: Sequence[float] | np.ndarray | None = None) -> float:
    """The temperature minimising the summed log-loss over several hospitals' validation sets.

    ``sites`` holds ``(y_true, proba)`` per hospital. Each hospital only needs to report one
    number per grid temperature (its summed negative log-likelihood), never a prediction, so
    this is a federated fit; the grid (log-spaced, 0.05 to 20 by default) keeps it to one
    round of communication.
    """
    ts = np.geomspace(0.05, 20.0, 241) if grid is None else np.asarray(grid, dtype=float)
    if ts.size == 0 or (ts <= 0).any():
        raise ValueError("grid must hold positive temperatures")
    if not sites:
        raise ValueError("no hospitals to fit the temperature on")
    total = np.zeros(ts.size)
    for y_true, proba in sites:
        y, p = _arrays(y_true, proba)
        for i, t in enumerate(ts):  # what hospital k reports: sum_i -log p_T(y_i | x_i)
            q = apply_temperature(p, float(t))
            total[i] += -np.log(np.clip(q[np.arange(len(y)), y], 1e-12, 1.0)).sum()
    return float(ts[int(np.argmin(total))])
