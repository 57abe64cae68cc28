"""Secure sums of counts and floats: equal to the plain sum, and refused when they could wrap."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.survival.secure import SumRangeError, secure_sum_counts, secure_sum_floats


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 6), length=st.integers(1, 30),
       signed=st.booleans())
def test_integer_secure_sum_is_exact(seed: int, k: int, length: int, signed: bool) -> None:
    rng = np.random.default_rng(seed)
    low = -1000 if signed else 0
    counts = {c: rng.integers(low, 1000, length) for c in range(k)}
    total = secure_sum_counts(counts, bits=16, seed=seed)
    np.testing.assert_array_equal(total, np.sum(list(counts.values()), axis=0))
    assert total.dtype == np.int64


def test_counts_that_could_wrap_are_refused_with_the_fix() -> None:
    counts = {0: np.array([20_000, 1]), 1: np.array([20_000, 2])}
    with pytest.raises(SumRangeError, match=r"2 sites with counts up to 20000 .* wraps in "
                                            r"16-bit .* use bits >= 17"):
        secure_sum_counts(counts, bits=16)
    np.testing.assert_array_equal(secure_sum_counts(counts, bits=17), [40_000, 3])


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="at least 2 sites"):
        secure_sum_counts({0: np.array([1, 2])})
    with pytest.raises(ValueError, match="same length"):
        secure_sum_counts({0: np.array([1, 2]), 1: np.array([1])})
    with pytest.raises(ValueError, match="site 1: counts must be integers"):
        secure_sum_counts({0: np.array([1, 2]), 1: np.array([0.5, 1.0])})


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 6), bits=st.sampled_from([32, 53]))
def test_float_secure_sum_is_within_its_stated_bound(seed: int, k: int, bits: int) -> None:
    rng = np.random.default_rng(seed)
    clip = 1000.0
    vectors = {c: rng.uniform(-clip, clip, 50) for c in range(k)}
    total, bound = secure_sum_floats(vectors, clip=clip, bits=bits, seed=seed)
    exact = np.sum(list(vectors.values()), axis=0)
    assert np.abs(total - exact).max() <= bound
    assert bound < k * clip * 2.0 ** (2 - bits) * k * 2  # about K^2 clip 2^-(bits-1)


def test_float_outside_the_public_clip_is_refused_not_clipped() -> None:
    with pytest.raises(SumRangeError, match=r"site 1: \|entry\| 12 exceeds .* clip=10"):
        secure_sum_floats({0: np.array([1.0]), 1: np.array([-12.0])}, clip=10.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        secure_sum_floats({0: np.array([np.nan]), 1: np.array([1.0])}, clip=10.0)
