"""Federated Kaplan-Meier: equal to lifelines on pooled data, the grid variant within its
stated bound, Greenwood bands equal to lifelines'."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import KaplanMeierFitter

from fedlearn.survival import km as kmod
from tests.survival_data import random_sites, tcga_or_skip, train_sites


def _pooled(sites):
    return (np.concatenate([t for t, _ in sites]), np.concatenate([e for _, e in sites]))


def _check_against_lifelines(sites, secure: bool) -> None:
    t, e = _pooled(sites)
    curve = kmod.federated_kaplan_meier(sites, secure=secure, seed=1)
    ref = KaplanMeierFitter().fit(t, e)
    np.testing.assert_allclose(curve.survival, ref.survival_function_at_times(curve.times),
                               rtol=0, atol=1e-12)
    table = ref.event_table.loc[curve.times]
    np.testing.assert_array_equal(curve.at_risk, table["at_risk"])
    np.testing.assert_array_equal(curve.deaths, table["observed"])
    band = ref.confidence_interval_.loc[curve.times].to_numpy()
    np.testing.assert_allclose(curve.lower, band[:, 0], atol=1e-10)
    np.testing.assert_allclose(curve.upper, band[:, 1], atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100_000), k=st.integers(2, 5), ties=st.booleans())
def test_union_km_equals_lifelines_on_random_tied_data(seed: int, k: int, ties: bool) -> None:
    _check_against_lifelines(random_sites(seed, k, ties=ties), secure=seed % 2 == 0)


@pytest.mark.realdata
def test_secure_union_km_equals_lifelines_on_tcga() -> None:
    _check_against_lifelines(train_sites(tcga_or_skip()), secure=True)


def test_union_of_event_times_is_what_sites_publish() -> None:
    sites = [(np.array([5.0, 3, 3, 9]), np.array([1, 1, 0, 0])), (np.array([2.0, 5]),
                                                                   np.array([0, 1]))]
    np.testing.assert_array_equal(kmod.event_times(*sites[0]), [3.0, 5.0])
    curve = kmod.federated_kaplan_meier(sites, secure=False)
    np.testing.assert_array_equal(curve.times, [3.0, 5.0])  # every death day is public
    np.testing.assert_array_equal(curve.at_risk, [5, 3])
    assert curve.at(4.0) == pytest.approx(4 / 5) and curve.at(0.0) == 1.0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 100_000), k=st.integers(2, 4), width=st.sampled_from([1.0, 3, 7]))
def test_grid_km_is_within_its_stated_bound(seed: int, k: int, width: float) -> None:
    sites = random_sites(seed, k, ties=seed % 3 != 0)
    t, e = _pooled(sites)
    grid = np.arange(width, t.max() + width, width)
    approx = kmod.federated_grid_kaplan_meier(sites, grid, secure=False)
    exact = KaplanMeierFitter().fit(t, e).survival_function_at_times(grid).to_numpy()
    assert np.all(approx.s_lower <= exact + 1e-12) and np.all(exact <= approx.s_upper + 1e-12)
    assert np.all(np.abs(approx.survival - exact) <= approx.error_bound + 1e-12)


def test_grid_km_is_exact_when_no_censoring_interleaves() -> None:
    t = np.array([1.0, 2, 2, 4, 6, 6, 8])
    e = np.array([1, 1, 1, 1, 1, 0, 0])  # censorings only after the deaths of their interval
    grid = np.array([2.0, 4, 6, 8])
    approx = kmod.grid_kaplan_meier(grid, *kmod.interval_counts(t, e, grid))
    exact = KaplanMeierFitter().fit(t, e).survival_function_at_times(grid).to_numpy()
    np.testing.assert_allclose(approx.s_upper, exact, atol=1e-12)


@pytest.mark.realdata
def test_secure_grid_km_on_tcga_is_within_bound() -> None:
    sites = train_sites(tcga_or_skip())
    t, e = _pooled(sites)
    grid = np.arange(182.5, 3650.1, 182.5)  # every six months for ten years
    approx = kmod.federated_grid_kaplan_meier(sites, grid, seed=3)
    exact = KaplanMeierFitter().fit(t, e).survival_function_at_times(grid).to_numpy()
    err = np.abs(approx.survival - exact)
    assert np.all(err <= approx.error_bound + 1e-12) and err.max() < 0.01


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        kmod.interval_counts(np.array([1.0]), np.array([1]), np.array([3.0, 2.0]))
    with pytest.raises(ValueError, match="events must be 0"):
        kmod.event_times(np.array([1.0]), np.array([2]))
    with pytest.raises(ValueError, match="times must be finite and >= 0"):
        kmod.event_times(np.array([-1.0]), np.array([1]))
    with pytest.raises(ValueError, match="deaths <= at_risk"):
        kmod.kaplan_meier_from_counts(np.array([1.0]), np.array([1]), np.array([2]))
