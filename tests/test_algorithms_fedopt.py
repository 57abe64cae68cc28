import copy

import pytest
import torch

import fedlearn as fl
from fedlearn.algorithms import FedAdagrad, FedAdam, FedAvgM, FedYogi

from .helpers import blobs


def _state():
    return {"w": torch.tensor([0.5, -1.0, 2.0]), "count": torch.tensor(7)}


DELTAS = [{"w": torch.tensor([0.1, -0.2, 0.0])}, {"w": torch.tensor([-0.3, 0.1, 0.05])},
          {"w": torch.tensor([0.2, 0.2, -0.4])}]


def test_fedadam_with_bias_correction_is_torch_adam_on_the_pseudo_gradient():
    strat = FedAdam(server_lr=0.05, beta1=0.8, beta2=0.95, tau=1e-3, bias_correction=True)
    strat.initialize(_state(), [])
    w = torch.nn.Parameter(_state()["w"].clone())
    opt = torch.optim.Adam([w], lr=0.05, betas=(0.8, 0.95), eps=1e-3)
    state = _state()
    for rnd, d in enumerate(DELTAS, start=1):
        state = strat.server_update(rnd, state, d)
        w.grad = -d["w"].clone()
        opt.step()
        assert torch.allclose(state["w"], w.detach(), atol=1e-6)
    assert state["count"].item() == 7  # integer buffers are copied, not optimised


@pytest.mark.parametrize("cls", [FedAdam, FedYogi, FedAdagrad])
def test_first_server_step_matches_hand_computation(cls):
    lr, b1, b2, tau = 0.1, 0.9, 0.99, 1e-3
    strat = cls(server_lr=lr, beta1=b1, beta2=b2, tau=tau)
    strat.initialize(_state(), [])
    d = DELTAS[0]["w"].double()
    m = (1 - b1) * d
    # from v = 0: Adam and Yogi give (1 - b2) d^2 (Yogi's sign(0 - d^2) = -1), Adagrad d^2
    v = d * d if cls is FedAdagrad else (1 - b2) * d * d
    expected = _state()["w"] + (lr * m / (v.sqrt() + tau)).float()
    out = strat.server_update(1, _state(), DELTAS[0])
    assert torch.allclose(out["w"], expected, atol=1e-7)


def test_second_moments_differ_as_defined_on_the_second_step():
    b2 = 0.9
    d1, d2 = DELTAS[0]["w"].double(), DELTAS[1]["w"].double()
    v1 = {"FedAdam": (1 - b2) * d1 ** 2, "FedYogi": (1 - b2) * d1 ** 2, "FedAdagrad": d1 ** 2}
    expected_v2 = {
        "FedAdam": b2 * v1["FedAdam"] + (1 - b2) * d2 ** 2,
        "FedYogi": v1["FedYogi"] - (1 - b2) * d2 ** 2 * torch.sign(v1["FedYogi"] - d2 ** 2),
        "FedAdagrad": v1["FedAdagrad"] + d2 ** 2,
    }
    for cls in (FedAdam, FedYogi, FedAdagrad):
        strat = cls(beta2=b2)
        strat.initialize(_state(), [])
        s = strat.server_update(1, _state(), DELTAS[0])
        strat.server_update(2, s, DELTAS[1])
        assert torch.allclose(strat.v["w"], expected_v2[cls.name], atol=1e-12), cls.name
    # Yogi's v moves additively, so on this sequence it differs from Adam's
    assert not torch.allclose(expected_v2["FedYogi"], expected_v2["FedAdam"])


def _clients():
    return [fl.Client(i, blobs(30 + 10 * i, seed=i, shift=i - 1.0), blobs(20, seed=40 + i))
            for i in range(3)]


def test_fedavgm_with_zero_momentum_is_fedavg_exactly():
    cfg = fl.TrainConfig(epochs=1, batch_size=8, lr=0.2)
    m = fl.make_model("logreg", in_features=5, seed=0)
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    fl.run(a, _clients(), fl.FedAvg(cfg, server_lr=0.7), rounds=3, eval_every=0,
           progress=False)
    fl.run(b, _clients(), FedAvgM(cfg, server_lr=0.7, momentum=0.0), rounds=3, eval_every=0,
           progress=False)
    for k in a.state_dict():
        assert torch.equal(a.state_dict()[k], b.state_dict()[k])


@pytest.mark.parametrize("nesterov", [False, True])
def test_fedavgm_momentum_matches_hand_computation(nesterov):
    beta, lr = 0.9, 0.5
    strat = FedAvgM(server_lr=lr, momentum=beta, nesterov=nesterov)
    strat.initialize(_state(), [])
    s1 = strat.server_update(1, _state(), DELTAS[0])
    s2 = strat.server_update(2, s1, DELTAS[1])
    d1, d2 = DELTAS[0]["w"], DELTAS[1]["w"]
    v1, v2 = d1, beta * d1 + d2
    steps = (d1 + beta * v1, d2 + beta * v2) if nesterov else (v1, v2)
    assert torch.allclose(s2["w"], _state()["w"] + lr * steps[0] + lr * steps[1], atol=1e-6)


def test_server_optimisers_learn_and_restart_cleanly():
    cfg = fl.TrainConfig(epochs=1, batch_size=8, lr=0.1)
    for strat in (FedAdam(cfg, server_lr=0.05), FedYogi(cfg, server_lr=0.05),
                  FedAdagrad(cfg, server_lr=0.05), FedAvgM(cfg, momentum=0.5)):
        runs = []
        for _ in range(2):  # the same strategy object, run twice: initialize resets its state
            m = fl.make_model("logreg", in_features=5, seed=0)
            h = fl.run(m, _clients(), strat, rounds=6, progress=False)
            runs.append(h)
        assert runs[0].final("accuracy") == runs[1].final("accuracy")
        assert runs[0].final("loss") < runs[0].metric("loss").iloc[0], strat.name


def test_invalid_hyperparameters_are_rejected():
    with pytest.raises(ValueError, match="tau"):
        FedAdam(tau=0.0)
    with pytest.raises(ValueError, match="betas"):
        FedYogi(beta2=1.0)
    with pytest.raises(ValueError, match="momentum"):
        FedAvgM(momentum=1.0)
