"""The self-checks of notebook 10 accept the reference answers and reject likely mistakes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedlearn.exercises import nb10
from fedlearn.survival import c_index


def test_risk_sign_accepts_minus_risk_and_rejects_the_flip() -> None:
    nb10.check_risk_sign(c_index)
    from lifelines.utils import concordance_index

    with pytest.raises(AssertionError, match="sign is flipped"):
        nb10.check_risk_sign(lambda r, t, e: concordance_index(t, r, e))
    with pytest.raises(AssertionError, match="expected"):
        nb10.check_risk_sign(lambda r, t, e: concordance_index(t, -r))  # ignores censoring


def _bracket(d, c):
    d, c = np.asarray(d, float), np.asarray(c, float)
    n = np.cumsum((d + c)[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.cumprod(1 - np.where(n - c > 0, d / (n - c), 0))[:-1]
        hi = np.cumprod(1 - np.where(n > 0, d / n, 0))[:-1]
    return lo, hi


def test_km_bracket_accepts_the_telescoping_bounds() -> None:
    nb10.check_km_bracket(_bracket)


def test_km_bracket_rejects_swapped_and_wrong_risk_sets() -> None:
    with pytest.raises(AssertionError, match="swapped"):
        nb10.check_km_bracket(lambda d, c: _bracket(d, c)[::-1])
    with pytest.raises(AssertionError, match="one value per grid point"):
        nb10.check_km_bracket(lambda d, c: tuple(np.append(v, 0.0) for v in _bracket(d, c)))

    def forward_cumsum(d, c):  # at risk counted from the wrong end
        d, c = np.asarray(d, float), np.asarray(c, float)
        n = np.cumsum(d + c)
        lo = np.cumprod(1 - d / np.maximum(n, 1))[:-1]
        return lo, lo
    with pytest.raises(AssertionError):
        nb10.check_km_bracket(forward_cumsum)


def test_sensitivities() -> None:
    nb10.check_sensitivities(lambda g: (1, g, math.sqrt(g)))
    with pytest.raises(AssertionError, match="swapped"):
        nb10.check_sensitivities(lambda g: (1, math.sqrt(g), g))
    with pytest.raises(AssertionError, match="one cell of the 2"):
        nb10.check_sensitivities(lambda g: (2, g, math.sqrt(g)))
    with pytest.raises(AssertionError, match="every interval"):
        nb10.check_sensitivities(lambda g: (1, 1, 1))


def _step(beta, ll, g, h, n, lam):
    p = beta.size
    return beta + np.linalg.solve(-(h - n * lam * np.eye(p)), g - n * lam * beta)


def test_newton_step_accepts_the_reference_and_rejects_mistakes() -> None:
    nb10.check_newton_step(_step)
    with pytest.raises(AssertionError, match="penalty is missing"):
        nb10.check_newton_step(lambda b, ll, g, h, n, lam: b + np.linalg.solve(-h, g))
    with pytest.raises(AssertionError, match="downhill"):
        nb10.check_newton_step(lambda b, ll, g, h, n, lam: 2 * b - _step(b, ll, g, h, n, lam))
    with pytest.raises(AssertionError, match="number of patients"):
        nb10.check_newton_step(lambda b, ll, g, h, n, lam: _step(b, ll, g, h, 1, lam))
