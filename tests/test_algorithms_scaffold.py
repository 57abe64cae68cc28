import copy

import pytest
import torch

import fedlearn as fl
from fedlearn.algorithms import Scaffold
from fedlearn.system import SystemModel

from .drift_problem import WEIGHT_DECAY, drift_clients, flat_params, pooled_optimum
from .helpers import blobs


def test_scaffold_reaches_the_optimum_where_fedavg_drifts():
    clients = drift_clients()
    w_star = pooled_optimum(clients)
    cfg = fl.TrainConfig(steps=10, batch_size=None, lr=0.5, weight_decay=WEIGHT_DECAY)
    dist = {}
    for strategy in (fl.FedAvg(cfg), Scaffold(cfg)):
        m = fl.make_model("logreg", in_features=3, seed=0)
        fl.run(m, clients, strategy, rounds=30, eval_every=0, progress=False)
        dist[strategy.name] = float((flat_params(m) - w_star).norm())
    assert dist["FedAvg"] > 0.1  # converged, but to the wrong point
    assert dist["SCAFFOLD"] < 1e-3


def test_option_two_control_after_one_full_batch_step_is_the_local_gradient():
    clients = drift_clients()
    m = fl.make_model("logreg", in_features=3, seed=0)
    x0 = copy.deepcopy(m)
    strategy = Scaffold(fl.TrainConfig(steps=1, batch_size=None, lr=0.1))
    fl.run(m, clients, strategy, rounds=1, eval_every=0, progress=False)
    for c in clients:
        model = copy.deepcopy(x0)
        x, y = c.train.tensors
        torch.nn.functional.cross_entropy(model(x), y).backward()
        for name, p in model.named_parameters():
            assert torch.allclose(strategy.client_controls[c.cid][name], p.grad, atol=1e-5)


def test_server_control_is_weighted_mean_of_client_controls_under_sampling():
    clients = [fl.Client(i, blobs(20 + 10 * i, seed=i, shift=i - 2.0)) for i in range(5)]
    strategy = Scaffold(fl.TrainConfig(steps=5, batch_size=8, lr=0.2))
    m = fl.make_model("logreg", in_features=5, seed=0)
    fl.run(m, clients, strategy, rounds=6, fraction=0.4, eval_every=0, seed=3, progress=False)
    total = sum(c.num_train for c in clients)
    for name, c_val in strategy.c_global.items():
        expected = sum(c.num_train / total * strategy.client_control(c.cid)[name]
                       for c in clients)
        assert torch.allclose(c_val, expected, atol=1e-6)
    assert len(strategy.client_controls) == 5  # everyone was sampled at least once


def test_scaffold_doubles_the_bytes_both_ways():
    clients = drift_clients()
    cfg = fl.TrainConfig(steps=2, batch_size=None, lr=0.1)
    h_avg = fl.run(fl.make_model("logreg", in_features=3, seed=0), clients, fl.FedAvg(cfg),
                   rounds=2, eval_every=0, progress=False)
    h_sc = fl.run(fl.make_model("logreg", in_features=3, seed=0), clients, Scaffold(cfg),
                  rounds=2, eval_every=0, progress=False)
    a, s = h_avg.rounds_frame(), h_sc.rounds_frame()
    assert (s["bytes_up"] == 2 * a["bytes_up"]).all()
    assert (s["bytes_down"] == 2 * a["bytes_down"]).all()


def test_straggler_keeps_its_control_variate_and_the_invariant_holds():
    clients = drift_clients()
    strategy = Scaffold(fl.TrainConfig(steps=4, batch_size=None, lr=0.1))
    system = SystemModel(speeds={1: 0.5}, deadline=5.0)  # client 1 needs 8 s > 5 s
    m = fl.make_model("logreg", in_features=3, seed=0)
    h = fl.run(m, clients, strategy, rounds=3, eval_every=0, progress=False, system=system)
    assert all(r["participants"] == [0] and r["stragglers"] == [1] for r in h.rounds)
    assert 1 not in strategy.client_controls
    for name, c_val in strategy.c_global.items():
        assert torch.allclose(c_val, 0.4 * strategy.client_controls[0][name], atol=1e-6)


def test_momentum_or_adam_is_rejected():
    with pytest.raises(ValueError, match="plain SGD"):
        Scaffold(fl.TrainConfig(momentum=0.9))
    with pytest.raises(ValueError, match="plain SGD"):
        Scaffold(fl.TrainConfig(optimizer="adam"))
