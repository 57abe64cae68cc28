import copy

import torch
from torch import nn
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.algorithms import FedBN, batchnorm_keys

from .helpers import blobs


class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 8)
        self.bn = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def _skewed_clients():
    """Same task, but each hospital's 'scanner' scales and offsets the features.

    The offset points along the true weight vector, so one global linear boundary cannot fit
    every hospital, whereas a BN layer with local statistics removes the shift.
    """
    direction = torch.linspace(-1.0, 1.0, 5)  # blobs' label direction
    clients = []
    for i, (scale, offset) in enumerate([(1.0, 0.0), (2.0, 3.0), (0.5, -3.0)]):
        tr, te = blobs(80, seed=i), blobs(40, seed=100 + i)
        shift = offset * direction
        clients.append(fl.Client(i, TensorDataset(tr.tensors[0] * scale + shift, tr.tensors[1]),
                                 TensorDataset(te.tensors[0] * scale + shift, te.tensors[1]),
                                 name=f"H{i}"))
    return clients


def _model(seed=0):
    torch.manual_seed(seed)
    return BNNet()


def test_batchnorm_keys_cover_parameters_and_running_statistics():
    assert batchnorm_keys(_model()) == ["bn.weight", "bn.bias", "bn.running_mean",
                                        "bn.running_var", "bn.num_batches_tracked"]
    assert batchnorm_keys(fl.make_model("logreg", in_features=3)) == []


def test_without_batchnorm_fedbn_is_fedavg_exactly():
    clients = [fl.Client(i, blobs(30, seed=i), blobs(20, seed=9 + i)) for i in range(3)]
    cfg = fl.TrainConfig(epochs=1, batch_size=8, lr=0.2)
    m = fl.make_model("mlp", in_features=5, hidden=(6,), seed=0)
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    ha = fl.run(a, clients, fl.FedAvg(cfg), rounds=2, progress=False)
    hb = fl.run(b, clients, FedBN(cfg), rounds=2, progress=False)
    for k in a.state_dict():
        assert torch.equal(a.state_dict()[k], b.state_dict()[k])
    assert ha.to_dataframe().equals(hb.to_dataframe())


def test_bn_layers_stay_local_and_everything_else_is_averaged():
    clients = _skewed_clients()
    cfg = fl.TrainConfig(epochs=1, batch_size=16, lr=0.1)
    init = _model()
    init_state = copy.deepcopy(init.state_dict())
    strategy = FedBN(cfg)
    m = copy.deepcopy(init)
    h = fl.run(m, clients, strategy, rounds=3, progress=False)
    bn = set(batchnorm_keys(m))
    final = m.state_dict()
    for k in bn:  # the server never saw a BN update
        assert torch.equal(final[k], init_state[k]), k
    assert not torch.equal(final["fc1.weight"], init_state["fc1.weight"])
    # each hospital's running mean tracks its own (shifted) activations
    means = [strategy.local_bn[c.cid]["bn.running_mean"] for c in clients]
    assert not torch.allclose(means[0], means[1], atol=0.1)
    assert strategy.local_bn[0]["bn.num_batches_tracked"].item() == 3 * 5  # 3 rounds x 5 batches
    # uploads leave the BN layer at home
    shared = sum(v.numel() for k, v in final.items() if k not in bn and v.is_floating_point())
    assert (h.rounds_frame()["bytes_up"] == 3 * 4 * shared).all()


def test_last_round_shared_layers_equal_manual_fedavg_of_non_bn_deltas():
    clients = _skewed_clients()
    cfg = fl.TrainConfig(epochs=1, batch_size=16, lr=0.1)
    strategy = FedBN(cfg)
    m = _model()
    fl.run(m, clients, strategy, rounds=1, eval_every=0, progress=False)
    start = _model().state_dict()
    ups = [fl.local_train(_model(), start, c.train, cfg, seed=fl.utils.derive_seed(0, 1, c.cid),
                          cid=c.cid) for c in clients]
    mean = fl.fedavg_delta(ups)
    for k in ("fc1.weight", "fc2.bias"):
        assert torch.allclose(m.state_dict()[k], start[k] + mean[k], atol=1e-6)


def test_evaluation_uses_each_hospitals_personalised_model():
    clients = _skewed_clients()
    cfg = fl.TrainConfig(epochs=2, batch_size=16, lr=0.1)
    strategy = FedBN(cfg)
    m = _model()
    h = fl.run(m, clients, strategy, rounds=4, progress=False)
    for c in clients:
        mm = _model()
        mm.load_state_dict(strategy.personal_state(c.cid, h.final_state))
        acc = fl.evaluate(mm, c.test)["accuracy"]
        assert h.per_client("accuracy")[c.name] == acc
    assert torch.equal(m.state_dict()["bn.running_mean"], h.final_state["bn.running_mean"])


def test_fedbn_beats_fedavg_under_feature_skew():
    clients = _skewed_clients()
    cfg = fl.TrainConfig(epochs=1, batch_size=16, lr=0.05)
    acc = {}
    for strategy in (fl.FedAvg(cfg), FedBN(cfg)):
        h = fl.run(_model(), clients, strategy, rounds=15, progress=False)
        acc[strategy.name] = h.final("accuracy")
    assert acc["FedBN"] > 0.85
    assert acc["FedBN"] > acc["FedAvg"] + 0.15


def test_recalibrated_statistics_are_those_of_the_hospitals_own_inputs():
    clients = _skewed_clients()
    strategy = FedBN(fl.TrainConfig(epochs=1, batch_size=16, lr=0.1))
    h = fl.run(_model(), clients, strategy, rounds=2, eval_every=0, progress=False)
    for c in clients:
        state = strategy.personal_state(c.cid, h.final_state)
        mm = _model()
        mm.load_state_dict(state)
        with torch.no_grad():
            a = mm.fc1(c.train.tensors[0])  # what the BN layer sees on this hospital's data
        assert torch.allclose(state["bn.running_mean"], a.mean(0), atol=1e-5)
        assert torch.allclose(state["bn.running_var"], a.var(0), rtol=1e-4)
        # the BN weights themselves stay the hospital's own, and nothing is stored back
        assert torch.equal(state["bn.weight"], strategy.local_bn[c.cid]["bn.weight"])
        assert not torch.allclose(strategy.local_bn[c.cid]["bn.running_mean"], a.mean(0))
    raw = FedBN(fl.TrainConfig(epochs=1, batch_size=16, lr=0.1), recalibrate=False)
    h2 = fl.run(_model(), clients, raw, rounds=2, eval_every=0, progress=False)
    assert torch.equal(raw.personal_state(0, h2.final_state)["bn.running_mean"],
                       raw.local_bn[0]["bn.running_mean"])
