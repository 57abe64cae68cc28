"""The notebook 07 self-checks accept correct answers and explain wrong ones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedlearn.exercises import nb07
from fedlearn.privacy import calibrate_noise

from .exercise_language import assert_correct, exercise_language, only_in, rejects  # noqa: F401

pytestmark = pytest.mark.usefixtures("exercise_language")


def ece(y, p, n_bins):
    edges = np.linspace(0, 1, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    total = 0.0
    for b in range(n_bins):
        m = ids == b
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return total


def test_ece_reference_passes(capsys):
    nb07.check_ece(ece)
    assert_correct(capsys.readouterr().out)


def _unweighted(y, p, n_bins):
    edges = np.linspace(0, 1, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    return float(np.mean([abs(y[ids == b].mean() - p[ids == b].mean())
                          for b in range(n_bins) if (ids == b).any()]))


def _top_label(y, p, n_bins):
    conf = np.maximum(p, 1 - p)
    hit = ((p >= 0.5).astype(int) == y).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], conf)
    return sum((ids == b).mean() * abs(hit[ids == b].mean() - conf[ids == b].mean())
               for b in range(n_bins) if (ids == b).any())


def _left_closed(y, p, n_bins):
    ids = np.minimum((p * n_bins).astype(int), n_bins - 1)  # [a, b) bins: edges land higher
    return sum((ids == b).mean() * abs(y[ids == b].mean() - p[ids == b].mean())
               for b in range(n_bins) if (ids == b).any())


@pytest.mark.parametrize("wrong,hint", [
    (_unweighted, "weight each bin"),
    (_top_label, "top-label"),
    (_left_closed, "searchsorted"),
])
def test_ece_wrong_answers_get_hints(wrong, hint):
    with rejects(hint):
        nb07.check_ece(wrong)


def threshold_for_sensitivity(y, p, target):
    sick = np.sort(p[y == 1])[::-1]
    k = math.ceil(target * len(sick) - 1e-9)
    return float(sick[k - 1])


def test_threshold_reference_passes(capsys):
    nb07.check_threshold_for_sensitivity(threshold_for_sensitivity)
    assert_correct(capsys.readouterr().out)


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
@pytest.mark.parametrize("wrong,hint", [
    (lambda y, p, t: 0.5, "too high|highest threshold"),
    (lambda y, p, t: 0.0, "highest threshold"),
    (lambda y, p, t: float(np.quantile(p[y == 1], t)), "too high"),
])
def test_threshold_wrong_answers_get_hints(wrong, hint):
    with rejects(hint):
        nb07.check_threshold_for_sensitivity(wrong)


def hospitals_needed(eps, delta, rounds, clip, target):
    return math.ceil(calibrate_noise(eps, delta, 1.0, rounds) * clip / target)


def test_hospitals_needed_reference_passes(capsys):
    nb07.check_hospitals_needed(hospitals_needed)
    assert_correct(capsys.readouterr().out, en="hospitals for noise", zh="家医院")


@pytest.mark.parametrize("wrong,hint", [
    (lambda e, d, r, c, t: math.ceil((calibrate_noise(e, d, 1.0, r) * c / t) ** 2), "1/K"),
    (lambda e, d, r, c, t: 10 ** 9, "smallest K"),
    (lambda e, d, r, c, t: 6, "noise std"),
])
def test_hospitals_needed_wrong_answers_get_hints(wrong, hint):
    with rejects(hint):
        nb07.check_hospitals_needed(wrong)


def roc_from_noisy(hist):
    h = np.clip(hist, 0, None)
    neg, pos = h
    pos_above = np.append(np.cumsum(pos[::-1])[::-1], 0.0)
    neg_above = np.append(np.cumsum(neg[::-1])[::-1], 0.0)
    return pos_above / pos.sum(), 1 - neg_above / neg.sum()


def test_roc_from_noisy_reference_passes(capsys):
    nb07.check_roc_from_noisy(roc_from_noisy)
    assert_correct(capsys.readouterr().out)


def _no_clip(hist):
    neg, pos = hist
    pos_above = np.append(np.cumsum(pos[::-1])[::-1], 0.0)
    neg_above = np.append(np.cumsum(neg[::-1])[::-1], 0.0)
    return pos_above / pos.sum(), 1 - neg_above / neg.sum()


def _from_bottom(hist):
    h = np.clip(hist, 0, None)
    neg, pos = h
    return (np.append(0.0, np.cumsum(pos)) / pos.sum(),
            1 - np.append(0.0, np.cumsum(neg)) / neg.sum())


def _one_short(hist):
    s, p = roc_from_noisy(hist)
    return s[:-1], p[:-1]


@pytest.mark.parametrize(("wrong", "hint"), [
    (_no_clip, "set them to 0"),
    (_from_bottom, "AND ABOVE"),
    (_one_short, "thresholds"),
    (lambda h: roc_from_noisy(h)[0], "pair"),
])
def test_roc_from_noisy_wrong_answers_get_hints(wrong, hint):
    with rejects(hint):
        nb07.check_roc_from_noisy(wrong)
