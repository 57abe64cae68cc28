"""The self-checks of notebook 10 accept the reference answers and reject likely mistakes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedlearn.exercises import nb10
from fedlearn.survival import c_index

from .exercise_language import assert_correct, exercise_language, only_in, rejects  # noqa: F401

pytestmark = pytest.mark.usefixtures("exercise_language")


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
def test_risk_sign_accepts_minus_risk_and_rejects_the_flip(
        capsys: pytest.CaptureFixture[str]) -> None:
    nb10.check_risk_sign(c_index)
    assert_correct(capsys.readouterr().out)
    from lifelines.utils import concordance_index

    with rejects("sign is flipped"):
        nb10.check_risk_sign(lambda r, t, e: concordance_index(t, r, e))
    with rejects("expected"):
        nb10.check_risk_sign(lambda r, t, e: concordance_index(t, -r))  # ignores censoring


def _bracket(d, c):
    d, c = np.asarray(d, float), np.asarray(c, float)
    n = np.cumsum((d + c)[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.cumprod(1 - np.where(n - c > 0, d / (n - c), 0))[:-1]
        hi = np.cumprod(1 - np.where(n > 0, d / n, 0))[:-1]
    return lo, hi


def test_km_bracket_accepts_the_telescoping_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    nb10.check_km_bracket(_bracket)
    assert_correct(capsys.readouterr().out)


def test_km_bracket_rejects_swapped_and_wrong_risk_sets() -> None:
    with rejects("swapped"):
        nb10.check_km_bracket(lambda d, c: _bracket(d, c)[::-1])
    with rejects("one value per grid point"):
        nb10.check_km_bracket(lambda d, c: tuple(np.append(v, 0.0) for v in _bracket(d, c)))

    def forward_cumsum(d, c):  # at risk counted from the wrong end
        d, c = np.asarray(d, float), np.asarray(c, float)
        n = np.cumsum(d + c)
        lo = np.cumprod(1 - d / np.maximum(n, 1))[:-1]
        return lo, lo
    with rejects("falls outside your bracket"):
        nb10.check_km_bracket(forward_cumsum)
    with rejects("lower bound: expected"):  # inside the bracket, but not the telescoping bound
        nb10.check_km_bracket(lambda d, c: (0.999 * _bracket(d, c)[0], _bracket(d, c)[1]))


def test_sensitivities(capsys: pytest.CaptureFixture[str]) -> None:
    nb10.check_sensitivities(lambda g: (1, g, math.sqrt(g)))
    assert_correct(capsys.readouterr().out)
    with rejects("swapped"):
        nb10.check_sensitivities(lambda g: (1, math.sqrt(g), g))
    with rejects("one cell of the 2"):
        nb10.check_sensitivities(lambda g: (2, g, math.sqrt(g)))
    with rejects("every interval"):
        nb10.check_sensitivities(lambda g: (1, 1, 1))


def _step(beta, ll, g, h, n, lam):
    p = beta.size
    return beta + np.linalg.solve(-(h - n * lam * np.eye(p)), g - n * lam * beta)


def test_newton_step_accepts_the_reference_and_rejects_mistakes(
        capsys: pytest.CaptureFixture[str]) -> None:
    nb10.check_newton_step(_step)
    assert_correct(capsys.readouterr().out)
    with rejects("penalty is missing"):
        nb10.check_newton_step(lambda b, ll, g, h, n, lam: b + np.linalg.solve(-h, g))
    with rejects("downhill"):
        nb10.check_newton_step(lambda b, ll, g, h, n, lam: 2 * b - _step(b, ll, g, h, n, lam))
    with rejects("number of patients"):
        nb10.check_newton_step(lambda b, ll, g, h, n, lam: _step(b, ll, g, h, 1, lam))
    with rejects("new beta = beta"):
        nb10.check_newton_step(lambda b, ll, g, h, n, lam: _step(b, ll, g, h, n, lam) + 1e-3)
