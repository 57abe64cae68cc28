"""Cross-site evaluation: the matrix is what scoring each model on each site gives, leave-one-out
never trains on the held-out hospital, and the fairness numbers are numpy's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import fedlearn as fl
from fedlearn import crosssite as cs
from fedlearn.errors import ConfigError
from fedlearn.metrics import evaluate

from .helpers import blobs

CFG = fl.TrainConfig(steps=5, batch_size=8, lr=0.2)


def hospitals() -> list[fl.Client]:
    # hospital 2's labels follow a shifted rule: a model trained elsewhere does worse there
    return [fl.Client(cid=i, train=blobs(60, seed=i, shift=2.0 * (i == 2)),
                      test=blobs(80, seed=20 + i, shift=2.0 * (i == 2)), name=f"H{i}")
            for i in range(3)]


def mlp() -> torch.nn.Module:
    return fl.make_model("mlp", in_features=5, hidden=(8,), seed=0)


def test_matrix_entries_are_each_model_scored_on_each_test_set() -> None:
    c = hospitals()
    models = cs.local_models(mlp(), c, CFG, rounds=3)
    tests = {x.name: x.test for x in c}
    mat = cs.cross_site_matrix(models, tests, metric="accuracy")
    assert list(mat.index) == ["H0", "H1", "H2"] and list(mat.columns) == ["H0", "H1", "H2"]
    for m in models:
        for s in tests:
            assert mat.loc[m, s] == evaluate(models[m], tests[s])["accuracy"]
    # the shifted hospital's own model is best on its own test set
    assert mat["H2"].idxmax() == "H2"
    with pytest.raises(ConfigError, match="metric='acc'"):
        cs.cross_site_matrix(models, tests, metric="acc")
    with pytest.raises(ConfigError, match="at least one model"):
        cs.cross_site_matrix({}, tests)


def test_leave_one_out_never_trains_on_the_held_out_hospital() -> None:
    c = hospitals()
    seen: list[list[int]] = []

    class Recording(fl.FedAvg):
        def configure_round(self, rnd, clients):  # noqa: ANN001, ANN201
            seen.append(sorted(x.cid for x in clients))
            return super().configure_round(rnd, clients)

    out = cs.leave_one_out(mlp(), c, lambda: Recording(CFG), rounds=2, metric="accuracy")
    assert seen == [[0, 1, 2]] * 2 + [[1, 2]] * 2 + [[0, 2]] * 2 + [[0, 1]] * 2
    assert list(out.index) == ["H0", "H1", "H2"]
    np.testing.assert_allclose(out["gain"], out["included"] - out["held_out"])
    with pytest.raises(ConfigError, match=">= 2 hospitals"):
        cs.leave_one_out(mlp(), c[:1], lambda: fl.FedAvg(CFG), rounds=1)


def test_fairness_numbers() -> None:
    s = pd.Series({"a": 0.9, "b": 0.7, "c": 0.8})
    f = cs.fairness(s)
    assert f["worst"] == 0.7 and f["worst_site"] == "b" and f["best"] == 0.9
    assert f["spread"] == pytest.approx(0.2) and f["mean"] == pytest.approx(0.8)
    assert f["std"] == pytest.approx(np.std([0.9, 0.7, 0.8]))
    with pytest.raises(ConfigError, match="at least one finite"):
        cs.fairness({})
