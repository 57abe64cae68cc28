"""Tests for fedlearn.calibration: ECE by hand, against scikit-learn, and temperature scaling."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402

from fedlearn.calibration import (  # noqa: E402
    Reliability,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    plot_reliability,
    reliability,
)


def two_class(p1: list[float] | np.ndarray) -> np.ndarray:
    p1 = np.asarray(p1, dtype=float)
    return np.stack([1 - p1, p1], axis=1)


def test_ece_by_hand_positive_class():
    # bins (0, 0.5] and (0.5, 1]: {0.2, 0.4} -> conf 0.3, rate 1/2; {0.9, 0.6} -> 0.75, 1.0
    y = [1, 0, 1, 1]
    p = two_class([0.9, 0.2, 0.6, 0.4])
    rel = reliability(y, p, n_bins=2)
    assert rel.count.tolist() == [2, 2]
    assert np.allclose(rel.confidence, [0.3, 0.75])
    assert np.allclose(rel.frequency, [0.5, 1.0])
    assert rel.ece == pytest.approx(0.5 * 0.2 + 0.5 * 0.25)
    assert rel.mce == pytest.approx(0.25)


def test_ece_by_hand_top_label():
    # predictions 1, 0, 1, 0 with confidences 0.9, 0.8, 0.6, 0.6; correct 1, 1, 1, 0
    y = [1, 0, 1, 1]
    p = two_class([0.9, 0.2, 0.6, 0.4])
    rel = reliability(y, p, n_bins=2, kind="top-label")
    assert rel.count.tolist() == [0, 4]
    assert rel.ece == pytest.approx(abs(0.75 - (0.9 + 0.8 + 0.6 + 0.6) / 4))


def test_known_cases():
    y = np.r_[np.ones(70, int), np.zeros(30, int)]
    assert expected_calibration_error(y, two_class(np.full(100, 0.7))) == pytest.approx(0.0)
    y = np.r_[np.ones(60, int), np.zeros(40, int)]
    assert expected_calibration_error(y, two_class(np.full(100, 0.8))) == pytest.approx(0.2)
    # always right and fully confident: perfect; always wrong and fully confident: ECE 1
    y = np.array([0, 1, 1, 0])
    assert expected_calibration_error(y, two_class(y.astype(float))) == pytest.approx(0.0)
    assert expected_calibration_error(y, two_class(1.0 - y)) == pytest.approx(1.0)


def test_labels_drawn_from_the_predictions_are_calibrated():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert expected_calibration_error(y, two_class(p), n_bins=10) < 0.01
    # a model that is too sure of itself is not
    sharp = np.clip((p - 0.5) * 3 + 0.5, 0, 1)
    assert expected_calibration_error(y, two_class(sharp)) > 0.1


@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
def test_matches_scikit_learn_calibration_curve(n_bins):
    rng = np.random.default_rng(n_bins)
    p = rng.beta(0.7, 0.7, size=500)
    p[:10] = np.linspace(0, 1, 10)  # include exact bin edges
    y = (rng.uniform(size=p.size) < p ** 1.5).astype(int)
    rel = reliability(y, two_class(p), n_bins=n_bins)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    m = rel.count > 0
    assert np.allclose(rel.frequency[m], prob_true)
    assert np.allclose(rel.confidence[m], prob_pred)


def test_accepts_tensors_and_other_positive_class():
    y = torch.tensor([0, 0, 1])
    p = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    a = expected_calibration_error(y, p, positive=0)
    b = expected_calibration_error(1 - y, p.flip(1))
    assert a == pytest.approx(b)


@pytest.mark.parametrize("args,match", [
    (([0, 1], np.array([0.2, 0.8])), "must be"),
    (([0, 1], two_class([0.2, 1.3])), r"\[0, 1\]"),
    (([0, 2], two_class([0.2, 0.3])), "labels"),
    (([], np.zeros((0, 2))), "no predictions"),
])
def test_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        reliability(*args)


def test_rejects_bad_options():
    with pytest.raises(ValueError, match="n_bins"):
        reliability([0, 1], two_class([0.1, 0.9]), n_bins=0)
    with pytest.raises(ValueError, match="kind"):
        reliability([0, 1], two_class([0.1, 0.9]), kind="classwise")  # type: ignore[arg-type]


def test_dict_round_trip_keeps_empty_bins():
    rel = reliability([1, 0, 1], two_class([0.95, 0.05, 0.9]), n_bins=4)
    back = Reliability.from_dict(rel.to_dict())
    assert np.array_equal(back.count, rel.count)
    assert np.allclose(back.confidence, rel.confidence, equal_nan=True)
    assert back.ece == pytest.approx(rel.ece)


def test_plot_reliability_draws_labelled_axes():
    rel = reliability([1, 0, 1, 0], two_class([0.9, 0.2, 0.7, 0.4]), n_bins=5)
    ax = plot_reliability(rel)
    assert "predicted probability" in ax.get_xlabel()
    assert "ECE" in ax.get_legend().get_texts()[1].get_text()
    ax = plot_reliability([rel, rel], labels=["a", "b"])
    assert [t.get_text() for t in ax.get_legend().get_texts()][1].startswith("a: ECE")
    with pytest.raises(ValueError, match="labels"):
        plot_reliability([rel], labels=["a", "b"])
    plt.close("all")


def test_temperature_keeps_the_ranking_and_interpolates():
    rng = np.random.default_rng(1)
    p = rng.dirichlet([1, 1], size=50)
    assert np.allclose(apply_temperature(p, 1.0), p)
    q = apply_temperature(p, 3.0)
    assert np.array_equal(q.argmax(1), p.argmax(1))
    assert np.all(np.abs(q[:, 1] - 0.5) <= np.abs(p[:, 1] - 0.5) + 1e-12)
    assert np.allclose(apply_temperature(p, 1e6), 0.5, atol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(p, 0.0)


def test_fit_temperature_recovers_a_known_temperature_federatedly():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=4.0, size=(20_000, 2))
    true_t = 2.5
    truth = np.exp(logits / true_t)
    truth /= truth.sum(1, keepdims=True)
    y = (rng.uniform(size=len(truth)) < truth[:, 1]).astype(int)
    model = np.exp(logits)
    model /= model.sum(1, keepdims=True)  # over-confident by a factor 2.5 in the logits
    sites = [(y[i::3], model[i::3]) for i in range(3)]
    t = fit_temperature(sites)
    assert t == pytest.approx(true_t, rel=0.08)
    assert fit_temperature([(y, model)]) == t, "summed NLL: splitting hospitals changes nothing"
    assert (expected_calibration_error(y, apply_temperature(model, t))
            < 0.3 * expected_calibration_error(y, model))
    with pytest.raises(ValueError, match="hospitals"):
        fit_temperature([])
    with pytest.raises(ValueError, match="positive"):
        fit_temperature(sites, grid=[0.0, 1.0])
