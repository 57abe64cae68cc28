"""Choosing a decision threshold from the hospitals' validation patients, with DP.

Why this exists: DP-SGD clips every patient's gradient to the same norm ``C``. That bound is
what makes the privacy analysis work, and it also gives every clipped patient the same pull
on the model, whatever their class weight. Under heavy class imbalance (90 % pneumonia) the
majority class wins: the model still *ranks* patients well (good AUROC) but calls almost
everyone sick at the usual threshold of 0.5. The fix is to pick the operating point on
validation data, and that step must be private too: a threshold fitted to a few hundred
patients' scores can reveal them.

The mechanism here is the textbook one (Dwork & Roth 2014, section 3.3): each hospital
histograms its validation patients' predicted P(disease) into fixed bins, per class, and adds
Laplace noise of scale ``1 / epsilon`` to every count before sending it. Adding or removing
one patient changes one count by one (L1 sensitivity 1), so each hospital's release is
``(epsilon, 0)``-DP on its own, against the server and everyone else, without trusting
anyone to add the noise. The server sums the noisy histograms, reads off the ROC curve at
the bin edges and picks a threshold. The bins must not depend on the data: edges are evenly
spaced in *logit* space, because DP models often squeeze their probabilities near 0 or 1.

Validation records are not training records, so for one *record* this ``epsilon`` and the
DP-SGD budget would not add up (parallel composition). For one *patient* they can: MedMNIST's
splits are by image, so a patient may have images in both. The release ledger therefore adds
the two per hospital (a conservative total): pass each hospital's
:class:`~fedlearn.privacy.Accountant` as ``accountants=`` and its release is recorded there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .accountant import Accountant

__all__ = ["ThresholdChoice", "logit_bin_edges", "score_histogram", "noisy_histograms",
           "roc_from_histogram", "dp_threshold"]


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold and the (noisy) validation estimates it was chosen on."""

    threshold: float
    sensitivity: float
    specificity: float
    epsilon: float
    rule: str


def logit_bin_edges(bins: int = 40, max_logit: float = 8.0) -> np.ndarray:
    """``bins + 1`` data-independent edges in [0, 1], evenly spaced in logit space.

    The inner edges are sigmoid(linspace(-max_logit, max_logit, bins - 1)); the outer ones
    are 0 and 1, so every probability falls in some bin.
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    if not max_logit > 0:
        raise ValueError(f"max_logit must be > 0, got {max_logit}")
    inner = 1.0 / (1.0 + np.exp(-np.linspace(-max_logit, max_logit, bins - 1)))
    return np.concatenate([[0.0], inner, [1.0]])


def _arrays(y_true: np.ndarray | torch.Tensor,
            p_disease: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true.detach().cpu().numpy() if isinstance(y_true, torch.Tensor)
                   else y_true).ravel()
    p = np.asarray(p_disease.detach().cpu().numpy() if isinstance(p_disease, torch.Tensor)
                   else p_disease, dtype=float)
    if p.ndim == 2:  # class probabilities: column 1 is P(disease)
        if p.shape[1] != 2:
            raise ValueError(f"expected P(disease) or two class columns, got shape {p.shape}")
        p = p[:, 1]
    if p.shape != y.shape:
        raise ValueError(f"{y.shape[0]} labels but {p.shape[0]} predictions")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (healthy) or 1 (disease)")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("predicted probabilities must be finite numbers in [0, 1]")
    return y.astype(int), p


def score_histogram(y_true: np.ndarray | torch.Tensor, p_disease: np.ndarray | torch.Tensor,
                    edges: np.ndarray) -> np.ndarray:
    """Exact counts, shape ``(2, bins)``: row c counts class-c patients per score bin.

    Bin b holds ``edges[b] <= p < edges[b + 1]`` (the last bin also holds p = 1), so
    "positive when p >= edges[b]" is exactly "in bin b or above".
    """
    y, p = _arrays(y_true, p_disease)
    bins = len(edges) - 1
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    hist = np.zeros((2, bins))
    np.add.at(hist, (y, idx), 1.0)
    return hist


def noisy_histograms(sites: Sequence[tuple[np.ndarray | torch.Tensor,
                                           np.ndarray | torch.Tensor]],
                     epsilon: float, edges: np.ndarray, *,
                     rng: np.random.Generator,
                     accountants: Sequence[Accountant] | None = None) -> np.ndarray:
    """The sum over hospitals of each one's histogram plus Laplace(1 / epsilon) noise.

    ``epsilon = inf`` adds no noise (the non-private reference). ``accountants`` (one per
    hospital, in the order of ``sites``) each record their hospital's ``(epsilon, 0)`` release.
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if not sites:
        raise ValueError("no hospitals to histogram")
    if accountants is not None:
        if len(accountants) != len(sites):
            raise ValueError(f"accountants: {len(accountants)} given for {len(sites)} "
                             "hospitals; pass one per hospital, in the same order")
        if math.isfinite(epsilon):
            for acc in accountants:
                acc.pure_epsilon(epsilon, "noised validation histogram (threshold)")
    total = np.zeros((2, len(edges) - 1))
    for y, p in sites:
        h = score_histogram(y, p, edges)
        if math.isfinite(epsilon):
            h = h + rng.laplace(0.0, 1.0 / epsilon, size=h.shape)  # each hospital's own noise
        total += h
    return total


