import copy

import pytest
import torch

import fedlearn as fl
from fedlearn.algorithms import FedNova, normalizing_steps
from fedlearn.system import SystemModel

from .drift_problem import WEIGHT_DECAY, drift_clients, flat_params, pooled_optimum
from .helpers import blobs


def _clients():
    return [fl.Client(i, blobs(24 + 8 * i, seed=i, shift=i - 1.0)) for i in range(3)]


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_equal_step_counts_give_fedavg(momentum):
    cfg = fl.TrainConfig(steps=7, batch_size=8, lr=0.1, momentum=momentum)
    m = fl.make_model("mlp", in_features=5, hidden=(6,), seed=0)
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    fl.run(a, _clients(), fl.FedAvg(cfg), rounds=3, eval_every=0, progress=False)
    fl.run(b, _clients(), FedNova(cfg), rounds=3, eval_every=0, progress=False)
    for k in a.state_dict():
        assert torch.allclose(a.state_dict()[k], b.state_dict()[k], atol=1e-6), k


def test_combine_matches_hand_computation():
    ups = [fl.ClientUpdate(0, {"w": torch.tensor([2.0, -4.0])}, 10, {"num_steps": 2.0}),
           fl.ClientUpdate(1, {"w": torch.tensor([8.0, 8.0])}, 30, {"num_steps": 8.0})]
    p = torch.tensor([0.25, 0.75])
    tau_eff = 0.25 * 2 + 0.75 * 8
    expected = tau_eff * (p[0] * ups[0].delta["w"] / 2 + p[1] * ups[1].delta["w"] / 8)
    out = FedNova().combine(1, ups)
    assert torch.allclose(out["w"], expected)


@pytest.mark.parametrize("rho,tau", [(0.0, 5), (0.5, 1), (0.9, 12)])
def test_normalizing_steps_is_the_heavy_ball_displacement(rho, tau):
    # under a constant gradient g, tau momentum-SGD steps move by lr * g * a(tau)
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.1, momentum=rho)
    for _ in range(tau):
        opt.zero_grad()
        (w * 1.0).sum().backward()
        opt.step()
    assert float(-w.detach()) / 0.1 == pytest.approx(normalizing_steps(tau, rho), rel=1e-5)


def test_fednova_removes_the_objective_inconsistency_of_unequal_steps():
    clients = drift_clients()
    w_star = pooled_optimum(clients)
    cfg = fl.TrainConfig(steps=10, batch_size=None, lr=0.05, weight_decay=WEIGHT_DECAY)
    system = SystemModel(step_budgets={0: 1})  # hospital 0 only manages one step per round
    dist = {}
    for strategy in (fl.FedAvg(cfg), FedNova(cfg)):
        m = fl.make_model("logreg", in_features=3, seed=0)
        fl.run(m, clients, strategy, rounds=100, eval_every=0, progress=False, system=system)
        dist[strategy.name] = float((flat_params(m) - w_star).norm())
    assert dist["FedAvg"] > 0.1
    assert dist["FedNova"] < 0.3 * dist["FedAvg"]


def test_adam_local_solver_is_rejected():
    with pytest.raises(ValueError, match="SGD"):
        FedNova(fl.TrainConfig(optimizer="adam"))
