"""Tests for fedlearn.report: per-hospital tables, classification reports, worst hospital."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.calibration import expected_calibration_error
from fedlearn.report import (
    POOLED,
    classification_report_frame,
    collect_predictions,
    markdown_table,
    metrics_table,
    worst_hospital,
)


def fake_preds(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, n, skill in (("A", 60, 2.0), ("B", 40, 0.5), ("C", 30, 1.0)):
        y = rng.integers(0, 2, n)
        score = 1 / (1 + np.exp(-(skill * (2 * y - 1) + rng.normal(size=n))))
        out[name] = (y, np.stack([1 - score, score], 1))
    return out


def test_metrics_table_rows_and_pooled_row():
    preds = fake_preds()
    t = metrics_table(preds)
    assert list(t.index) == ["A", "B", "C", POOLED]
    assert list(t.columns[:3]) == ["n", "disease %", "auroc"]
    y = np.concatenate([v[0] for v in preds.values()])
    p = np.concatenate([v[1] for v in preds.values()])
    ref = fl.classification_metrics(y, p)
    for m in ("auroc", "accuracy", "sensitivity", "specificity", "f1"):
        assert t.loc[POOLED, m] == pytest.approx(ref[m])
    assert t.loc[POOLED, "ece"] == pytest.approx(expected_calibration_error(y, p))
    assert t.loc["B", "n"] == 40
    assert t.loc["A", "disease %"] == pytest.approx(100 * preds["A"][0].mean())
    assert t.loc["A", "auroc"] > t.loc["B", "auroc"], "A is the more skilful hospital"
    assert POOLED not in metrics_table(preds, pooled=False).index
    broken = dict(preds, B=(preds["B"][0], np.full_like(preds["B"][1], np.nan)))
    tb = metrics_table(broken)
    assert np.isnan(tb.loc["B", "auroc"]) and np.isnan(tb.loc[POOLED, "ece"])
    assert tb.loc["A", "auroc"] == pytest.approx(t.loc["A", "auroc"]) and tb.loc["B", "n"] == 40
    with pytest.raises(ValueError, match="no predictions"):
        metrics_table({})


def test_worst_hospital_ignores_pooled_and_undefined():
    t = metrics_table(fake_preds())
    w = worst_hospital(t)
    assert w["worst"] == "B" and w["best"] == "A"
    assert w["gap"] == pytest.approx(t.loc["A", "auroc"] - t.loc["B", "auroc"])
    t.loc[POOLED, "auroc"] = 0.0
    t.loc["B", "auroc"] = np.nan  # one-class test set: AUROC undefined
    assert worst_hospital(t)["worst"] == "C"
    with pytest.raises(KeyError, match="metric"):
        worst_hospital(t, "kappa")


def test_classification_report_agrees_with_sensitivity_and_specificity():
    y, p = fake_preds()["A"]
    rep = classification_report_frame(y, p, ["normal", "pneumonia"], threshold=0.4)
    m = fl.classification_metrics(y, p, threshold=0.4)
    assert rep.loc["pneumonia", "recall"] == pytest.approx(m["sensitivity"])
    assert rep.loc["normal", "recall"] == pytest.approx(m["specificity"])
    assert rep.loc["pneumonia", "f1-score"] == pytest.approx(m["f1"])
    assert rep.loc["normal", "support"] == int((y == 0).sum())
    assert {"accuracy", "macro avg", "weighted avg"} <= set(rep.index)
    with pytest.raises(ValueError, match="class_names"):
        classification_report_frame(y, p, ["only one"])


def test_collect_predictions_global_and_personalised():
    g = torch.Generator().manual_seed(0)
    clients = [fl.Client(i, TensorDataset(torch.randn(10, 3, generator=g),
                                          torch.randint(0, 2, (10,), generator=g)),
                         test=TensorDataset(torch.randn(5 + i, 3, generator=g),
                                            torch.randint(0, 2, (5 + i,), generator=g)),
                         name=f"h{i}") for i in range(2)]
    clients.append(fl.Client(2, clients[0].train, test=None, name="no test"))
    model = fl.make_model("logreg", in_features=3, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shared = collect_predictions(model, clients)
    assert list(shared) == ["h0", "h1"] and shared["h1"][1].shape == (6, 2)
    assert np.allclose(shared["h0"][1], fl.predict_proba(model, clients[0].test.tensors[0]))
    # personal models: a huge bias towards class c for hospital c
    states = {}
    for c in clients[:2]:
        s = {k: v.clone() for k, v in before.items()}
        s["linear.bias"] = torch.tensor([50.0, -50.0]) * (1 if c.cid == 0 else -1)
        states[c.name] = s
    own = collect_predictions(model, clients[:2], lambda c: states[c.name])
    assert np.allclose(own["h0"][1][:, 0], 1.0) and np.allclose(own["h1"][1][:, 1], 1.0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), "the scratch model must be restored"


def test_markdown_table():
    df = pd.DataFrame({"auroc": [0.91234, np.nan], "name": ["x", "y"]}, index=["a", "b"])
    text = markdown_table(df)
    lines = text.splitlines()
    assert lines[0] == "| index | auroc | name |"
    assert lines[1] == "|---|---:|---|"
    assert lines[2] == "| a | 0.912 | x |" and lines[3] == "| b | nan | y |"
    assert markdown_table(df, digits=1, index=False).splitlines()[2] == "| 0.9 | x |"
    counts = pd.DataFrame({"n": [205.0, 38.0], "auroc": [1.0, 0.5]})
    assert markdown_table(counts, index=False).splitlines()[2] == "| 205 | 1.000 |"
