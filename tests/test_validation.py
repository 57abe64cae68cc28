"""Tests for fedlearn.validation: every bad configuration of issue 14 is refused before training,
with a typed error whose message names the parameter (or hospital), the value and the fix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.errors import ConfigError
from fedlearn.system import planned_steps
from fedlearn.validation import check_train_config, model_num_outputs

from .helpers import blobs

# ----------------------------------------------------------------------------- TrainConfig

_VALID = {
    "epochs": st.integers(1, 2),
    "steps": st.none() | st.integers(0, 3),
    "batch_size": st.none() | st.integers(1, 8),
    "lr": st.floats(1e-4, 1.0),
    "weight_decay": st.floats(0.0, 1.0),
    "class_weights": st.none() | st.tuples(st.floats(0.0, 10.0), st.floats(0.1, 10.0)),
    "max_grad_norm": st.none() | st.floats(1e-3, 10.0),
}

# one invalid value per field, with a phrase its message must contain
_INVALID = {
    "epochs": st.sampled_from([0, -1, 1.5, "2", True]),
    "steps": st.sampled_from([-1, 2.0, "3"]),
    "batch_size": st.sampled_from([0, -4, 2.5, "32"]),
    "lr": st.sampled_from([0.0, -0.1, math.nan, math.inf, "0.1", None]),
    "momentum": st.sampled_from([-0.1, 1.0, 1.5, math.nan]),
    "weight_decay": st.sampled_from([-1e-4, math.inf, math.nan]),
    "optimizer": st.sampled_from(["rmsprop", "SGD", None]),
    "class_weights": st.sampled_from([(), (1.0, -1.0), (1.0, math.nan), (0.0, 0.0),
                                      (1.0, math.inf), "1,2", 3.0]),
    "max_grad_norm": st.sampled_from([0.0, -1.0, math.nan, math.inf, "1"]),
}


@st.composite
def valid_configs(draw: st.DrawFn) -> fl.TrainConfig:
    kw = {k: draw(s) for k, s in _VALID.items()}
    kw["optimizer"] = draw(st.sampled_from(["sgd", "adam"]))
    kw["momentum"] = draw(st.floats(0.0, 0.99)) if kw["optimizer"] == "sgd" else 0.0
    return fl.TrainConfig(**kw)


_DATA = blobs(7, d=3, seed=1)  # both classes present; n = 7 leaves short last batches


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=valid_configs())
def test_any_valid_train_config_trains(cfg: fl.TrainConfig):
    model = fl.make_model("logreg", in_features=3, seed=0)
    u = fl.local_train(model, model.state_dict(), _DATA, cfg, seed=0)
    assert u.metrics["num_steps"] == planned_steps(cfg, len(_DATA))
    assert all(torch.isfinite(v).all() for v in u.delta.values())
    if u.metrics["num_steps"]:
        assert math.isfinite(u.metrics["train_loss"])
    else:
        assert math.isnan(u.metrics["train_loss"])


@settings(max_examples=60, deadline=None)
@given(data=st.data(), field=st.sampled_from(sorted(_INVALID)))
def test_any_invalid_train_config_field_raises_naming_it(data: st.DataObject, field: str):
    bad = data.draw(_INVALID[field])
    with pytest.raises(ValueError, match=f"TrainConfig.{field}") as err:
        fl.TrainConfig(**{field: bad})
    assert err.type is ConfigError


def test_max_grad_norm_negative_or_zero_is_refused():
    with pytest.raises(ConfigError, match="gradient ascent") as err:
        fl.TrainConfig(max_grad_norm=-1.0)
    assert "got -1.0" in str(err.value) and "max_grad_norm=1.0" in str(err.value)
    with pytest.raises(ConfigError, match=r"max_grad_norm must be a finite number > 0.*got 0.0"):
        fl.TrainConfig(max_grad_norm=0.0)


def test_class_weights_negative_nonfinite_empty_are_refused():
    with pytest.raises(ConfigError,
                       match=r"class_weights=\(1, -1\) has invalid weight\(s\) \[-1\]"):
        fl.TrainConfig(class_weights=(1, -1))
    with pytest.raises(ConfigError, match="NaN/inf poisons the loss"):
        fl.TrainConfig(class_weights=(1.0, float("inf")))
    with pytest.raises(ConfigError, match="class_weights is empty"):
        fl.TrainConfig(class_weights=())


def test_adam_with_momentum_is_refused():
    with pytest.raises(ConfigError, match="no effect with optimizer='adam'"):
        fl.TrainConfig(optimizer="adam", momentum=0.9)


def test_config_values_are_normalised_to_plain_python():
    cfg = fl.TrainConfig(epochs=np.int64(2), batch_size=np.int32(4), lr=np.float32(0.5),
                         class_weights=np.array([1, 3]))
    assert type(cfg.epochs) is int and type(cfg.batch_size) is int and type(cfg.lr) is float
    assert cfg.class_weights == (1.0, 3.0) and hash(cfg)
    assert check_train_config(cfg)["class_weights"] == (1.0, 3.0)


def test_steps_zero_reports_nan_train_loss():
    model = fl.make_model("logreg", in_features=5, seed=0)
    u = fl.local_train(model, model.state_dict(), blobs(10), fl.TrainConfig(steps=0), seed=0)
    assert math.isnan(u.metrics["train_loss"]) and u.metrics["num_steps"] == 0.0
    hist = fl.run(model, [fl.Client(0, blobs(10))], fl.FedAvg(fl.TrainConfig(steps=0)),
                  rounds=1, eval_every=0, progress=False)
    assert math.isnan(hist.rounds[0]["train_loss"])


# ----------------------------------------------------------------------------- Client


def _x(n: int = 20, d: int = 5) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("labels, phrase", [
    (torch.full((20,), -100), r"20 training label\(s\) are -100 .*ignore_index"),
    (torch.tensor([0, 1] * 9 + [-100, 1]),
     r"1 training label\(s\) are -100 \(first at index 18\)"),
    (torch.tensor([0, 1] * 10, dtype=torch.int32),
     r"dtype torch.int32.*convert them with y.long\(\)"),
    (torch.tensor([0.0, 1.0] * 10), r"dtype torch.float32.*y.long\(\)"),
    (torch.tensor([0, 1] * 10)[:, None], r"1-D tensor .*got shape \(20, 1\).*y.view\(-1\)"),
    (torch.tensor([0, -1] * 10), r"class indices >= 0, got -1"),
])
def test_bad_training_labels_are_refused_at_construction(labels: torch.Tensor, phrase: str):
    with pytest.raises(ConfigError, match=phrase) as err:
        fl.Client(3, TensorDataset(_x(), labels), name="City hospital")
    assert "hospital 'City hospital' (cid 3)" in str(err.value)


def test_input_label_length_mismatch_and_empty_set_are_refused():
    ds = TensorDataset(_x(), torch.zeros(20, dtype=torch.long))
    ds.tensors = (ds.tensors[0], ds.tensors[1][:10])  # TensorDataset checks only at creation
    with pytest.raises(ConfigError, match=r"\(20, 5\) inputs but \(10,\) labels"):
        fl.Client(0, ds)
    with pytest.raises(ConfigError, match="no training examples"):
        fl.Client(0, TensorDataset(_x(0), torch.zeros(0, dtype=torch.long)))


def test_custom_loss_accepts_its_own_targets():
    """A custom loss (survival, multi-label) defines its targets: only shapes are checked."""
    c = fl.Client(0, TensorDataset(_x(), torch.rand(20, 2)), loss_fn=nn.functional.mse_loss)
    assert c.num_train == 20


def test_test_set_with_other_features_is_refused_naming_the_hospital():
    train = TensorDataset(_x(), torch.zeros(20, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"'Rural clinic'.*test inputs have shape \(7,\).*"
                                          r"training inputs \(5,\)"):
        fl.Client(0, train, test=TensorDataset(_x(4, 7), torch.zeros(4, dtype=torch.long)),
                  name="Rural clinic")
    # and at the start of the run, if the test set is swapped after construction
    c = fl.Client(0, train, name="Rural clinic")
    c.test = TensorDataset(_x(4, 7), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ConfigError, match="Rural clinic.*test inputs have shape"):
        fl.run(fl.make_model("logreg", in_features=5), [c], fl.FedAvg(), rounds=1,
               progress=False)


# ----------------------------------------------------------------------------- fl.run start


class _Spy(fl.FedAvg):
    """FedAvg that counts aggregations, to prove a refused run trained nothing."""

    def __init__(self, config: fl.TrainConfig) -> None:
        super().__init__(config)
        self.calls = 0

    def aggregate(self, rnd, global_state, updates):  # type: ignore[override]
        self.calls += 1
        return super().aggregate(rnd, global_state, updates)


def _refused(model: nn.Module, clients: list[fl.Client], cfg: fl.TrainConfig, phrase: str,
             **kw: object) -> str:
    spy = _Spy(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match=phrase) as err:
        fl.run(model, clients, spy, rounds=2, progress=False, **kw)
    assert spy.calls == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return str(err.value)


def test_label_out_of_range_for_the_model_is_refused_at_run_start():
    y = torch.tensor([0, 5] * 10)
    msg = _refused(fl.make_model("logreg", in_features=5), [fl.Client(0, TensorDataset(_x(), y))],
                   fl.TrainConfig(steps=1), r"training label 5 is out of range for a model with "
                   r"2 outputs")
    assert "num_classes=6" in msg
    test = TensorDataset(_x(4), torch.tensor([0, 1, 2, 1]))
    _refused(fl.make_model("logreg", in_features=5),
             [fl.Client(0, TensorDataset(_x(), torch.tensor([0, 1] * 10)), test=test)],
             fl.TrainConfig(steps=1), "test label 2 is out of range")


def test_class_weights_of_the_wrong_length_are_refused_at_run_start():
    client = fl.Client(0, TensorDataset(_x(), torch.tensor([0, 1] * 10)))
    _refused(fl.make_model("logreg", in_features=5), [client],
             fl.TrainConfig(steps=1, class_weights=(1, 2, 3)),
             r"class_weights=\(1.0, 2.0, 3.0\) has 3 weight\(s\) but the model has 2 outputs")
    # local_train on its own (no fl.run) refuses too, at the first batch
    model = fl.make_model("logreg", in_features=5)
    with pytest.raises(ConfigError, match="3 weight"):
        fl.local_train(model, model.state_dict(), client.train,
                       fl.TrainConfig(steps=1, class_weights=(1, 2, 3)), seed=0)


def test_training_inputs_the_model_cannot_read_are_refused():
    client = fl.Client(0, TensorDataset(_x(20, 7), torch.tensor([0, 1] * 10)), name="A")
    _refused(fl.make_model("logreg", in_features=5), [client], fl.TrainConfig(steps=1),
             r"'A'.*cannot process its training inputs of shape \(7,\).*mat1 and mat2")


class _BNMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_batchnorm_batch_of_one_is_refused_naming_hospital_n_and_b():
    big = fl.Client(0, TensorDataset(_x(16), torch.tensor([0, 1] * 8)), name="University")
    small = fl.Client(1, TensorDataset(_x(17), torch.tensor([0, 1] * 8 + [0])), name="Rural")
    msg = _refused(_BNMLP(), [big, small], fl.TrainConfig(epochs=1, batch_size=8),
                   r"'Rural' \(cid 1\): its 17 training examples leave a last minibatch of "
                   r"exactly one with batch_size=8 \(17 % 8 = 1\)")
    assert "BatchNorm layer 'net.1'" in msg and "use batch_size=9" in msg
    _refused(_BNMLP(), [big], fl.TrainConfig(steps=2, batch_size=1),
             "batch_size=1 gives minibatches of one example")
    one = fl.Client(2, TensorDataset(_x(1), torch.tensor([1])), name="Tiny")
    _refused(_BNMLP(), [big, one], fl.TrainConfig(steps=1, batch_size=None),
             "'Tiny' .*it has a single training example.*drop or merge this hospital")


def test_batchnorm_checks_only_what_torch_would_refuse():
    small = fl.Client(1, TensorDataset(_x(17), torch.tensor([0, 1] * 8 + [0])))
    # steps= that stop before the short last batch: no batch of one is ever run
    fl.run(_BNMLP(), [small], fl.FedAvg(fl.TrainConfig(steps=2, batch_size=8)), rounds=1,
           eval_every=0, progress=False)
    # BatchNorm2d over 28x28 images normalises one image over its pixels: torch allows it
    images = TensorDataset(torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 0]))
    cnn = fl.make_model("cnn", norm="batch", width=4, hidden=8, seed=0)
    fl.run(cnn, [fl.Client(0, images)], fl.FedAvg(fl.TrainConfig(epochs=1, batch_size=2)),
           rounds=1, eval_every=0, progress=False)


@pytest.mark.parametrize("kw, phrase", [
    ({"eval_every": -1}, r"eval_every must be an integer >= 0, got -1; use eval_every=0"),
    ({"eval_every": 1.5}, "eval_every must be an integer"),
    ({"fraction": 0.0}, r"fraction must be in \(0, 1\]"),
    ({"min_clients": 0}, "min_clients must be an integer >= 1"),
])
def test_bad_run_arguments_are_refused(kw: dict[str, object], phrase: str):
    client = fl.Client(0, TensorDataset(_x(), torch.tensor([0, 1] * 10)))
    _refused(fl.make_model("logreg", in_features=5), [client], fl.TrainConfig(steps=1), phrase,
             **kw)


def test_model_num_outputs():
    assert model_num_outputs(fl.make_model("mlp", in_features=3, num_classes=4)) == 4
    assert model_num_outputs(fl.make_model("cnn", num_classes=3)) == 3
    assert model_num_outputs(_BNMLP()) == 2
    assert model_num_outputs(nn.ReLU()) is None
