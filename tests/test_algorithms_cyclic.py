"""Cyclic weight transfer: one hospital per round, FLamby's cycle order, the model passed on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.algorithms import Cyclic
from fedlearn.system import SystemModel


def _clients(k: int = 4) -> list[fl.Client]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(k):
        x = torch.randn(20 + 5 * i, 3, generator=g)
        y = (x[:, 0] + 0.3 * i > 0).long()
        out.append(fl.Client(i, TensorDataset(x, y), TensorDataset(x[:8], y[:8])))
    return out


def test_each_round_trains_one_client_in_flamby_cycle_order() -> None:
    clients = _clients(4)
    strategy = Cyclic(fl.TrainConfig(steps=3, batch_size=4, lr=0.1), seed=45)
    hist = fl.run(fl.make_model("logreg", in_features=3, seed=0), clients, strategy, rounds=10,
                  seed=0, progress=False)
    participants = [r["participants"] for r in hist.rounds]
    assert all(len(p) == 1 for p in participants)
    rng = np.random.default_rng(45)  # FLamby: a fresh permutation at each cycle start
    expected = [*rng.permutation(4), *rng.permutation(4), *rng.permutation(4)][:10]
    assert [p[0] for p in participants] == [int(c) for c in expected] == strategy.visits


def test_deterministic_cycle_uses_the_listed_order() -> None:
    strategy = Cyclic(fl.TrainConfig(steps=1), deterministic=True)
    fl.run(fl.make_model("logreg", in_features=3, seed=0), _clients(3), strategy, rounds=7,
           seed=0, progress=False, eval_every=0)
    assert strategy.visits == [0, 1, 2, 0, 1, 2, 0]


def test_the_model_is_passed_from_hospital_to_hospital() -> None:
    clients = _clients(3)
    cfg = fl.TrainConfig(steps=5, batch_size=4, lr=0.2)
    model = fl.make_model("logreg", in_features=3, seed=1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fl.run(model, clients, Cyclic(cfg, deterministic=True), rounds=3, seed=7, progress=False,
           eval_every=0)
    worker = fl.make_model("logreg", in_features=3, seed=1)
    for rnd, c in enumerate(clients, start=1):  # sequential training, by hand
        u = c.fit(worker, state, cfg, seed=fl.utils.derive_seed(7, rnd, c.cid))
        state = {k: state[k] + u.delta[k] for k in state}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=1e-6)


def test_single_update_marks_it_for_the_aggregation_layer() -> None:
    assert Cyclic.single_update is True
    assert getattr(fl.FedAvg(), "single_update", False) is False
    # its "sum" is one hospital's update: secure aggregation and DP are refused, saying why
    from fedlearn.aggregators import CompositionError
    from fedlearn.privacy import DPFedAvg
    from fedlearn.secagg import SecureAggregation

    with pytest.raises(CompositionError, match="one hospital's update per round"):
        SecureAggregation(Cyclic())
    with pytest.raises(CompositionError, match="one hospital's update per round"):
        DPFedAvg(Cyclic(), noise_multiplier=1.0, clip_norm=1.0)


def test_a_dropped_hospital_is_skipped_to_the_next_in_cycle() -> None:
    strategy = Cyclic(fl.TrainConfig(steps=1), deterministic=True)
    clients = _clients(3)
    strategy.initialize({}, clients)
    assert strategy.next_client([0, 2]) == 0
    assert strategy.next_client([0, 2]) == 2  # 1 is unavailable: its turn passes
    with pytest.raises(ValueError, match="none of the sampled clients"):
        strategy.next_client([9])
    two = [fl.ClientUpdate(cid=c, delta={"w": torch.ones(2)}, num_examples=3) for c in (0, 1)]
    with pytest.raises(ValueError, match="exactly one update"):
        strategy.aggregate_round(1, {"w": torch.zeros(2)}, two)


def test_cyclic_runs_under_a_system_model_with_dropouts() -> None:
    system = SystemModel(dropout=0.3, seed=0)
    hist = fl.run(fl.make_model("logreg", in_features=3, seed=0), _clients(3),
                  Cyclic(fl.TrainConfig(steps=2)), rounds=6, seed=0, progress=False,
                  system=system, eval_every=0)
    assert all(len(r["participants"]) <= 1 for r in hist.rounds)
