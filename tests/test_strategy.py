"""Reference checks: the federated algorithms against the centralised maths they claim."""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import ConcatDataset, TensorDataset

import fedlearn as fl

from .helpers import blobs


def _pooled(clients):
    xs = torch.cat([c.train.tensors[0] for c in clients])
    ys = torch.cat([c.train.tensors[1] for c in clients])
    return xs, ys


def _gd_step(model, x, y, lr):
    m = copy.deepcopy(model)
    m.zero_grad()
    nn.functional.cross_entropy(m(x), y).backward()
    with torch.no_grad():
        for p in m.parameters():
            p -= lr * p.grad
    return m.state_dict()


def _skewed_clients():
    # unequal sizes and shifted distributions: the case where weighting matters
    return [fl.Client(i, blobs(n, seed=i, shift=s)) for i, (n, s) in
            enumerate([(300, 0.0), (40, 1.5), (7, -2.0)])]


def test_fedsgd_one_client_equals_one_gd_step():
    c = [fl.Client(0, blobs(64))]
    m = fl.make_model("mlp", in_features=5, hidden=(6,), seed=3)
    ref = _gd_step(m, *_pooled(c), lr=0.3)
    fl.run(m, c, fl.FedSGD(lr=0.3), rounds=1, eval_every=0, progress=False)
    for k, v in ref.items():
        assert torch.allclose(m.state_dict()[k], v, atol=1e-6), k


def test_fedsgd_many_clients_equals_gd_on_pooled_data_for_several_rounds():
    clients = _skewed_clients()
    m = fl.make_model("logreg", in_features=5, seed=0)
    central = copy.deepcopy(m)
    x, y = _pooled(clients)
    for _ in range(5):
        central.load_state_dict(_gd_step(central, x, y, lr=0.5))
    fl.run(m, clients, fl.FedSGD(lr=0.5), rounds=5, eval_every=0, progress=False)
    for k, v in central.state_dict().items():
        assert torch.allclose(m.state_dict()[k], v, atol=1e-5), k


def test_unweighted_fedsgd_follows_the_unweighted_objective_and_differs():
    # derived: unweighted averaging takes a GD step on (1/K) sum_k F_k, not on the pooled risk
    clients = _skewed_clients()
    m0 = fl.make_model("logreg", in_features=5, seed=0)
    m_w, m_u = copy.deepcopy(m0), copy.deepcopy(m0)
    fl.run(m_w, clients, fl.FedSGD(lr=0.5), rounds=1, eval_every=0, progress=False)
    fl.run(m_u, clients, fl.FedSGD(lr=0.5, weighted=False), rounds=1, eval_every=0,
           progress=False)
    ref = copy.deepcopy(m0)
    ref.zero_grad()
    loss = sum(nn.functional.cross_entropy(ref(c.train.tensors[0]), c.train.tensors[1])
               for c in clients) / len(clients)
    loss.backward()
    for name, p in ref.named_parameters():
        expected = m0.state_dict()[name] - 0.5 * p.grad
        assert torch.allclose(m_u.state_dict()[name], expected, atol=1e-6)
    diff = (m_w.state_dict()["linear.weight"] - m_u.state_dict()["linear.weight"]).abs().max()
    assert diff > 1e-3


def test_fedavg_with_identical_clients_equals_single_client():
    data = blobs(80)
    cfg = fl.TrainConfig(epochs=4, batch_size=None, lr=0.2, momentum=0.5)
    one = fl.make_model("mlp", in_features=5, hidden=(8,), seed=0)
    many = copy.deepcopy(one)
    fl.run(one, [fl.Client(0, data)], fl.FedAvg(cfg), rounds=3, eval_every=0, progress=False)
    fl.run(many, [fl.Client(i, data) for i in range(4)], fl.FedAvg(cfg), rounds=3,
           eval_every=0, progress=False)
    for k, v in one.state_dict().items():
        assert torch.allclose(many.state_dict()[k], v, atol=1e-6), k


def test_fedavg_equals_weighted_average_of_local_models():
    clients = _skewed_clients()
    cfg = fl.TrainConfig(epochs=2, batch_size=5, lr=0.1)
    m = fl.make_model("logreg", in_features=5, seed=0)
    g = copy.deepcopy(m.state_dict())
    h = fl.run(m, clients, fl.FedAvg(cfg), rounds=1, eval_every=0, progress=False, seed=9)
    locals_ = []
    for c in clients:
        w = copy.deepcopy(m)
        u = c.fit(w, g, cfg, seed=fl.utils.derive_seed(9, 1, c.cid))
        locals_.append((c.num_train, {k: g[k] + u.delta[k] for k in u.delta}))
    n = sum(k for k, _ in locals_)
    for key in g:
        avg = sum(k * s[key] for k, s in locals_) / n
        assert torch.allclose(m.state_dict()[key], avg, atol=1e-6)
    assert h.rounds[0]["num_examples"] == 347