def roc_from_histogram(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity at every bin edge's threshold (from a possibly noisy hist).

    Negative noisy counts are set to zero first (post-processing: free under DP).
    """
    h = np.clip(np.asarray(hist, dtype=float), 0.0, None)
    if h.ndim != 2 or h.shape[0] != 2:
        raise ValueError(f"histogram must have shape (2, bins), got {h.shape}")
    neg, pos = h[0], h[1]
    for name, row in (("healthy", neg), ("sick", pos)):
        if not row.sum() > 0:
            raise ValueError(f"no {name} patients left in the (noisy) histogram: too few "
                             "validation patients for this epsilon")
    # threshold at edge b: positive = bins b.. end; b = 0..bins (b = bins: nobody positive)
    pos_above = np.concatenate([np.cumsum(pos[::-1])[::-1], [0.0]])
    neg_above = np.concatenate([np.cumsum(neg[::-1])[::-1], [0.0]])
    sens = pos_above / pos.sum()
    spec = 1.0 - neg_above / neg.sum()
    return sens, spec


def dp_threshold(sites: Sequence[tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]],
                 epsilon: float, *, seed: int, target_sensitivity: float | None = None,
                 bins: int = 40, max_logit: float = 8.0,
                 accountants: Sequence[Accountant] | None = None) -> ThresholdChoice:
    """A decision threshold from the hospitals' noisy validation histograms.

    ``sites`` holds ``(y_true, P(disease) or class probabilities)`` per hospital. Rule:
    Youden's J (the threshold maximising sensitivity + specificity - 1), or, with
    ``target_sensitivity``, the highest threshold whose estimated sensitivity reaches the
    target (the best specificity among those). Each hospital's release is
    ``(epsilon, 0)``-DP for its validation records, and recorded in its accountant if
    ``accountants`` are given.
    """
    if target_sensitivity is not None and not 0 < target_sensitivity <= 1:
        raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
    edges = logit_bin_edges(bins, max_logit)
    hist = noisy_histograms(sites, epsilon, edges, rng=np.random.default_rng(seed),
                            accountants=accountants)
    sens, spec = roc_from_histogram(hist)
    if target_sensitivity is None:
        b = int(np.argmax(sens + spec - 1.0))
        rule = "Youden's J"
    else:
        ok = np.flatnonzero(sens >= target_sensitivity - 1e-12)
        b = int(ok.max()) if ok.size else 0
        rule = f"sensitivity >= {target_sensitivity:g}"
    threshold = float(edges[b]) if b < bins else 1.0
    return ThresholdChoice(threshold, float(sens[b]), float(spec[b]), float(epsilon), rule)
