"""The federated log-rank test equals lifelines' logrank_test on the pooled data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.statistics import logrank_test

from fedlearn.survival import federated_logrank
from tests.survival_data import random_sites, tcga_or_skip


def _reference(sites):
    t = np.concatenate([s[0] for s in sites])
    e = np.concatenate([s[1] for s in sites])
    g = np.concatenate([s[2] for s in sites]).astype(bool)
    return logrank_test(t[g], t[~g], e[g], e[~g])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100_000), k=st.integers(2, 5))
def test_logrank_equals_lifelines_on_random_data(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed + 1)
    sites = [(t, e, rng.integers(0, 2, t.size)) for t, e in random_sites(seed, k, n=(8, 40))]
    g = np.concatenate([s[2] for s in sites])
    if g.min() == g.max():
        return  # one group only: no test
    ours = federated_logrank(sites, secure=seed % 2 == 0, seed=seed)
    ref = _reference(sites)
    assert ours.statistic == pytest.approx(ref.test_statistic, rel=1e-9, abs=1e-12)
    assert ours.p_value == pytest.approx(ref.p_value, rel=1e-8, abs=1e-12)


@pytest.mark.realdata
def test_secure_logrank_of_stage_three_on_tcga() -> None:
    data = tcga_or_skip()
    frame = data.split("train")
    stage3 = (frame["ajcc_pathologic_stage_Stage IIIA"] + frame["ajcc_pathologic_stage_Stage IIIC"])
    sites = []
    for k in range(6):
        rows = frame["region"] == k
        sites.append((frame.loc[rows, "T"].to_numpy(), frame.loc[rows, "E"].to_numpy(),
                      stage3[rows].to_numpy()))
    ours = federated_logrank(sites)
    ref = _reference(sites)
    assert ours.statistic == pytest.approx(ref.test_statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(ref.p_value, rel=1e-9)


def test_group_must_be_binary() -> None:
    with pytest.raises(ValueError, match="site 0: group must be 0 or 1"):
        federated_logrank([(np.array([1.0]), np.array([1]), np.array([2]))] * 2)
