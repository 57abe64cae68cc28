"""Cox models: the torch loss against lifelines' partial likelihood, Efron terms against
finite differences, federated standardisation against pandas, and federated Newton-Raphson
(through secure aggregation) against lifelines' stratified penalised fit to 1e-4."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from lifelines import CoxPHFitter

from fedlearn.survival import cox_loss, efron_terms, federated_cox_newton, federated_moments
from tests.survival_data import tcga_or_skip


def _small_case(seed: int, n: int = 30, p: int = 3, ties: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    t = rng.integers(1, 12, n).astype(float) if ties else rng.exponential(10, n)
    e = (rng.random(n) < 0.7).astype(float)
    return x, t, e


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cox_loss_is_lifelines_partial_likelihood_without_ties(seed: int) -> None:
    x, t, e = _small_case(seed)
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(T=t, E=e)
    cph = CoxPHFitter().fit(frame, "T", "E")
    beta = cph.params_.to_numpy()
    scores = torch.tensor(x @ beta)
    target = torch.tensor(np.column_stack([e, t]))
    loss = float(cox_loss(scores, target))
    assert loss * len(t) == pytest.approx(-cph.log_likelihood_, rel=1e-8)
    ll, _, _ = efron_terms(x, t, e, beta)  # no ties: Efron = Breslow = the loss
    assert ll == pytest.approx(cph.log_likelihood_, rel=1e-8)


def test_efron_loglik_matches_lifelines_with_ties() -> None:
    x, t, e = _small_case(4, n=40, ties=True)
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(T=t, E=e)
    cph = CoxPHFitter().fit(frame, "T", "E")  # lifelines uses Efron's ties
    ll, g, _ = efron_terms(x, t, e, cph.params_.to_numpy())
    assert ll == pytest.approx(cph.log_likelihood_, rel=1e-8)
    assert np.abs(g).max() < 1e-4  # lifelines' optimum is a stationary point of ours


def test_efron_gradient_and_hessian_match_finite_differences() -> None:
    x, t, e = _small_case(5, n=25, ties=True)
    beta = np.array([0.3, -0.2, 0.1])
    ll, g, h = efron_terms(x, t, e, beta)
    step = 1e-6
    for j in range(3):
        d = np.zeros(3)
        d[j] = step
        lp, gp, _ = efron_terms(x, t, e, beta + d)
        lm, gm, _ = efron_terms(x, t, e, beta - d)
        assert (lp - lm) / (2 * step) == pytest.approx(g[j], rel=1e-5, abs=1e-7)
        np.testing.assert_allclose((gp - gm) / (2 * step), h[:, j], rtol=1e-5, atol=1e-7)
    assert np.all(np.linalg.eigvalsh(h) <= 1e-12)  # concave


def test_loss_rejects_a_target_without_event_and_time() -> None:
    with pytest.raises(ValueError, match=r"target must be \(n, 2\)"):
        cox_loss(torch.zeros(4), torch.zeros(4))


def test_federated_moments_equal_pandas() -> None:
    rng = np.random.default_rng(0)
    xs = [rng.integers(20, 90, (n, 4)).astype(float) for n in (30, 10, 55)]
    ref = pd.DataFrame(np.vstack(xs))
    out = federated_moments(xs, seed=2)
    assert out.n == 95
    np.testing.assert_allclose(out.mean, ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(out.std, ref.std(), rtol=1e-10)
    assert 0 < out.sum_error_bound < 1e-6


@pytest.mark.realdata
def test_federated_newton_equals_lifelines_stratified_ridge_fit() -> None:
    data = tcga_or_skip()
    moments = federated_moments([s.train.tensors[0].numpy() for s in data.sites])
    strata = [(moments.transform(s.train.tensors[0].numpy()), s.train.tensors[1][:, 1].numpy(),
               s.train.tensors[1][:, 0].numpy()) for s in data.sites]
    fit = federated_cox_newton(strata, penalizer=0.01)  # secure aggregation of g and H
    assert fit.converged and fit.iterations <= 10
    assert fit.beta_error_bound < 1e-6  # the quantisation cannot move beta by more than this
    train = data.split("train")
    cph = CoxPHFitter(penalizer=0.01, strata=["region"]).fit(
        train[data.features + ["E", "T", "region"]], "T", "E")
    np.testing.assert_allclose(moments.std, train[data.features].std(), rtol=1e-9)
    lifelines_on_our_scale = cph.params_.to_numpy() * moments.std
    np.testing.assert_allclose(fit.beta, lifelines_on_our_scale, rtol=0, atol=1e-4)
    plain = federated_cox_newton(strata, penalizer=0.01, secure=False)
    assert np.abs(plain.beta - fit.beta).max() <= fit.beta_error_bound


@pytest.mark.realdata
def test_unpenalised_newton_does_not_converge_on_rank_deficient_covariates() -> None:
    data = tcga_or_skip()
    x = data.split("train")[data.features].to_numpy()
    assert np.linalg.matrix_rank(x) == 32  # complete one-hot groups
    moments = federated_moments([s.train.tensors[0].numpy() for s in data.sites], secure=False)
    strata = [(moments.transform(s.train.tensors[0].numpy()), s.train.tensors[1][:, 1].numpy(),
               s.train.tensors[1][:, 0].numpy()) for s in data.sites]
    with pytest.raises(np.linalg.LinAlgError):
        fit = federated_cox_newton(strata, penalizer=0.0, secure=False, max_iter=30)
        if not fit.converged or not np.all(np.isfinite(fit.beta)):
            raise np.linalg.LinAlgError("did not converge")
