"""The C-index (sign convention, lifelines as reference) and the pluggable ``evaluate=`` of
``fl.run`` it is used through; ``import fedlearn`` must not load lifelines."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.survival import c_index, cox_loss, survival_metrics


def test_higher_risk_for_earlier_death_is_concordant() -> None:
    t = np.array([1.0, 2, 3, 4, 5])
    e = np.ones(5)
    assert c_index(-t, t, e) == 1.0  # risk decreasing in survival time: perfect
    assert c_index(t, t, e) == 0.0
    assert c_index(np.array([np.nan, 1, 2, 3, 4]), t, e) != c_index(-t, t, e)  # nan, no crash


def test_import_fedlearn_does_not_load_lifelines() -> None:
    code = "import sys, fedlearn; assert 'lifelines' not in sys.modules, 'lifelines loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _survival_clients(seed: int) -> list[fl.Client]:
    g = torch.Generator().manual_seed(seed)
    clients = []
    for k in range(3):
        x = torch.randn(40, 2, generator=g)
        u = torch.rand(40, generator=g)
        t = -torch.log(u) / torch.exp(1.5 * x[:, 0]) * 100  # exponential, hazard exp(1.5 x0)
        e = (torch.rand(40, generator=g) < 0.8).float()
        y = torch.stack([e, t], 1)
        clients.append(fl.Client(k, TensorDataset(x[:30], y[:30]), TensorDataset(x[30:], y[30:]),
                                 name=f"site {k}", loss_fn=cox_loss))
    return clients


def test_run_with_survival_evaluate_logs_c_index_and_learns() -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    hist = fl.run(model, _survival_clients(0),
                  fl.FedAvg(fl.TrainConfig(steps=20, batch_size=8, lr=0.05)), rounds=3,
                  seed=0, progress=False, evaluate=survival_metrics)
    frame = hist.to_dataframe()
    assert {"c_index", "events"} <= set(frame.columns) and "accuracy" not in frame.columns
    assert set(frame["test_set"]) == {"site 0", "site 1", "site 2", "pooled"}
    assert hist.final("c_index") > 0.7  # the first covariate drives the hazard
    assert hist.final("events", "pooled") == sum(
        float(c.test.tensors[1][:, 0].sum()) for c in _survival_clients(0))


def test_evaluate_gets_the_pooled_outputs_of_all_test_sets() -> None:
    clients = _survival_clients(1)
    seen: list[int] = []

    def count(outputs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        assert not outputs.requires_grad
        seen.append(len(y))
        return {"n": float(len(y))}

    res = fl.evaluate_clients(nn.Linear(2, 1), clients, evaluate=count)
    assert seen == [10, 10, 10, 30] and res["pooled"] == {"n": 30.0}


def test_default_evaluation_is_unchanged() -> None:
    torch.manual_seed(0)
    x = torch.randn(30, 3)
    y = (x[:, 0] > 0).long()
    clients = [fl.Client(k, TensorDataset(x, y), TensorDataset(x[:10 + k], y[:10 + k]))
               for k in range(2)]
    model = fl.make_model("logreg", in_features=3, seed=0)
    expected = {c.name: fl.classification_metrics(c.test.tensors[1],
                                                  fl.predict_proba(model, c.test.tensors[0]))
                for c in clients}
    got = fl.evaluate_clients(model, clients)
    for name, metrics in expected.items():
        assert got[name] == pytest.approx(metrics, nan_ok=True)
