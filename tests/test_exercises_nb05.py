"""Notebook 05's self-checks accept the reference answers and reject the likely mistakes."""

from __future__ import annotations

import math

import pytest
import torch

from fedlearn.exercises import nb05
from fedlearn.privacy import BudgetGuard, DPFedAvg, PrivacyBudget, rounds_within_budget
from fedlearn.strategy import FedAvg

from .exercise_language import assert_correct, exercise_language, only_in, rejects  # noqa: F401

pytestmark = pytest.mark.usefixtures("exercise_language")


def test_gaussian_sigma_checker(capsys):
    eps, delta, sens = 0.5, 1e-5, 2.0
    nb05.check_gaussian_sigma(sens * math.sqrt(2 * math.log(1.25 / delta)) / eps, eps, delta, sens)
    assert_correct(capsys.readouterr().out)
    with rejects("sensitivity"):
        nb05.check_gaussian_sigma(math.sqrt(2 * math.log(1.25 / delta)) / eps, eps, delta, sens)
    with rejects("1.25"):
        nb05.check_gaussian_sigma(sens * math.sqrt(2 * math.log(1 / delta)) / eps, eps, delta, sens)
    with rejects("expected"):
        nb05.check_gaussian_sigma(1.0, eps, delta, sens)


def _clip(u, c):
    norm = math.sqrt(sum(float((v ** 2).sum()) for v in u.values()))
    f = min(1.0, c / (norm + 1e-12))
    return {k: v * f for k, v in u.items()}


def reference_dp_mean(updates, clip, z, m, gen):
    clipped = [_clip(u, clip) for u in updates]
    return {k: (sum(c[k] for c in clipped) + torch.normal(0.0, z * clip, size=updates[0][k].shape,
                                                          generator=gen)) / m
            for k in updates[0]}


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
def test_dp_mean_checker_accepts_the_reference(capsys):
    nb05.check_dp_mean(reference_dp_mean)
    assert_correct(capsys.readouterr().out)


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
@pytest.mark.parametrize("wrong,match", [
    (lambda u, c, z, m, g: reference_dp_mean(u, c, z, len(u), g), "EXPECTED"),
    (lambda u, c, z, m, g: {k: (sum(x[k] for x in u) + torch.normal(
        0.0, z * c, size=u[0][k].shape, generator=g)) / m for k in u[0]}, "not clipped"),
    (lambda u, c, z, m, g: {k: (sum(x[k] * min(1.0, c / float(x[k].norm())) for x in u)
                                + torch.normal(0.0, z * c, size=u[0][k].shape, generator=g)) / m
                            for k in u[0]}, "WHOLE update"),
    (lambda u, c, z, m, g: reference_dp_mean(u, c, z / 2, m, g), "noise std"),
    (lambda u, c, z, m, g: {k: v + float(torch.normal(0.0, z * c / m, size=(1,), generator=g))
                            for k, v in reference_dp_mean(u, c, 0.0, m, g).items()},
     "own noise draw"),
])
def test_dp_mean_checker_rejects_mistakes(wrong, match):
    with rejects(match):
        nb05.check_dp_mean(wrong)


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
def test_rounds_checker_agrees_with_the_budget_guard(capsys):
    z, q, eps, delta = 1.5, 0.1, 3.0, 1e-5
    dp = DPFedAvg(FedAvg(), noise_multiplier=z, clip_norm=1.0, client_rate=q, delta=delta)
    n = rounds_within_budget(dp, PrivacyBudget(eps, delta))
    assert n > 1
    nb05.check_rounds_within_budget(n, z, q, eps, delta)
    assert_correct(capsys.readouterr().out)
    with rejects("crosses the budget"):
        nb05.check_rounds_within_budget(n + 1, z, q, eps, delta)
    with rejects("expected"):
        nb05.check_rounds_within_budget(n - 3, z, q, eps, delta)
    assert isinstance(BudgetGuard(dp, PrivacyBudget(eps, delta)), BudgetGuard)
