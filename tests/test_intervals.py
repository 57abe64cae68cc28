"""Per-hospital confidence intervals: Wilson for proportions, stratified bootstrap for AUROC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.intervals import bootstrap_auroc_interval, metrics_with_intervals, wilson_interval


def test_wilson_matches_its_closed_form_and_never_has_zero_width():
    z = 1.959963984540054
    for k, n in [(12, 12), (0, 12), (15, 17), (390, 624)]:
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        lo, hi = wilson_interval(k, n)
        assert lo == pytest.approx(centre - half, abs=1e-9)
        assert hi == pytest.approx(centre + half, abs=1e-9)
        assert 0 <= lo < hi <= 1
    assert wilson_interval(12, 12)[0] == pytest.approx(0.7575, abs=1e-4)  # not [1, 1]
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(5, 3)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 200), st.data())
def test_wilson_contains_the_estimate_and_narrows_with_n(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = wilson_interval(k, n)
    assert lo - 1e-12 <= k / n <= hi + 1e-12
    lo4, hi4 = wilson_interval(4 * k, 4 * n)
    assert hi4 - lo4 < hi - lo


def _scores(n, seed, shift=1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, 1 / (1 + np.exp(-(rng.normal(size=n) + shift * (2 * y - 1))))


def test_bootstrap_is_seeded_contains_the_estimate_and_narrows():
    y, s = _scores(60, 0)
    a = bootstrap_auroc_interval(y, s, seed=1, n_boot=300)
    assert a == bootstrap_auroc_interval(y, s, seed=1, n_boot=300)
    assert a != bootstrap_auroc_interval(y, s, seed=2, n_boot=300)
    from sklearn.metrics import roc_auc_score

    assert a[0] <= roc_auc_score(y, s) <= a[1]
    y4, s4 = _scores(960, 0)
    b = bootstrap_auroc_interval(y4, s4, seed=1, n_boot=300)
    assert b[1] - b[0] < a[1] - a[0]
    assert all(math.isnan(v) for v in bootstrap_auroc_interval(np.ones(5), s[:5], seed=0))


def test_bootstrap_covers_the_true_auroc_about_95_percent():
    # the population AUROC of a binormal model with shift 2d: Phi(sqrt(2) d) for unit variances
    from scipy.stats import norm

    true = norm.cdf(2 * 0.8 / math.sqrt(2))
    hits = 0
    for seed in range(60):
        lo, hi = bootstrap_auroc_interval(*_scores(80, seed, 0.8), seed=seed, n_boot=400)
        hits += lo <= true <= hi
    assert 50 <= hits <= 60  # 95 % nominal; percentile intervals under-cover a little


def test_the_vectorised_auroc_equals_scikit_learn():
    from sklearn.metrics import roc_auc_score

    from fedlearn.intervals import _auroc_rows

    rng = np.random.default_rng(3)
    pos, neg = rng.integers(0, 5, (7, 9)) / 4, rng.integers(0, 5, (7, 6)) / 4  # with ties
    ours = _auroc_rows(pos, neg)
    for r in range(7):
        ref = roc_auc_score(np.r_[np.ones(9), np.zeros(6)], np.r_[pos[r], neg[r]])
        assert ours[r] == pytest.approx(ref, abs=1e-12)


def test_metrics_with_intervals_table():
    preds = {"A": _scores(200, 0), "B": _scores(16, 1)}
    t = metrics_with_intervals(preds, seed=0, n_boot=200)
    assert list(t.index) == ["A", "B", "pooled"] and t.loc["pooled", "n"] == 216
    for name in t.index:
        r = t.loc[name]
        assert r["sens lo"] <= r["sensitivity"] <= r["sens hi"]
        assert r["spec lo"] <= r["specificity"] <= r["spec hi"]
    assert (t.loc["B", "auroc hi"] - t.loc["B", "auroc lo"]) > (
        t.loc["A", "auroc hi"] - t.loc["A", "auroc lo"])  # fewer images, wider
