"""Membership inference works on an overfitted model, and DP-SGD takes it back to chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.privacy import (
    MembershipResult,
    calibrate_noise,
    dp_local_train,
    lira_attack,
    loss_threshold_attack,
    make_engine,
    top_fraction_filter,
)
from fedlearn.privacy.attacks import logit_confidence, per_example_loss
from fedlearn.privacy.dpsgd import dp_sample_rate, dp_steps_per_round

OVERFIT = fl.TrainConfig(steps=300, batch_size=None, lr=0.01, optimizer="adam")
DP_CFG = fl.TrainConfig(epochs=40, batch_size=16, lr=0.01, optimizer="adam")


def _noisy_labels(n: int, seed: int, d: int = 10) -> TensorDataset:
    """A linear task with 30 % flipped labels: fitting the flips means memorising patients."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.linspace(-1, 1, d) > 0).long()
    flip = torch.rand(n, generator=g) < 0.3
    y[flip] = 1 - y[flip]
    return TensorDataset(x, y)


def _overfit(data: TensorDataset, seed: int) -> torch.nn.Module:
    model = fl.make_model("mlp", in_features=data.tensors[0].shape[1], hidden=(128,), seed=seed)
    fl.local_train(model, model.state_dict(), data, OVERFIT, seed=seed)
    return model


def _dp_train(data: TensorDataset, epsilon: float, seed: int) -> torch.nn.Module:
    model = fl.make_model("mlp", in_features=data.tensors[0].shape[1], hidden=(128,), seed=seed)
    q = dp_sample_rate(len(data), DP_CFG.batch_size)
    sigma = calibrate_noise(epsilon, 1e-5, q, dp_steps_per_round(len(data), DP_CFG))
    dp_local_train(model, model.state_dict(), data, DP_CFG, engine=make_engine(),
                   noise_multiplier=sigma, max_grad_norm=1.0, seed=seed)
    return model


def _split(pop: TensorDataset, mask: np.ndarray) -> tuple[TensorDataset, TensorDataset]:
    x, y = pop.tensors
    m = torch.as_tensor(mask)
    return TensorDataset(x[m], y[m]), TensorDataset(x[~m], y[~m])


@pytest.fixture(scope="module")
def synthetic():
    torch.set_num_threads(1)
    pop = _noisy_labels(240, seed=0)
    mask = np.random.default_rng(0).random(len(pop)) < 0.5
    members, non = _split(pop, mask)
    return pop, mask, members, non, _overfit(members, seed=1)


def test_membership_result_summaries():
    perfect = MembershipResult.from_scores(np.array([2.0, 3.0]), np.array([0.0, 1.0]), 1.5)
    assert perfect.auc == 1.0 and perfect.advantage == 1.0 and perfect.threshold_advantage == 1.0
    coin = MembershipResult.from_scores(np.zeros(50), np.zeros(50))
    assert coin.auc == 0.5 and coin.advantage == 0.0
    fpr, tpr = perfect.roc()
    assert fpr[0] == 0 and tpr[-1] == 1
    with pytest.raises(ValueError, match="member"):
        MembershipResult.from_scores(np.array([]), np.zeros(3))


def test_per_example_statistics(synthetic):
    pop, _, _, _, model = synthetic
    loss = per_example_loss(model, pop)
    phi = logit_confidence(model, pop)
    with torch.no_grad():
        logits = model(pop.tensors[0]).double()
    p = torch.softmax(logits, 1).gather(1, pop.tensors[1].view(-1, 1)).squeeze().numpy()
    np.testing.assert_allclose(loss, -np.log(p), rtol=1e-4, atol=1e-6)
    ok = p < 1 - 1e-9  # where log(p / (1 - p)) is still representable
    np.testing.assert_allclose(phi[ok], np.log(p / (1 - p))[ok], rtol=1e-6, atol=1e-6)
    assert np.all(np.isfinite(phi))  # the logit form stays finite where 1 - p underflows