def test_server_lr_scales_the_step_and_validation():
    clients = _skewed_clients()
    m0 = fl.make_model("logreg", in_features=5, seed=0)
    a, b = copy.deepcopy(m0), copy.deepcopy(m0)
    fl.run(a, clients, fl.FedSGD(lr=0.2), rounds=1, eval_every=0, progress=False)
    fl.run(b, clients, fl.FedAvg(fl.TrainConfig(steps=1, batch_size=None, lr=0.1),
                                 server_lr=2.0), rounds=1, eval_every=0, progress=False)
    for k in a.state_dict():
        assert torch.allclose(a.state_dict()[k], b.state_dict()[k], atol=1e-6)
    with pytest.raises(ValueError, match="server_lr"):
        fl.FedAvg(server_lr=0)


def test_batchnorm_running_stats_are_averaged_and_counters_kept():
    x = torch.rand(40, 1, 28, 28)
    y = torch.randint(0, 2, (40,))
    clients = [fl.Client(0, TensorDataset(x[:20], y[:20])),
               fl.Client(1, TensorDataset(x[20:] * 3, y[20:]))]
    m = fl.make_model("cnn", norm="batch", width=4, seed=0)
    fl.run(m, clients, fl.FedAvg(fl.TrainConfig(steps=1, batch_size=None)), rounds=1,
           eval_every=0, progress=False)
    sd = m.state_dict()
    rm = sd["features.1.running_mean"]
    assert rm.abs().sum() > 0
    assert sd["features.1.num_batches_tracked"].item() == 0  # integer counter not averaged
    _ = ConcatDataset  # keep import meaningful for readers: pooled data never leaves clients


def test_class_weighted_fedsgd_equals_weighted_gd_on_pooled_data():
    # a hospital with one class only must still feel the class weights (torch's default
    # normalisation by the sum of weights would cancel them there)
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(0))
    clients = [fl.Client(0, TensorDataset(x[:30], (x[:30, 0] > 0).long())),
               fl.Client(1, TensorDataset(x[30:], torch.ones(20, dtype=torch.long)))]
    cw = (3.0, 0.5)
    m = fl.make_model("logreg", in_features=5, seed=0)
    ref = copy.deepcopy(m)
    xs, ys = _pooled(clients)
    ref.zero_grad()
    per = nn.functional.cross_entropy(ref(xs), ys, reduction="none")
    (per * torch.tensor(cw)[ys]).mean().backward()
    expected = {k: p.detach() - 0.4 * p.grad for k, p in ref.named_parameters()}
    fl.run(m, clients, fl.FedSGD(lr=0.4, class_weights=cw), rounds=1, eval_every=0,
           progress=False)
    for k, v in expected.items():
        assert torch.allclose(m.state_dict()[k], v, atol=1e-6), k


def _final(strategy, clients, model_name="mlp", **kw):
    model = fl.make_model(model_name, seed=0, **kw)
    hist = fl.run(model, clients, strategy, rounds=3, seed=0, eval_every=1, progress=False)
    return model.state_dict(), hist


def test_a_bare_wrapper_changes_nothing_even_around_scaffold():
    # SCAFFOLD adds a summed vector (its control variates), a server step and download_nbytes:
    # a wrapper must forward all of them or the control variates silently break
    from fedlearn.algorithms import Scaffold

    cfg = fl.TrainConfig(epochs=1, batch_size=16, lr=0.1)
    a, ha = _final(Scaffold(cfg), _skewed_clients(), in_features=5, hidden=(6,))
    wrapped = fl.StrategyWrapper(Scaffold(cfg))
    b, hb = _final(wrapped, _skewed_clients(), in_features=5, hidden=(6,))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(wrapped.inner.c_global[k], v) for k, v in wrapped.c_global.items())
    assert ha.rounds[-1]["bytes_up"] == hb.rounds[-1]["bytes_up"]
    assert ha.rounds[-1]["bytes_down"] == hb.rounds[-1]["bytes_down"]


def test_budget_guard_keeps_fedbn_personal_layers():
    from fedlearn.algorithms import FedBN
    from fedlearn.privacy import BudgetGuard, PrivacyBudget

    class Free:  # a ledger for a run that spends nothing (no DP): the guard never stops it
        def epsilon_after(self, extra_rounds, delta=None):
            return 0.0

    x = torch.rand(90, 1, 28, 28)
    sites = [fl.Client(i, TensorDataset(x[30 * i:30 * (i + 1)] * (1 + i),
                                        (x[30 * i:30 * (i + 1)].mean((1, 2, 3)) > 0.5).long()))
             for i in range(3)]
    cfg = fl.TrainConfig(epochs=1, batch_size=10, lr=0.05)
    kw = {"norm": "batch", "width": 4, "hidden": 8}
    a, ha = _final(FedBN(cfg), sites, "cnn", **kw)
    guard = BudgetGuard(FedBN(cfg), PrivacyBudget(1.0, 1e-5), ledger=Free())
    b, hb = _final(guard, sites, "cnn", **kw)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert guard.has_personal_state() and guard.personal_keys() == guard.inner.personal_keys()
    assert ha.rounds[-1]["bytes_up"] == hb.rounds[-1]["bytes_up"]  # BN layers stay home
    assert ha.to_dataframe().equals(hb.to_dataframe())  # evaluated with personal BN layers
