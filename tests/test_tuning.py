"""Federated tuning: validation only (a test set that raises on access), weights, stopping."""

from __future__ import annotations

import pytest
import torch

import fedlearn as fl
from fedlearn.algorithms import Ditto
from fedlearn.errors import ConfigError
from fedlearn.evaluation import own_model_scores
from fedlearn.splits import with_validation
from fedlearn.tuning import EarlyStopping, grid, tune, validation_curve

from .helpers import blobs


class Forbidden:
    """A test set that raises on any access: the tuner must never touch it."""

    def __getattribute__(self, name: str) -> object:
        raise AssertionError(f"the tuner read the test set ({name})")

    def __len__(self) -> int:
        raise AssertionError("the tuner read the test set (len)")


def hospitals() -> list[fl.Client]:
    cl = with_validation([fl.Client(cid=i, train=blobs(n, seed=i, shift=0.4 * i),
                                    test=blobs(20, seed=9 + i))
                          for i, n in enumerate([40, 60, 30])], fraction=0.25, seed=0)
    for c in cl:
        c.test = Forbidden()  # type: ignore[assignment]
    return cl


def model(seed: int) -> torch.nn.Module:
    return fl.make_model("mlp", in_features=5, hidden=(4,), seed=seed)


def make(lr: float, lam: float = 0.1) -> fl.Strategy:
    return Ditto(fl.TrainConfig(steps=5, batch_size=8, lr=lr), lam=lam)


@pytest.mark.parametrize("split", ["val", "cv"])
def test_tuning_never_touches_a_test_set_and_picks_the_useful_learning_rate(split: str) -> None:
    res = tune(make, model, hospitals(), {"lr": [1e-6, 0.3]}, rounds=2, split=split, k=2)
    assert res.best.params == {"lr": 0.3}
    assert list(res.frame().columns) == ["lr", "val_score", "best_round"]
    if split == "val":  # what the tuning released, in a DP study's ledger
        ledger = fl.Ledger({c.cid: c.name for c in hospitals()})
        res.record_in(ledger, [c.cid for c in hospitals()], dp=True)
        flagged = ledger.unaccounted()
        assert [r.quantity for r in flagged] == ["validation scores (tuning)",
                                                 "recipe chosen on validation"]
        assert "{'lr': 0.3}" in flagged[1].note and flagged[0].numbers > 0


def test_the_tuner_refuses_to_read_test_data() -> None:
    with pytest.raises(ConfigError, match="validation data only"):
        tune(make, model, hospitals(), {"lr": [0.1]}, rounds=1, split="test")


def test_the_score_is_weighted_by_validation_size() -> None:
    cl = hospitals()
    curve = validation_curve(lambda: make(0.3), model, cl, rounds=2, seed=4)
    # reference: the same run, then each hospital's own model on its own validation split
    own = [fl.Client(cid=c.cid, train=c.train, name=c.name, val=c.val) for c in cl]
    strat = make(0.3)
    m = model(4)
    fl.run(m, own, strat, rounds=2, seed=4, eval_every=0, progress=False)
    scores = own_model_scores(m, own, strat, split="val")
    ref = float((scores["accuracy"] * scores["n"]).sum() / scores["n"].sum())
    assert curve[-1] == pytest.approx(ref, abs=1e-12)
    assert list(scores["n"]) == [10, 15, 8]


def test_early_stopping_stops_a_run_that_no_longer_improves() -> None:
    curve = validation_curve(lambda: make(1e-7), model, hospitals(), rounds=10, patience=1)
    assert len(curve) == 2  # round 1 is the best; round 2 is not better; stop before 3
    with pytest.raises(ConfigError, match="patience"):
        EarlyStopping(make(0.1), patience=0)


def test_grid_and_its_errors() -> None:
    assert grid({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    with pytest.raises(ConfigError, match="'a'"):
        grid({"a": []})
    with pytest.raises(ConfigError, match="no validation split"):
        tune(make, model, [fl.Client(cid=0, train=blobs(20))], {"lr": [0.1]}, rounds=1)


def test_optuna_tpe_searches_the_same_space_on_validation_only() -> None:
    res = tune(make, model, hospitals(), {"lr": [1e-6, 0.3]}, rounds=2, sampler="tpe",
               n_trials=3)
    assert len(res.trials) == 3 and all(t.params["lr"] in (1e-6, 0.3) for t in res.trials)
    assert res.best.params == {"lr": 0.3}
    with pytest.raises(ConfigError, match="sampler"):
        tune(make, model, hospitals(), {"lr": [0.1]}, rounds=1, sampler="random")
