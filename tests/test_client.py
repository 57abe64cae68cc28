import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.client import LocalHook
from fedlearn.utils import clone_state, torch_generator

from .helpers import blobs


def _reference_sgd(model, data, epochs, batch_size, lr, seed, momentum=0.0):
    """Plain torch.optim.SGD with the same batch order as local_train (the reference)."""
    x, y = data.tensors
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    g = torch_generator(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_local_train_equals_torch_sgd_reference(momentum):
    data = blobs(103)
    model = fl.make_model("mlp", in_features=5, hidden=(8,), seed=1)
    g0 = clone_state(model.state_dict())
    cfg = fl.TrainConfig(epochs=3, batch_size=10, lr=0.1, momentum=momentum)
    upd = fl.local_train(copy.deepcopy(model), g0, data, cfg, seed=42)
    ref = _reference_sgd(copy.deepcopy(model), data, 3, 10, 0.1, 42, momentum)
    for k, v in ref.state_dict().items():
        assert torch.allclose(g0[k] + upd.delta[k], v, atol=1e-6), k
    assert upd.num_examples == 103
    assert upd.metrics["num_steps"] == 3 * 11


def test_steps_override_epochs_and_cycle_through_data():
    data = blobs(20)
    m = fl.make_model("logreg", in_features=5, seed=0)
    upd = fl.local_train(m, clone_state(m.state_dict()), data,
                         fl.TrainConfig(steps=7, batch_size=6), seed=0)
    assert upd.metrics["num_steps"] == 7  # 4 batches per epoch, so it wrapped around
    zero = fl.local_train(m, clone_state(m.state_dict()), data,
                          fl.TrainConfig(steps=0), seed=0)
    assert all(torch.count_nonzero(v) == 0 for v in zero.delta.values())


def test_same_seed_same_update_different_seed_different():
    data = blobs(50)
    m = fl.make_model("logreg", in_features=5, seed=0)
    s = clone_state(m.state_dict())
    cfg = fl.TrainConfig(epochs=1, batch_size=8, lr=0.5)
    a = fl.local_train(m, s, data, cfg, seed=1).delta["linear.weight"]
    b = fl.local_train(m, s, data, cfg, seed=1).delta["linear.weight"]
    c = fl.local_train(m, s, data, cfg, seed=2).delta["linear.weight"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_hooks_are_called_and_extra_loss_changes_the_update():
    calls = []

    class Pull(LocalHook):
        def on_start(self, model, global_state):
            calls.append("start")

        def extra_loss(self, model):
            return 10.0 * (model.linear.bias ** 2).sum()

        def after_backward(self, model):
            calls.append("grad")

        def on_end(self, model, num_steps):
            calls.append(("end", num_steps))

    data = blobs(30)
    m = fl.make_model("logreg", in_features=5, seed=0)
    s = clone_state(m.state_dict())
    cfg = fl.TrainConfig(steps=3, batch_size=10, lr=0.1)
    plain = fl.local_train(m, s, data, cfg, seed=0)
    hooked = fl.local_train(m, s, data, cfg, seed=0, hooks=[Pull()])
    assert calls == ["start", "grad", "grad", "grad", ("end", 3)]
    assert not torch.allclose(plain.delta["linear.bias"], hooked.delta["linear.bias"])


def test_class_weights_and_adam_and_config_validation():
    data = blobs(40)
    m = fl.make_model("logreg", in_features=5, seed=0)
    s = clone_state(m.state_dict())
    a = fl.local_train(m, s, data, fl.TrainConfig(steps=2, class_weights=(1.0, 5.0)), seed=0)
    b = fl.local_train(m, s, data, fl.TrainConfig(steps=2), seed=0)
    assert not torch.allclose(a.delta["linear.weight"], b.delta["linear.weight"])
    fl.local_train(m, s, data, fl.TrainConfig(steps=2, optimizer="adam", lr=1e-3), seed=0)
    for bad in [dict(epochs=0), dict(batch_size=0), dict(lr=0.0), dict(lr=-1.0),
                dict(optimizer="rmsprop"), dict(steps=-1)]:
        with pytest.raises(ValueError):
            fl.TrainConfig(**bad)


def test_client_constructors():
    data = blobs(30)
    test = blobs(10, seed=1)
    parts = [list(range(0, 10)), list(range(10, 30))]
    cs = fl.clients_from_partition(data, parts, test=test, test_parts=[[0, 1, 2], [3, 4]])
    assert [c.num_train for c in cs] == [10, 20]
    assert [len(c.test) for c in cs] == [3, 2]
    assert torch.equal(cs[1].train.tensors[0], data.tensors[0][10:30])
    with pytest.raises(ValueError, match="no training examples"):
        fl.Client(0, TensorDataset(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)))


def test_predict_proba_rows_sum_to_one_and_restores_mode():
    m = fl.make_model("cnn", width=4, norm="batch", seed=0)
    m.train()
    p = fl.predict_proba(m, torch.rand(9, 1, 28, 28), batch_size=4)
    assert p.shape == (9, 2) and torch.allclose(p.sum(1), torch.ones(9))
    assert m.training


def test_passing_the_models_own_state_dict_still_gives_the_true_delta():
    data = blobs(40)
    m = fl.make_model("logreg", in_features=5, seed=0)
    before = clone_state(m.state_dict())
    cfg = fl.TrainConfig(steps=3, batch_size=8, lr=0.5)
    aliased = fl.local_train(m, m.state_dict(), data, cfg, seed=0)
    m.load_state_dict(before)
    copied = fl.local_train(m, clone_state(before), data, cfg, seed=0)
    assert aliased.norm > 0
    for k in copied.delta:
        assert torch.equal(aliased.delta[k], copied.delta[k])
