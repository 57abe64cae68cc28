"""The DP Kaplan-Meier: sensitivity-1 cells, distributed discrete-Laplace noise, a monotone
curve, and its ε returned for the release ledger."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.survival import discrete_laplace_share, dp_kaplan_meier, interval_counts
from tests.survival_data import random_sites


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 100_000), drop=st.integers(0, 1000))
def test_one_patient_changes_one_cell_by_one(seed: int, drop: int) -> None:
    (t, e), = random_sites(seed, 1, n=(2, 40))
    grid = np.array([5.0, 10, 20])
    full = np.concatenate(interval_counts(t, e, grid))
    i = drop % t.size
    fewer = np.concatenate(interval_counts(np.delete(t, i), np.delete(e, i), grid))
    assert np.abs(full - fewer).sum() == 1  # L1 sensitivity 1: the cells are disjoint


def test_shares_sum_to_a_discrete_laplace_draw() -> None:
    rng = np.random.default_rng(0)
    eps, k, n = 1.0, 6, 200_000
    z = sum(discrete_laplace_share(n, eps, k, rng) for _ in range(k))
    q = np.exp(-eps)
    for v in range(-3, 4):
        expected = (1 - q) / (1 + q) * q ** abs(v)
        assert np.mean(z == v) == pytest.approx(expected, abs=4e-3)
    assert np.var(z) == pytest.approx(2 * q / (1 - q) ** 2, rel=0.03)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 100_000), eps=st.sampled_from([0.1, 1.0, 10.0]))
def test_dp_curve_is_monotone_and_reports_its_epsilon(seed: int, eps: float) -> None:
    sites = random_sites(seed, 3)
    grid = np.arange(3.0, 31, 3)
    out = dp_kaplan_meier(sites, grid, eps, seed=seed)
    assert out.epsilon == eps and out.delta == 0.0
    assert np.all(np.diff(out.survival) <= 0) and out.survival.min() >= 0
    assert out.survival.max() <= 1 and out.survival.shape == grid.shape


def test_large_epsilon_recovers_the_grid_curve_and_seed_reproduces() -> None:
    from fedlearn.survival import federated_grid_kaplan_meier

    sites = random_sites(3, 4, n=(30, 60))
    grid = np.arange(3.0, 31, 3)
    exact = federated_grid_kaplan_meier(sites, grid, secure=False)
    sharp = dp_kaplan_meier(sites, grid, 50.0, seed=1)
    np.testing.assert_allclose(sharp.survival, exact.survival, atol=1e-12)
    a, b = dp_kaplan_meier(sites, grid, 0.5, seed=7), dp_kaplan_meier(sites, grid, 0.5, seed=7)
    np.testing.assert_array_equal(a.survival, b.survival)
    assert not np.array_equal(a.noisy_deaths, dp_kaplan_meier(sites, grid, 0.5, seed=8)
                              .noisy_deaths)


def test_bad_epsilon_is_rejected() -> None:
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        dp_kaplan_meier(random_sites(0, 2), np.array([5.0]), 0.0, seed=0)
