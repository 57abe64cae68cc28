import numpy as np
import pytest
import torch
from sklearn import metrics as skm

import fedlearn as fl


def test_binary_metrics_match_sklearn_definitions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p1 = np.clip(0.3 * y + rng.random(300) * 0.7, 0, 1)
    proba = np.stack([1 - p1, p1], 1)
    m = fl.classification_metrics(y, proba)
    pred = (p1 >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred, pos_label=1))
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["loss"] == pytest.approx(skm.log_loss(y, proba))


def test_always_positive_model_on_imbalanced_data():
    # pneumonia-like prevalence 62.5 %: accuracy looks fine, specificity exposes it
    y = np.array([1] * 5 + [0] * 3)
    proba = np.tile([0.1, 0.9], (8, 1))
    m = fl.classification_metrics(y, proba)
    assert m["accuracy"] == pytest.approx(0.625)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 0.0
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["auroc"] == pytest.approx(0.5)


def test_threshold_moves_sensitivity_and_specificity():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.2, 0.4, 0.35, 0.9])
    proba = np.stack([1 - p1, p1], 1)
    lo = fl.classification_metrics(y, proba, threshold=0.3)
    hi = fl.classification_metrics(y, proba, threshold=0.5)
    assert lo["sensitivity"] == 1.0 and lo["specificity"] == 0.5
    assert hi["sensitivity"] == 0.5 and hi["specificity"] == 1.0


def test_multiclass_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 2 * np.eye(4)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = fl.classification_metrics(torch.tensor(y), torch.tensor(proba))
    pred = proba.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))


def test_single_class_auroc_is_nan_and_bad_shapes_raise():
    m = fl.classification_metrics(np.ones(4), np.tile([0.2, 0.8], (4, 1)))
    assert np.isnan(m["auroc"]) and m["accuracy"] == 1.0
    with pytest.raises(ValueError, match="proba"):
        fl.classification_metrics(np.ones(4), np.ones((3, 2)))
    with pytest.raises(ValueError, match="labels"):
        fl.classification_metrics(np.array([0, 2]), np.ones((2, 2)) / 2)


def test_evaluate_uses_the_model():
    model = fl.make_model("logreg", in_features=3, seed=0)
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[0.0, 0, 0], [10.0, 0, 0]]))
        model.linear.bias.zero_()
    x = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]])
    y = torch.tensor([1, 0])
    m = fl.evaluate(model, torch.utils.data.TensorDataset(x, y))
    assert m["accuracy"] == 1.0 and m["auroc"] == 1.0
