"""Robust aggregation: each rule against a reference, the breakdown property, the refusals.

References: :func:`numpy.median`, :func:`scipy.stats.trim_mean`, Krum's definition by brute
force over every neighbour subset. The robust rules join the composition matrix through
their degenerate settings (a trimmed mean that trims nothing, Multi-Krum that keeps all, a
norm bound of infinity), which must reproduce the unweighted algorithm in the clear.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import fedlearn as fl
from fedlearn.aggregators import CompositionError, Contribution, RoundInfo, RunInfo, Secure
from fedlearn.aggregators.robust import (
    CenteredClipping,
    Krum,
    Median,
    NormBound,
    TrimmedMean,
    coordinate_median,
    krum_select,
    trimmed_mean,
)
from fedlearn.errors import ConfigError
from fedlearn.privacy import DPFedAvg
from fedlearn.secagg import DistributedGaussian, SecureAggregation

from .test_aggregators_matrix import ALGORITHMS, compare, run, secure_bounds

CFG = fl.TrainConfig(steps=4, batch_size=8, lr=0.1)


def contributions(x: np.ndarray) -> list[Contribution]:
    """One contribution per row of ``x`` (vector ``delta/w``), weights 1..K (ignored)."""
    return [Contribution(i, {"delta": {"w": torch.as_tensor(row, dtype=torch.float32)}},
                         weight=float(i + 1)) for i, row in enumerate(x)]


def robust_mean(rule: fl.aggregators.Aggregator, x: np.ndarray) -> np.ndarray:
    rule.setup(RunInfo(weights={i: 1.0 for i in range(len(x))}))
    res = rule.aggregate(contributions(x), RoundInfo(1, len(x)))
    assert res.sums is not None
    return res.sums.mean("delta")["w"].double().numpy()


matrices = st.integers(2, 9).flatmap(lambda k: st.integers(1, 6).flatmap(
    lambda d: st.lists(st.lists(st.floats(-100, 100, allow_nan=False), min_size=d,
                                max_size=d), min_size=k, max_size=k)))


# ---------------------------------------------------------------------- references
@settings(max_examples=40, deadline=None)
@given(matrices)
def test_median_equals_numpy(rows: list[list[float]]) -> None:
    x = np.array(rows)
    np.testing.assert_allclose(coordinate_median(torch.as_tensor(x)).numpy(),
                               np.median(x, axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(robust_mean(Median(), x), np.median(x, axis=0), atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(matrices, st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.3, 0.49]))
def test_trimmed_mean_equals_scipy(rows: list[list[float]], beta: float) -> None:
    x = np.array(rows)
    ref = stats.trim_mean(x, beta, axis=0)
    np.testing.assert_allclose(trimmed_mean(torch.as_tensor(x), beta).numpy(), ref, atol=1e-9)
    np.testing.assert_allclose(robust_mean(TrimmedMean(beta), x), ref, atol=1e-4)


def krum_brute_force(x: np.ndarray, f: int) -> np.ndarray:
    """Blanchard et al.'s score by definition: the smallest sum of squared distances to any
    ``n - f - 2`` other updates, minimised over every subset."""
    n = len(x)
    scores = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        scores.append(min(sum(float(((x[i] - x[j]) ** 2).sum()) for j in s)
                          for s in itertools.combinations(others, n - f - 2)))
    return np.array(scores)


@settings(max_examples=30, deadline=None)
@given(st.integers(4, 8).flatmap(lambda n: st.tuples(
    st.integers(0, (n - 3) // 2),
    st.lists(st.lists(st.floats(-10, 10, allow_nan=False), min_size=3, max_size=3),
             min_size=n, max_size=n))), st.integers(1, 3))
def test_krum_equals_its_brute_force_definition(case: tuple[int, list], m: int) -> None:
    f, rows = case
    x = np.array(rows)
    scores = krum_brute_force(x, f)
    chosen = krum_select(torch.as_tensor(x), f, m)
    best = sorted(range(len(x)), key=lambda i: (scores[i], i))[:m]
    # same selection up to floating-point ties in the scores
    np.testing.assert_allclose(scores[chosen], scores[best], rtol=1e-9, atol=1e-9)
    if m <= len(x):
        np.testing.assert_allclose(robust_mean(Krum(f, m), x), x[chosen].mean(axis=0),
                                   atol=1e-4)


def test_centered_clipping_moves_at_most_tau_over_k_per_outlier() -> None:
    x = np.zeros((5, 3))
    x[0] = 1e6  # one huge update
    out = robust_mean(CenteredClipping(tau=1.0), x)
    assert np.linalg.norm(out) <= 1.0 / 5 + 1e-6
    honest = np.random.default_rng(0).normal(size=(5, 3)) * 0.1
    np.testing.assert_allclose(robust_mean(CenteredClipping(tau=100.0), honest),
                               honest.mean(axis=0), atol=1e-6)  # nothing clipped: the mean


# ---------------------------------------------------------------------- breakdown
@settings(max_examples=60, deadline=None)
@given(st.integers(3, 11).flatmap(lambda n: st.tuples(
    st.just(n), st.integers(1, (n - 1) // 2),
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=n, max_size=n),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n))))
def test_median_survives_fewer_than_half_arbitrary_updates_and_the_mean_does_not(
        case: tuple[int, int, list[float], list[float]]) -> None:
    n, f, honest, arbitrary = case
    x = np.array(honest, dtype=np.float64)[:, None]
    x[:f, 0] = arbitrary[:f]  # f < n/2 hospitals send anything
    med = robust_mean(Median(), x)[0]
    good = x[f:, 0]
    assert good.min() - 1e-6 <= med <= good.max() + 1e-6  # bounded by honest values
    # the mean: ONE hospital can put it anywhere, e.g. 1000 away from every honest value
    target = 1000.0
    y = np.array(honest, dtype=np.float64)[:, None]
    y[0, 0] = target * n - y[1:, 0].sum()
    mean = robust_mean(TrimmedMean(0.0), y)[0]
    assert abs(mean - target) < 1e-2 and mean > np.abs(y[1:, 0]).max() + 900


# ---------------------------------------------------------------------- clear errors
def test_trim_fraction_of_one_half_or_more_is_refused() -> None:
    for beta in (0.5, 0.7, -0.1):
        with pytest.raises(ConfigError, match=r"beta=.*\[0, 0\.5\).*Median"):
            TrimmedMean(beta)


def test_robust_rules_refuse_a_weighted_strategy() -> None:
    with pytest.raises(CompositionError, match="weighted=True.*Pass weighted=False"):
        fl.FedAvg(CFG).aggregator = Median()


def test_krum_needs_more_than_2f_plus_2_hospitals() -> None:
    s = fl.FedAvg(CFG, weighted=False)
    s.aggregator = Krum(f=2)
    clients = [fl.Client(cid=i, train=_blobs(i)) for i in range(6)]
    with pytest.raises(ConfigError, match=r"f=2 with n=6.*f < \(n - 2\) / 2 = 2.*at most 1"):
        fl.run(fl.make_model("mlp", in_features=5, hidden=(4,), seed=0), clients, s, rounds=1,
               progress=False)
    with pytest.raises(ConfigError, match="m=0"):
        Krum(f=1, m=0)


def _blobs(i: int) -> torch.utils.data.TensorDataset:
    from .helpers import blobs
    return blobs(16, seed=i)


# ---------------------------------------------------------------------- refusals
@pytest.mark.parametrize("rule", [Median(), TrimmedMean(0.2), Krum(1), CenteredClipping(1.0),
                                  NormBound(1.0, where="server")])
def test_rules_that_read_individual_updates_refuse_secure_aggregation(rule) -> None:  # noqa: ANN001
    s = fl.FedAvg(CFG, weighted=False)
    s.aggregator = rule
    with pytest.raises(CompositionError, match="secure aggregation"):
        SecureAggregation(s, threshold=2)
    with pytest.raises(CompositionError, match="secure aggregation"):
        SecureAggregation(s, threshold=2, transform=DistributedGaussian(1.0, 1.0))


@pytest.mark.parametrize("rule", [Median(), TrimmedMean(0.2), Krum(1)])
def test_robust_rules_refuse_central_dp(rule) -> None:  # noqa: ANN001
    s = fl.FedAvg(CFG, weighted=False)
    s.aggregator = rule
    with pytest.raises(CompositionError, match="DP noise calibrated to the sensitivity of a sum"):
        DPFedAvg(s, noise_multiplier=1.0, clip_norm=1.0)
    with pytest.raises(CompositionError, match="secure aggregation"):
        NormBound(1.0, inner=Secure(), where="server")


def test_client_side_norm_bounding_runs_under_secure_aggregation() -> None:
    clear = ALGORITHMS["FedAvg"](True)
    clear.aggregator = NormBound(0.05, where="client")
    masked = ALGORITHMS["FedAvg"](True)
    masked.aggregator = NormBound(0.05, where="client")
    ref = run("FedAvg", clear)
    wrapped = run("FedAvg", SecureAggregation(masked, clip=20.0, threshold=2))
    compare("FedAvg", wrapped, ref, secure_bounds(wrapped[0]))
    # and the bound really bit: an unbounded run differs
    plain = run("FedAvg", ALGORITHMS["FedAvg"](True))
    assert max(float((plain[1][-1][k] - ref[1][-1][k]).abs().max()) for k in plain[1][-1]) > 1e-3


# ---------------------------------------------------------------------- the matrix
DEGENERATE = {
    "TrimmedMean(0)": lambda: TrimmedMean(0.0),
    "MultiKrum(f=0, m=n)": lambda: Krum(f=0, m=4),
    "CenteredClipping(tau=inf-like)": lambda: CenteredClipping(tau=1e12),
}


@functools.cache
def unweighted_reference(alg: str) -> tuple:
    return run(alg, ALGORITHMS[alg](False))


CASES = [(alg, "TrimmedMean(0)") for alg in ALGORITHMS] + [
    (alg, rule) for alg in ("FedAvg", "SCAFFOLD", "FedNova") for rule in DEGENERATE
    if rule != "TrimmedMean(0)"]


@pytest.mark.parametrize(("alg", "rule"), CASES)
def test_degenerate_robust_rule_equals_the_unweighted_clear_run(alg: str, rule: str) -> None:
    ref = unweighted_reference(alg)
    s = ALGORITHMS[alg](False)  # one hospital, one vote
    s.aggregator = DEGENERATE[rule]()
    compare(alg, run(alg, s), ref, lambda r: 1e-6)


@pytest.mark.parametrize("alg", ["FedAvg", "SCAFFOLD", "FedNova"])
def test_infinite_norm_bound_is_bit_identical(alg: str) -> None:
    ref = run(alg, ALGORITHMS[alg](True))
    s = ALGORITHMS[alg](True)
    s.aggregator = NormBound(math.inf)
    compare(alg, run(alg, s), ref, lambda r: 0.0, exact=True)
