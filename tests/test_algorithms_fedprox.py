import copy

import pytest
import torch

import fedlearn as fl
from fedlearn.algorithms import FedProx, ProximalHook

from .helpers import blobs


def _clients():
    return [fl.Client(i, blobs(30 + 15 * i, seed=i, shift=1.5 * (i - 1)), blobs(20, seed=50 + i))
            for i in range(3)]


def test_mu_zero_is_fedavg_exactly():
    cfg = fl.TrainConfig(epochs=2, batch_size=8, lr=0.3)
    m = fl.make_model("mlp", in_features=5, hidden=(8,), seed=0)
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    ha = fl.run(a, _clients(), fl.FedAvg(cfg), rounds=3, seed=4, progress=False)
    hb = fl.run(b, _clients(), FedProx(cfg, mu=0.0), rounds=3, seed=4, progress=False)
    for k in a.state_dict():
        assert torch.equal(a.state_dict()[k], b.state_dict()[k]), k
    assert ha.rounds_frame()["train_loss"].tolist() == hb.rounds_frame()["train_loss"].tolist()


def test_proximal_gradient_is_mu_times_distance_to_global():
    model = fl.make_model("logreg", in_features=4, seed=0)
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    hook = ProximalHook(mu=0.7)
    hook.on_start(model, global_state)
    loss = hook.extra_loss(model)
    loss.backward()
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, 0.7 * (p.detach() - global_state[name]), atol=1e-6)
    expected = 0.35 * sum(((p.detach() - global_state[n]) ** 2).sum()
                          for n, p in model.named_parameters())
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)


def test_larger_mu_keeps_local_models_closer_to_global():
    client = _clients()[0]
    m = fl.make_model("logreg", in_features=5, seed=0)
    g = {k: v.clone() for k, v in m.state_dict().items()}
    cfg = fl.TrainConfig(steps=60, batch_size=8, lr=0.5)
    norms = [fl.local_train(copy.deepcopy(m), g, client.train, cfg, seed=1,
                            hooks=(ProximalHook(mu),)).norm for mu in (0.0, 0.3, 1.5)]
    assert norms[0] > norms[1] > norms[2] > 0


def test_negative_mu_is_rejected():
    with pytest.raises(ValueError, match="mu"):
        FedProx(mu=-0.1)
    with pytest.raises(ValueError, match="mu"):
        ProximalHook(-1.0)
