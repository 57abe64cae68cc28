"""Fixed-point quantisation into Z_(2^bits): the decoded sum is within the stated bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.secagg.quantize import (
    FixedPoint,
    mod_add,
    mod_sub,
    mod_sum,
    pack_words,
    packed_nbytes,
    unpack_words,
)


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(12, 53), clip=st.floats(1e-3, 1e3), n=st.integers(1, 40),
       seed=st.integers(0, 2**31), data=st.data())
def test_decoded_sum_is_within_the_bound(bits: int, clip: float, n: int, seed: int,
                                         data: st.DataObject) -> None:
    k = data.draw(st.integers(1, n))
    if (2 ** (bits - 1) - 1 - n) / (n * clip) < 1:
        return  # too few bits for this many summands: the constructor refuses (tested below)
    fp = FixedPoint(clip=clip, num_summands=n, bits=bits)
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-1.5 * clip, 1.5 * clip, size=(k, 50))  # some entries get clipped
    total = mod_sum([fp.encode(x) for x in xs], bits, 50)
    clipped = np.clip(xs, -clip, clip)
    exact = np.array([math.fsum(clipped[:, j]) for j in range(50)])  # correctly rounded
    assert np.all(np.abs(fp.decode(total) - exact) <= fp.error_bound(k))


@pytest.mark.parametrize("bits", [16, 32, 53])
def test_extremes_do_not_overflow(bits: int) -> None:
    n = 100
    fp = FixedPoint(clip=2.0, num_summands=n, bits=bits)
    for v in (2.0, -2.0):
        total = mod_sum([fp.encode(np.full(3, v))] * n, bits, 3)
        assert np.allclose(fp.decode(total), n * v, atol=fp.error_bound())


def test_the_bound_is_tight_enough_to_matter() -> None:
    """Without the 'upper half is negative' decoding, negative sums would come back huge."""
    fp = FixedPoint(clip=1.0, num_summands=4, bits=32)
    words = fp.encode(np.array([-0.5]))
    assert int(words[0]) > 2**31  # stored as 2^32 - |q|
    assert fp.decode(words)[0] == pytest.approx(-0.5, abs=fp.error_bound(1))
    assert fp.error_bound(4) < 1e-8


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="more bits"):
        FixedPoint(clip=1000.0, num_summands=1000, bits=16)
    with pytest.raises(ValueError, match="bits"):
        FixedPoint(clip=1.0, num_summands=2, bits=64)
    with pytest.raises(ValueError, match="clip"):
        FixedPoint(clip=0.0, num_summands=2)
    assert FixedPoint(1.0, 2).clipped_fraction(np.array([0.5, 1.5, -3.0, 0.0])) == 0.5


@pytest.mark.parametrize("bits", [8, 26, 32])
def test_ring_arithmetic_wraps(bits: int) -> None:
    m = 2**bits
    dt = np.uint32
    a = np.array([m - 1, 5, 0], dtype=dt)
    b = np.array([2, m - 7, 0], dtype=dt)
    assert mod_add(a, b, bits).tolist() == [1, m - 2, 0]
    assert mod_sub(b, a, bits).tolist() == [3, m - 12, 0]


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(2, 64), length=st.integers(0, 70), seed=st.integers(0, 2**31))
def test_pack_unpack_round_trip(bits: int, length: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dt = np.uint32 if bits <= 32 else np.uint64
    words = (rng.integers(0, 2**63, length, dtype=np.uint64) % np.uint64(2**bits if bits < 64
                                                                         else 2**63)).astype(dt)
    data = pack_words(words, bits)
    assert len(data) == packed_nbytes(length, bits)
    assert np.array_equal(unpack_words(data, bits, length), words)
    with pytest.raises(ValueError):
        unpack_words(data + b"\x00", bits, length)
