import copy

import numpy as np
import pytest
import torch

import fedlearn as fl
from fedlearn.system import SystemModel, planned_steps, random_speeds

from .helpers import blobs


def _clients(k=4):
    return [fl.Client(i, blobs(20 + 10 * i, seed=i), blobs(15, seed=30 + i), name=f"H{i}")
            for i in range(k)]


def test_planned_steps_counts_steps_like_local_train():
    assert planned_steps(fl.TrainConfig(steps=13), 100) == 13
    assert planned_steps(fl.TrainConfig(epochs=3, batch_size=8), 20) == 9  # ceil(20/8) = 3
    assert planned_steps(fl.TrainConfig(epochs=2, batch_size=None), 20) == 2
    client = _clients()[2]
    cfg = fl.TrainConfig(epochs=2, batch_size=16, lr=0.1)
    m = fl.make_model("logreg", in_features=5, seed=0)
    u = client.fit(m, copy.deepcopy(m.state_dict()), cfg, seed=0)
    assert u.metrics["num_steps"] == planned_steps(cfg, client.num_train)


def test_step_budget_runs_fewer_steps_and_equals_local_train_with_that_budget():
    clients = _clients(3)
    cfg = fl.TrainConfig(epochs=2, batch_size=8, lr=0.2)
    system = SystemModel(step_budgets={1: 3})
    plan = system.plan_round(1, clients, fl.FedAvg(cfg).configure_round(1, clients))
    assert plan.steps == {0: 6, 1: 3, 2: 10}
    assert plan.instructions[0].config is cfg  # untouched when the budget does not bind
    assert plan.instructions[1].config.steps == 3
    # the run with the budget equals a run where hospital 1 was asked for 3 steps
    m = fl.make_model("logreg", in_features=5, seed=0)
    a = copy.deepcopy(m)
    fl.run(a, clients, fl.FedAvg(cfg), rounds=1, eval_every=0, progress=False, system=system)
    g = copy.deepcopy(m.state_dict())
    ups = [c.fit(copy.deepcopy(m), g, cfg if c.cid != 1 else fl.TrainConfig(
        steps=3, batch_size=8, lr=0.2), seed=fl.utils.derive_seed(0, 1, c.cid)) for c in clients]
    expected = fl.apply_delta(g, fl.fedavg_delta(ups))
    for k in expected:
        assert torch.allclose(a.state_dict()[k], expected[k], atol=1e-7)


def test_stragglers_are_left_out_of_the_aggregate_and_the_run_continues():
    clients = _clients(4)
    cfg = fl.TrainConfig(steps=10, batch_size=8, lr=0.2)
    # hospital 3 needs 10 / 0.5 = 20 s, more than the 12 s deadline
    system = SystemModel(speeds={0: 1.0, 1: 2.0, 2: 1.0, 3: 0.5}, deadline=12.0)
    m = fl.make_model("logreg", in_features=5, seed=0)
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    h = fl.run(a, clients, fl.FedAvg(cfg), rounds=3, progress=False, system=system)
    fl.run(b, clients[:3], fl.FedAvg(cfg), rounds=3, eval_every=0, progress=False)
    for k in a.state_dict():  # same as if hospital 3 did not exist
        assert torch.equal(a.state_dict()[k], b.state_dict()[k])
    rf = h.rounds_frame()
    assert rf["participants"].tolist() == [[0, 1, 2]] * 3
    assert rf["stragglers"].tolist() == [[3]] * 3
    assert rf["sim_seconds"].tolist() == [12.0] * 3  # the server waited until the deadline
    assert (h.participation().loc[:, 3] == "straggler").all()
    assert "H3" in set(h.to_dataframe()["test_set"])  # still evaluated


def test_without_deadline_the_round_lasts_as_long_as_the_slowest_client():
    clients = _clients(3)
    cfg = fl.TrainConfig(steps=10, batch_size=8, lr=0.2)
    system = SystemModel(speeds=[1.0, 4.0, 0.25])
    h = fl.run(fl.make_model("logreg", in_features=5, seed=0), clients, fl.FedAvg(cfg),
               rounds=2, eval_every=0, progress=False, system=system)
    assert h.rounds_frame()["sim_seconds"].tolist() == [40.0, 40.0]