def test_loss_threshold_attack_succeeds_on_an_overfitted_model(synthetic):
    _, _, members, non, model = synthetic
    assert fl.evaluate(model, members)["accuracy"] == 1.0  # it memorised the flipped labels
    res = loss_threshold_attack(model, members, non)
    assert res.auc > 0.65
    assert res.threshold_advantage is not None and res.threshold_advantage > 0.15


def test_dp_sgd_takes_the_attack_back_towards_chance(synthetic):
    _, _, members, non, model = synthetic
    leaky = loss_threshold_attack(model, members, non).auc
    private = loss_threshold_attack(_dp_train(members, 1.0, seed=1), members, non).auc
    assert abs(private - 0.5) < 0.08
    assert private < leaky - 0.1


@pytest.mark.slow
def test_lira_beats_chance_with_shadow_models(synthetic):
    pop, mask, _, _, model = synthetic
    res = lira_attack(model, pop, mask, _overfit, n_shadow=8, seed=0)
    assert res.auc > 0.65
    with pytest.raises(ValueError, match="is_member"):
        lira_attack(model, pop, mask[:-1], _overfit, n_shadow=2)


@pytest.mark.realdata
@pytest.mark.slow
def test_membership_inference_on_a_real_hospital(real_data_dir):
    torch.set_num_threads(1)
    site = fl.data.load_heart_disease(root=real_data_dir)[0]  # Cleveland, 303 patients
    pop = TensorDataset(torch.cat([site.train.tensors[0], site.test.tensors[0]]),
                        torch.cat([site.train.tensors[1], site.test.tensors[1]]))
    mask = np.random.default_rng(1).random(len(pop)) < 0.5
    members, non = _split(pop, mask)
    model = _overfit(members, seed=0)
    assert loss_threshold_attack(model, members, non).auc > 0.6
    assert lira_attack(model, pop, mask, _overfit, n_shadow=8, seed=0).auc > 0.65
    assert loss_threshold_attack(_dp_train(members, 1.0, seed=0), members, non).auc < 0.58


def test_top_fraction_filter_is_deterministic_hence_not_dp():
    g = torch.Generator().manual_seed(0)
    delta = {"w": torch.randn(10, 10, generator=g), "b": torch.randn(10, generator=g)}
    kept = top_fraction_filter(delta, 0.1)
    nonzero = sum(int((v != 0).sum()) for v in kept.values())
    assert nonzero == 11  # 10 % of 110 entries
    smallest_kept = min(float(v[v != 0].abs().min()) for v in kept.values() if (v != 0).any())
    largest_dropped = max(float(delta[k][kept[k] == 0].abs().max()) for k in delta)
    assert smallest_kept >= largest_dropped
    # same input, same output: the release carries no randomness at all, so two neighbouring
    # datasets whose filtered updates differ are distinguished with certainty (epsilon = inf)
    again = top_fraction_filter(delta, 0.1)
    assert all(torch.equal(kept[k], again[k]) for k in kept)
    with pytest.raises(ValueError):
        top_fraction_filter(delta, 0.0)


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=30),
       st.lists(st.floats(-5, 5), min_size=1, max_size=30), st.floats(0, 1))
@settings(max_examples=60, deadline=None)
def test_tpr_at_fpr_is_the_best_threshold_within_the_fpr(member, nonmember, max_fpr):
    from fedlearn.privacy.attacks import MembershipResult

    res = MembershipResult.from_scores(np.array(member), np.array(nonmember))
    tpr, fpr, k, j = res.tpr_at_fpr(max_fpr)
    m, o = np.array(member), np.array(nonmember)
    # brute force over every threshold "accuse scores >= t"
    allowed = [int((m >= t).sum()) for t in np.r_[m, o, np.inf]
               if (o >= t).sum() <= max_fpr * o.size]
    assert k == max(allowed) and tpr == k / m.size and fpr == j / o.size <= max_fpr
    with pytest.raises(ValueError, match="max_fpr"):
        res.tpr_at_fpr(1.5)
