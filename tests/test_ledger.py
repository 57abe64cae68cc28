"""The release ledger: what leaves a hospital, its protection and its epsilon."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import PRVAccountant, RDPAccountant

import fedlearn as fl
from fedlearn.errors import ConfigError
from fedlearn.ledger import Ledger, Release, _ranges
from fedlearn.privacy import (
    Accountant,
    BudgetExceededError,
    BudgetGuard,
    DPFedAvg,
    PrivacyBudget,
    dp_clients_from,
    dp_threshold,
)
from fedlearn.secagg import DistributedGaussian, SecureAggregation

from .helpers import blobs

CFG = fl.TrainConfig(steps=3, batch_size=8, lr=0.1)


def hospitals(k: int = 4, n: int = 24) -> list[fl.Client]:
    return [fl.Client(cid=i, train=blobs(n + 4 * i, seed=i), test=blobs(16, seed=50 + i),
                      name=f"H{i}") for i in range(k)]


def mlp():
    return fl.make_model("mlp", in_features=5, hidden=(6,), seed=0)


def dp_strategies():
    return {
        "central": lambda: DPFedAvg.fixed(fl.FedAvg(CFG, weighted=False), noise_multiplier=1.0,
                                          clip_norm=1.0),
        "distributed": lambda: SecureAggregation(
            fl.FedAvg(CFG, weighted=False), threshold=3,
            transform=DistributedGaussian(clip_norm=1.0, noise_multiplier=1.0)),
    }


# ------------------------------------------------------------------ safe defaults
@pytest.mark.parametrize("kind", ["central", "distributed", "dp-sgd"])
def test_a_dp_run_by_default_releases_nothing_unaccounted(kind):
    if kind == "dp-sgd":
        clients, strategy = dp_clients_from(hospitals(), 1.0, record_unit="image"), fl.FedAvg(CFG)
    else:
        clients, strategy = hospitals(), dp_strategies()[kind]()
    h = fl.run(mlp(), clients, strategy, rounds=2, progress=False)
    ledger = h.release_ledger
    assert not ledger.unaccounted()
    assert set(h.ledger["status"]) <= {"dp", "post-processing", "public", "trusted", "masked"}
    # no exact loss, no test metrics: History holds none
    assert all(math.isnan(r["train_loss"]) for r in h.rounds)
    assert not h.evals and {"train_loss", "test_metrics"} <= set(h.withheld)
    assert "train_loss" not in set(h.ledger["quantity"])
    assert "every release is accounted" in ledger.text()
    with pytest.raises(ValueError, match="release_unaccounted=\\('test_metrics',\\)"):
        h.final("accuracy")
    unit = "image" if kind == "dp-sgd" else "hospital"
    summary = h.privacy_summary()
    assert set(summary.index.get_level_values("unit")) == {unit}
    assert np.isfinite(summary["epsilon"]).all()


def test_the_opt_in_path_flags_what_it_releases():
    h = fl.run(mlp(), hospitals(), dp_strategies()["central"](), rounds=2, progress=False,
               release_unaccounted=("train_loss", "test_metrics"))
    assert all(np.isfinite(r["train_loss"]) for r in h.rounds)
    assert h.final("accuracy") >= 0
    flagged = h.release_ledger.unaccounted()
    assert {r.quantity for r in flagged} == {"train_loss", "test metrics"}
    assert all("opt-in" in r.note for r in flagged)
    # 4 losses per round x 2 rounds, test metrics of 4 hospitals + pooled at rounds 0-2
    assert sum(r.quantity == "train_loss" for r in flagged) == 8
    assert sum(r.quantity == "test metrics" for r in flagged) == 3 * 5
    assert "UNACCOUNTED" in h.release_ledger.text()
    assert set(h.privacy_summary()["unaccounted"]) == {"test metrics, train_loss"}


def test_release_unaccounted_names_are_checked():
    with pytest.raises(ConfigError, match="release_unaccounted.*'loss'.*train_loss"):
        fl.run(mlp(), hospitals(), fl.FedAvg(CFG), rounds=1, progress=False,
               release_unaccounted=("loss",))


def test_a_run_without_dp_lists_everything_as_unprotected():
    h = fl.run(mlp(), hospitals(), fl.FedAvg(CFG), rounds=2, progress=False)
    frame = h.ledger
    assert set(frame["status"]) == {"unprotected", "public"}  # public: who took part
    assert {"delta", "weight", "train_loss", "test metrics", "global model"} <= set(
        frame["quantity"])
    assert np.isinf(h.privacy_summary()["epsilon"]).all()
    assert "no DP" in h.release_ledger.text()
    # the delta row of hospital 2 in round 1: its size, seen by the server, in the clear
    row = frame[(frame["quantity"] == "delta") & (frame["round"] == 1)
                & (frame["about"] == "H2")].iloc[0]
    assert row["numbers"] == fl.num_parameters(mlp()) and row["seen_by"] == "server"


def test_secure_aggregation_without_dp_masks_inputs_but_reveals_the_sum():
    h = fl.run(mlp(), hospitals(), SecureAggregation(fl.FedAvg(CFG)), rounds=1, progress=False)
    f = h.ledger
    assert set(f[f["quantity"] == "delta"]["status"]) == {"masked"}
    assert set(f[f["quantity"] == "sum of delta"]["status"]) == {"unprotected"}


# ------------------------------------------------------------------ epsilons
def test_central_dp_epsilon_equals_opacus_on_the_same_steps():
    strategy = DPFedAvg.fixed(fl.FedAvg(CFG, weighted=False), noise_multiplier=1.3,
                              clip_norm=1.0, client_rate=0.5, seed=1)
    h = fl.run(mlp(), hospitals(), strategy, rounds=6, progress=False)
    ref = RDPAccountant()
    for _ in range(6):
        ref.step(noise_multiplier=1.3, sample_rate=0.5)
    total = h.privacy_summary()["epsilon"]
    assert np.allclose(total, ref.get_epsilon(1e-5), rtol=0.02)
    assert np.allclose(total, strategy.epsilon())
    rows = h.ledger[h.ledger["status"] == "dp"]
    assert set(rows["sigma"]) == {1.3}  # z C w_max with C = 1, w = 1
    assert set(rows["sensitivity"]) == {1.0}


def test_dp_sgd_totals_equal_each_hospitals_opacus_accountant():
    clients = dp_clients_from(hospitals(), 1.1, record_unit="image")
    h = fl.run(mlp(), clients, fl.FedAvg(CFG), rounds=2, progress=False)
    summary = h.privacy_summary()
    for c in clients:
        ref = RDPAccountant()
        ref.history = list(c.engine.accountant.history)
        assert ref.history and sum(t for *_, t in ref.history) == 2 * CFG.steps
        assert summary.loc[(c.name, "image"), "epsilon"] == pytest.approx(
            ref.get_epsilon(1e-5), rel=0.02)


def test_a_threshold_selection_adds_its_epsilon_to_the_hospitals_whose_data_it_used():
    clients = dp_clients_from(hospitals(), 1.1, record_unit="image")
    fl.run(mlp(), clients, fl.FedAvg(CFG), rounds=1, progress=False)
    before = [c.epsilon() for c in clients]
    rng = np.random.default_rng(0)
    sites = [(rng.integers(0, 2, 30), rng.random(30)) for _ in clients[:2]]
    dp_threshold(sites, 0.5, seed=0, accountants=[c.accountant for c in clients[:2]])
    after = [c.epsilon() for c in clients]
    assert after[0] == pytest.approx(before[0] + 0.5) and after[1] == pytest.approx(
        before[1] + 0.5)
    assert after[2:] == before[2:]  # their validation data was not used
    with pytest.raises(ValueError, match="accountants: 1 given for 2 hospitals"):
        dp_threshold(sites, 0.5, seed=0, accountants=[clients[0].accountant])


def test_prv_back_end_matches_opacus_prv():
    acc = Accountant("prv")
    acc.gaussian(1.0, 0.1, 50)
    ref = PRVAccountant()
    ref.history = [(1.0, 0.1, 50)]
    assert acc.epsilon(1e-5) == pytest.approx(ref.get_epsilon(1e-5), rel=1e-6)
    rdp = Accountant("rdp")
    rdp.gaussian(1.0, 0.1, 50)
    assert acc.epsilon(1e-5) < rdp.epsilon(1e-5)  # PRV is the tighter analysis
    with pytest.raises(ValueError, match="backend must be one of"):
        Accountant("gdp")  # type: ignore[arg-type]


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=4),
       st.lists(st.floats(0.01, 2.0), max_size=3))
def test_accountant_composes_like_opacus_plus_pure_releases(steps, pure):
    acc = Accountant("rdp")
    ref = RDPAccountant()
    for t in steps:
        acc.gaussian(1.2, 0.2, t)
        for _ in range(t):
            ref.step(noise_multiplier=1.2, sample_rate=0.2)
    for e in pure:
        acc.pure_epsilon(e)
    ahead = acc.epsilon_after(1.2, 0.2, 5, 1e-5)  # a forecast spends nothing
    assert acc.steps == sum(steps) and acc.epsilon(1e-5) <= ahead
    assert acc.epsilon(1e-5) == pytest.approx(ref.get_epsilon(1e-5) + sum(pure), rel=0.02)


def test_one_budget_guard_guards_distributed_dp():
    strategy = SecureAggregation(fl.FedAvg(CFG, weighted=False), threshold=3,
                                 transform=DistributedGaussian(1.0, 0.8))
    with pytest.raises(BudgetExceededError, match="only 1 round"):
        fl.run(mlp(), hospitals(), BudgetGuard(strategy, PrivacyBudget(8.0, 1e-5),
                                               planned_rounds=10), rounds=10, progress=False)
    guard = BudgetGuard(strategy, PrivacyBudget(12.0, 1e-5))
    h = fl.run(mlp(), hospitals(), guard, rounds=10, progress=False)
    assert h.stopped and "privacy budget" in h.stopped
    assert 0 < guard.spent() <= 12.0
    assert h.privacy_summary()["epsilon"].max() == pytest.approx(guard.spent())


# ------------------------------------------------------------------ named recipes
def test_for_budget_spends_the_target_over_the_planned_rounds():
    s = DPFedAvg.for_budget(fl.FedAvg(CFG), epsilon=3.0, delta=1e-5, rounds=4,
                            client_rate=0.5)
    assert not s.weighted  # unweighted by default: sensitivity C
    fl.run(mlp(), hospitals(), s, rounds=4, progress=False)
    assert 2.9 <= s.epsilon() <= 3.0
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        DPFedAvg.for_budget(fl.FedAvg(CFG), epsilon=3.0, delta=1e-5, rounds=0)


def test_adaptive_recipe_releases_its_noised_count():
    s = DPFedAvg.adaptive(fl.FedAvg(CFG, weighted=False), noise_multiplier=1.0,
                          initial_clip=0.5, count_noise=0.6)
    h = fl.run(mlp(), hospitals(), s, rounds=2, progress=False)
    rows = h.ledger[h.ledger["quantity"] == "noised centred count (adaptive clipping)"]
    assert len(rows) == 2 and set(rows["sensitivity"]) == {0.5} and set(rows["sigma"]) == {0.6}
    assert s.adaptive_clipping is not None and s.clip_norm != 0.5


def test_buffers_release_is_flagged():
    from .test_aggregators_matrix import BNNet

    s = DPFedAvg.fixed(fl.FedAvg(CFG, weighted=False), noise_multiplier=1.0, clip_norm=1.0,
                       buffers="release")
    h = fl.run(BNNet(), hospitals(), s, rounds=1, progress=False)
    assert [r.note for r in h.release_ledger.unaccounted()] == ["opt-in: buffers='release'"]


# ------------------------------------------------------------------ the table itself
def test_release_rows_are_checked_and_tables_fold_rounds():
    with pytest.raises(ValueError, match="status must be one of"):
        Release(1, "x", 1, "hospital", (0,), "server", "none", "secret")
    with pytest.raises(ValueError, match="needs its epsilon"):
        Release(1, "x", 1, "hospital", (0,), "server", "Gaussian", "dp")
    assert _ranges([1, 2, 3, 5, -1]) == "1-3, 5, after"
    ledger = Ledger({0: "A", 1: "B"})
    for rnd in (1, 2, 3):
        for cid in (0, 1):
            ledger.add(Release(rnd, "delta", 10, "hospital", (cid,), "server", "Gaussian",
                               "dp", "hospital", 1.0, 1.0, 0.5 * rnd, 1e-5, "acc"))
    ledger.add_study_release("threshold", (0,), status="dp", mechanism="Laplace",
                             unit="hospital", epsilon=0.25, delta=0.0, accountant="thr")
    compact = ledger.compact()
    assert compact.loc[0, "rounds"] == "1-3" and compact.loc[0, "hospitals"] == 2
    s = ledger.summary()
    assert s.loc[("A", "hospital"), "epsilon"] == pytest.approx(1.5 + 0.25)  # summed
    assert s.loc[("B", "hospital"), "epsilon"] == pytest.approx(1.5)