def test_partial_work_reports_the_steps_done_by_the_deadline():
    clients = _clients(3)
    cfg = fl.TrainConfig(steps=10, batch_size=8, lr=0.2)
    system = SystemModel(speeds={2: 0.35}, deadline=10.0, partial_work=True)
    plan = system.plan_round(1, clients, fl.FedAvg(cfg).configure_round(1, clients))
    assert plan.truncated == (2,) and plan.stragglers == ()
    assert plan.steps[2] == 3 and plan.instructions[2].config.steps == 3
    h = fl.run(fl.make_model("logreg", in_features=5, seed=0), clients, fl.FedAvg(cfg),
               rounds=2, eval_every=0, progress=False, system=system)
    assert h.rounds[0]["participants"] == [0, 1, 2]
    assert (h.participation()[2] == "partial").all()
    too_slow = SystemModel(speeds={2: 0.05}, deadline=10.0, partial_work=True)
    plan = too_slow.plan_round(1, clients, fl.FedAvg(cfg).configure_round(1, clients))
    assert plan.stragglers == (2,)  # not even one step by the deadline


def test_dropouts_are_random_reproducible_and_independent_of_sampling():
    clients = _clients(4)
    system = SystemModel(dropout=0.3, seed=5)
    ins = fl.FedAvg(fl.TrainConfig(steps=1)).configure_round(1, clients)
    drops = [system.plan_round(r, clients, ins).dropped for r in range(1, 401)]
    rate = sum(len(d) for d in drops) / (400 * 4)
    assert 0.25 < rate < 0.35
    assert drops == [system.plan_round(r, clients, ins).dropped for r in range(1, 401)]
    # client 2's fate does not depend on who else was sampled
    alone = [system.plan_round(r, clients[2:3], ins).dropped for r in range(1, 401)]
    assert [2 in d for d in drops] == [2 in d for d in alone]


def test_a_round_where_everyone_drops_leaves_the_model_unchanged():
    clients = _clients(2)
    cfg = fl.TrainConfig(steps=3, batch_size=8, lr=0.2)
    system = SystemModel(dropout=0.6, seed=1)
    m = fl.make_model("logreg", in_features=5, seed=0)
    states = [copy.deepcopy(m.state_dict())]  # states[r] = global model after round r
    h = fl.run(m, clients, fl.FedAvg(cfg), rounds=12, eval_every=0, progress=False,
               system=system, callback=lambda r, mod, hist: states.append(
                   copy.deepcopy(mod.state_dict())))
    empty = [r["round"] for r in h.rounds if not r["participants"]]
    assert empty, "expected at least one round with no participant for this seed"
    for r in empty:
        assert all(torch.equal(states[r][k], states[r - 1][k]) for k in states[r])
    assert any(not torch.equal(states[-1][k], states[0][k]) for k in states[0])
    assert all(r["bytes_up"] == 0 for r in h.rounds if not r["participants"])
    table = h.participation()
    assert set(np.unique(table.to_numpy())) <= {"trained", "dropped out"}


def test_history_participation_without_system_model():
    h = fl.run(fl.make_model("logreg", in_features=5, seed=0), _clients(4),
               fl.FedAvg(fl.TrainConfig(steps=1)), rounds=3, fraction=0.5, eval_every=0,
               progress=False, seed=2)
    table = h.participation()
    assert list(table.index) == [1, 2, 3]
    assert ((table == "trained").sum(axis=1) == 2).all()


def test_random_speeds_and_validation():
    s = random_speeds(range(200), sigma=1.0, seed=0)
    assert s == random_speeds(range(200), sigma=1.0, seed=0)
    assert 0.7 < float(np.median(list(s.values()))) < 1.4
    with pytest.raises(ValueError, match="speeds"):
        SystemModel(speeds=[1.0, 0.0])
    with pytest.raises(ValueError, match="deadline"):
        SystemModel(deadline=0)
    with pytest.raises(ValueError, match="dropout"):
        SystemModel(dropout=1.0)
    with pytest.raises(ValueError, match="budgets"):
        SystemModel(step_budgets={0: -1})
