"""Each hospital's own model on its own data: agrees with fl.run; mean and worst."""

from __future__ import annotations

import pandas as pd
import pytest

import fedlearn as fl
from fedlearn.algorithms import FedPer
from fedlearn.errors import ConfigError
from fedlearn.evaluation import own_model_scores, summary

from .helpers import blobs


def test_own_model_scores_match_the_personalised_evaluation_of_run() -> None:
    cl = [fl.Client(cid=i, train=blobs(n, seed=i, shift=0.6 * i), test=blobs(25, seed=7 + i))
          for i, n in enumerate([30, 50, 20])]
    strat = FedPer(fl.TrainConfig(steps=5, batch_size=8, lr=0.2), head=("net.2.",))
    m = fl.make_model("mlp", in_features=5, hidden=(4,), seed=0)
    hist = fl.run(m, cl, strat, rounds=2, seed=0, progress=False)
    scores = own_model_scores(m, cl, strat)
    df = hist.to_dataframe()
    last = df[df["round"] == 2].set_index("test_set")
    for _, row in scores.iterrows():
        assert row["accuracy"] == pytest.approx(last.loc[row["hospital"], "accuracy"])
    s = summary(scores)
    assert s["mean"] == pytest.approx(scores["accuracy"].mean())
    assert s["worst"] == scores["accuracy"].min()
    with pytest.raises(ConfigError, match="no 'val' split"):
        own_model_scores(m, cl, strat, split="val")


def test_summary_counts_each_hospital_once_and_names_the_worst() -> None:
    s = summary(pd.DataFrame({"hospital": ["A", "B"], "n": [90, 10], "accuracy": [0.9, 0.5]}))
    assert s == {"mean": 0.7, "weighted": pytest.approx(0.86), "worst": 0.5,
                 "worst_hospital": "B"}
    with pytest.raises(ConfigError, match="'auc'"):
        summary(pd.DataFrame({"hospital": ["A"], "n": [1], "accuracy": [1.0]}), "auc")
