"""Tests for fedlearn.privacy.threshold: a DP decision threshold from noisy histograms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_curve

import fedlearn as fl
from fedlearn.privacy import dp_threshold
from fedlearn.privacy.threshold import (
    logit_bin_edges,
    noisy_histograms,
    roc_from_histogram,
    score_histogram,
)


def sites_of(n: int = 600, seed: int = 0, shift: float = 3.0, k: int = 3):
    """k hospitals whose model ranks well but scores everybody high (as DP-SGD's did)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        y = (rng.uniform(size=n // k) < 0.7).astype(int)
        logit = shift + 1.5 * (2 * y - 1) + rng.normal(size=y.size)
        out.append((y, 1.0 / (1.0 + np.exp(-logit))))
    return out


def test_edges_are_data_independent_monotone_and_cover_0_to_1():
    e = logit_bin_edges(40, 8.0)
    assert e.shape == (41,) and e[0] == 0.0 and e[-1] == 1.0
    assert np.all(np.diff(e) > 0)
    assert math.isclose(e[20], 0.5)  # the middle inner edge is logit 0
    with pytest.raises(ValueError, match="bins"):
        logit_bin_edges(1)
    with pytest.raises(ValueError, match="max_logit"):
        logit_bin_edges(10, 0.0)


def test_histogram_counts_every_patient_once_in_the_right_bin():
    edges = np.array([0.0, 0.25, 0.5, 1.0])
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.0, 0.25, 0.3, 0.5, 1.0, 0.99])
    h = score_histogram(y, p, edges)
    assert h.tolist() == [[1, 1, 1], [0, 1, 2]]  # 0.25 opens bin 1; 1.0 sits in the last bin
    two_col = np.stack([1 - p, p], axis=1)
    assert np.array_equal(score_histogram(y, two_col, edges), h)
    assert np.array_equal(score_histogram(torch.tensor(y), torch.tensor(p), edges), h)


def test_exact_roc_matches_scikit_learn_at_every_edge():
    y, p = sites_of(900, seed=1, k=1)[0]
    edges = logit_bin_edges(40)
    sens, spec = roc_from_histogram(score_histogram(y, p, edges))
    for b, t in enumerate(edges):  # positive when p >= t
        assert math.isclose(sens[b], np.mean(p[y == 1] >= t))
        assert math.isclose(spec[b], np.mean(p[y == 0] < t))
    # every sklearn ROC point at a threshold that is one of our edges agrees
    fpr, tpr, thr = roc_curve(y, p)
    for f, t_, th in zip(fpr, tpr, thr, strict=True):
        hit = np.flatnonzero(np.isclose(edges, th))
        if hit.size:
            assert math.isclose(sens[hit[0]], t_) and math.isclose(1 - spec[hit[0]], f)


def test_without_noise_youden_is_the_best_edge_and_target_rule_holds():
    sites = sites_of()
    y = np.concatenate([s[0] for s in sites])
    p = np.concatenate([s[1] for s in sites])
    proba = np.stack([1 - p, p], axis=1)
    edges = logit_bin_edges(40)
    j = [np.mean(p[y == 1] >= t) + np.mean(p[y == 0] < t) - 1 for t in edges]
    best = dp_threshold(sites, math.inf, seed=0)
    assert math.isclose(best.sensitivity + best.specificity - 1, max(j))
    assert best.threshold > 0.5  # the scores are shifted up: 0.5 would call nearly all sick
    m = fl.classification_metrics(y, proba, threshold=best.threshold)
    assert math.isclose(m["sensitivity"], best.sensitivity)
    assert m["specificity"] > fl.classification_metrics(y, proba)["specificity"] + 0.3
    tgt = dp_threshold(sites, math.inf, seed=0, target_sensitivity=0.95)
    assert np.mean(p[y == 1] >= tgt.threshold) >= 0.95
    higher = edges[edges > tgt.threshold]
    assert higher.size == 0 or np.mean(p[y == 1] >= higher[0]) < 0.95


def test_noise_is_laplace_of_scale_one_over_epsilon_per_hospital():
    y, p = sites_of(300, k=1)[0]
    edges = logit_bin_edges(20)
    exact = score_histogram(y, p, edges)
    rng = np.random.default_rng(3)
    draws = np.stack([noisy_histograms([(y, p)], 0.5, edges, rng=rng) - exact
                      for _ in range(400)]).ravel()
    assert stats.kstest(draws, stats.laplace(scale=2.0).cdf).pvalue > 1e-3
    # two hospitals: each adds its own noise, so the sum's variance doubles (2 b^2 each)
    both = np.stack([noisy_histograms([(y, p), (y, p)], 0.5, edges, rng=rng) - 2 * exact
                     for _ in range(400)]).ravel()
    assert 0.8 < both.var() / (2 * 2 * 2.0**2) < 1.2


def test_a_private_threshold_is_close_to_the_exact_one_and_seeded():
    sites = sites_of(900, seed=2)
    y = np.concatenate([s[0] for s in sites])
    p = np.concatenate([s[1] for s in sites])
    proba = np.stack([1 - p, p], axis=1)
    exact = dp_threshold(sites, math.inf, seed=0)
    bal = [fl.classification_metrics(y, proba, threshold=dp_threshold(sites, 1.0, seed=s)
                                     .threshold)["balanced_accuracy"] for s in range(5)]
    best = fl.classification_metrics(y, proba, threshold=exact.threshold)["balanced_accuracy"]
    assert min(bal) > best - 0.05
    assert dp_threshold(sites, 1.0, seed=7) == dp_threshold(sites, 1.0, seed=7)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 60))
def test_roc_is_monotone_even_for_noisy_histograms(seed, bins):
    rng = np.random.default_rng(seed)
    hist = rng.laplace(5.0, 4.0, size=(2, bins))  # noisy counts, some negative
    hist[:, 0] = 10.0  # at least one positive count per class (else roc refuses: see below)
    sens, spec = roc_from_histogram(hist)
    assert sens[0] == pytest.approx(1.0) and sens[-1] == 0.0
    assert spec[0] == pytest.approx(0.0, abs=1e-12) and spec[-1] == pytest.approx(1.0)
    assert np.all(np.diff(sens) <= 1e-12) and np.all(np.diff(spec) >= -1e-12)


def test_bad_input_is_refused_clearly():
    y, p = sites_of(60, k=1)[0]
    with pytest.raises(ValueError, match="epsilon"):
        dp_threshold([(y, p)], 0.0, seed=0)
    with pytest.raises(ValueError, match="no hospitals"):
        dp_threshold([], 1.0, seed=0)
    with pytest.raises(ValueError, match="target_sensitivity"):
        dp_threshold([(y, p)], 1.0, seed=0, target_sensitivity=1.5)
    with pytest.raises(ValueError, match="finite"):
        dp_threshold([(y, np.where(y == 1, np.nan, p))], 1.0, seed=0)
    with pytest.raises(ValueError, match="labels"):
        dp_threshold([(y + 1, p)], 1.0, seed=0)
    with pytest.raises(ValueError, match="predictions"):
        dp_threshold([(y, p[:-1])], 1.0, seed=0)
    with pytest.raises(ValueError, match="shape"):
        roc_from_histogram(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="no healthy"):
        roc_from_histogram(np.array([[-1.0, -2.0], [3.0, 4.0]]))
