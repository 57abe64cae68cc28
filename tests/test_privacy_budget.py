"""The budget guard refuses a plan that does not fit, and stops a run before it overspends."""

from __future__ import annotations

import pytest

import fedlearn as fl
from fedlearn.privacy import (
    BudgetExceededError,
    BudgetGuard,
    DPFedAvg,
    HospitalLedgers,
    PrivacyBudget,
    dp_clients_from,
    rounds_within_budget,
)
from fedlearn.privacy.accounting import rdp_epsilon

from .helpers import blobs

CFG = fl.TrainConfig(steps=2, batch_size=8, lr=0.1)


def _hospitals(k: int = 3) -> list[fl.Client]:
    return [fl.Client(cid=i, train=blobs(24 + 8 * i, seed=i), test=blobs(16, seed=9 + i))
            for i in range(k)]


def _dp(z: float = 1.0) -> DPFedAvg:
    return DPFedAvg(fl.FedAvg(CFG, weighted=False), noise_multiplier=z, clip_norm=1.0,
                    client_rate=1.0,
                    delta=1e-5)


def test_rounds_within_budget_is_the_exact_boundary():
    budget = PrivacyBudget(epsilon=3.0, delta=1e-5)
    n = rounds_within_budget(_dp(), budget)
    assert rdp_epsilon(1.0, 1.0, n, 1e-5) <= 3.0 < rdp_epsilon(1.0, 1.0, n + 1, 1e-5)
    assert rounds_within_budget(_dp(), PrivacyBudget(0.01, 1e-5)) == 0
    assert rounds_within_budget(_dp(), PrivacyBudget(1e6, 1e-5), limit=50) == 50


def test_a_plan_that_does_not_fit_is_refused_before_any_training():
    budget = PrivacyBudget(epsilon=3.0, delta=1e-5)
    fit = rounds_within_budget(_dp(), budget)
    guard = BudgetGuard(_dp(), budget, planned_rounds=fit + 5)
    model = fl.make_model("logreg", in_features=5, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(BudgetExceededError, match=f"only {fit} round"):
        fl.run(model, _hospitals(), guard, rounds=fit + 5, progress=False)
    assert all((before[k] == v).all() for k, v in model.state_dict().items())
    assert guard.inner.epsilon() == 0.0


def test_a_plan_that_fits_runs_to_the_end():
    budget = PrivacyBudget(epsilon=3.0, delta=1e-5)
    fit = rounds_within_budget(_dp(), budget)
    guard = BudgetGuard(_dp(), budget, planned_rounds=fit)
    model = fl.make_model("logreg", in_features=5, seed=0)
    hist = fl.run(model, _hospitals(), guard, rounds=fit, eval_every=0, progress=False)
    assert hist.stopped is None and len(hist.rounds) == fit
    assert guard.spent() <= 3.0


def test_the_run_stops_before_the_round_that_would_overspend():
    budget = PrivacyBudget(epsilon=3.0, delta=1e-5)
    fit = rounds_within_budget(_dp(), budget)
    guard = BudgetGuard(_dp(), budget)  # no plan: stop on the way
    model = fl.make_model("logreg", in_features=5, seed=0)
    hist = fl.run(model, _hospitals(), guard, rounds=fit + 10, eval_every=0, progress=False)
    assert len(hist.rounds) == fit
    assert hist.stopped is not None
    assert f"before round {fit + 1}" in hist.stopped and "privacy budget" in hist.stopped
    assert guard.spent() <= 3.0 < guard.ledger.epsilon_after(1, 1e-5)


def test_sample_level_guard_watches_the_worst_hospital():
    clients = dp_clients_from(_hospitals(), noise_multiplier=1.0)
    ledger = HospitalLedgers(clients, CFG)
    budget = PrivacyBudget(epsilon=2.0, delta=1e-5)
    guard = BudgetGuard(fl.FedAvg(CFG), budget, ledger=ledger)
    model = fl.make_model("logreg", in_features=5, seed=0)
    hist = fl.run(model, clients, guard, rounds=200, eval_every=0, progress=False)
    assert hist.stopped is not None and "privacy budget" in hist.stopped
    worst = max(c.epsilon() for c in clients)
    assert worst <= 2.0 < ledger.epsilon_after(1)
    # the smallest hospital (highest sampling rate) is the binding one
    per = ledger.per_hospital()
    assert max(per, key=per.get) == clients[0].name


def test_guard_needs_a_ledger():
    with pytest.raises(TypeError, match="ledger"):
        BudgetGuard(fl.FedAvg(CFG), PrivacyBudget(1.0, 1e-5))
    with pytest.raises(TypeError, match="DPClient"):
        HospitalLedgers(_hospitals(), CFG)
    with pytest.raises(ValueError, match="epsilon"):
        PrivacyBudget(0.0, 1e-5)
