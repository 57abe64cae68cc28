"""Shamir secret sharing: any t shares reconstruct, t-1 shares are consistent with every secret."""

from __future__ import annotations

import itertools

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.secagg.prg import SecureRandom
from fedlearn.secagg.shamir import (
    PRIME_256,
    Share,
    eval_poly,
    lagrange_at_zero,
    reconstruct_secret,
    share_nbytes,
    split_secret,
)


def test_prime_is_the_smallest_prime_above_2_256() -> None:
    assert sympy.isprime(PRIME_256)
    assert sympy.nextprime(2**256) == PRIME_256
    assert share_nbytes() == 33  # a 257-bit field element


@settings(max_examples=40, deadline=None)
@given(secret=st.integers(0, 2**256 - 1), n=st.integers(1, 9), data=st.data())
def test_any_t_shares_reconstruct(secret: int, n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n))
    ids = data.draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True))
    shares = split_secret(secret, t, [i + 1 for i in ids], SecureRandom(data.draw(st.integers())))
    subset = data.draw(st.lists(st.sampled_from(shares), min_size=t, max_size=n, unique=True))
    assert reconstruct_secret(subset, t) == secret


def test_fewer_than_t_shares_refuse_to_reconstruct() -> None:
    shares = split_secret(12345, 3, [1, 2, 3, 4], SecureRandom(0))
    with pytest.raises(ValueError, match="at least t = 3"):
        reconstruct_secret(shares[:2], 3)


def test_t_minus_1_shares_are_consistent_with_every_secret_equally_often() -> None:
    """Perfect secrecy, checked exhaustively in a small field: for every possible pair of
    shares held by t-1 = 2 parties, each of the p secrets is produced by exactly one polynomial
    of degree t-1 = 2, so the shares say nothing about the secret."""
    p, xs = 11, (3, 7)
    counts: dict[tuple[int, int], dict[int, int]] = {}
    for s, a1, a2 in itertools.product(range(p), repeat=3):
        ys = tuple(eval_poly([s, a1, a2], x, p) for x in xs)
        counts.setdefault(ys, {}).setdefault(s, 0)
        counts[ys][s] += 1
    assert len(counts) == p * p  # every pair of share values occurs
    for per_secret in counts.values():
        assert per_secret == dict.fromkeys(range(p), 1)


def test_with_t_shares_only_one_secret_is_consistent() -> None:
    """Contrast: with t = 3 shares the table collapses to one secret per share triple."""
    p, xs = 11, (3, 7, 9)
    seen: dict[tuple[int, ...], set[int]] = {}
    for s, a1, a2 in itertools.product(range(p), repeat=3):
        seen.setdefault(tuple(eval_poly([s, a1, a2], x, p) for x in xs), set()).add(s)
    assert all(len(v) == 1 for v in seen.values())


def test_lagrange_weights_reproduce_constants_and_the_identity() -> None:
    xs = [2, 5, 11, 17]
    w = lagrange_at_zero(xs)
    assert sum(w) % PRIME_256 == 1  # f(x) = 1 interpolates to 1
    assert sum(wi * x for wi, x in zip(w, xs, strict=True)) % PRIME_256 == 0  # f(x) = x -> 0


def test_split_checks_its_arguments() -> None:
    rng = SecureRandom(0)
    with pytest.raises(ValueError, match="secret"):
        split_secret(PRIME_256, 2, [1, 2], rng)
    with pytest.raises(ValueError, match="threshold"):
        split_secret(1, 3, [1, 2], rng)
    with pytest.raises(ValueError, match="distinct and non-zero"):
        split_secret(1, 2, [1, 1], rng)
    with pytest.raises(ValueError, match="distinct and non-zero"):
        split_secret(1, 2, [0, 1], rng)
    with pytest.raises(ValueError, match="duplicate"):
        reconstruct_secret([Share(1, 5), Share(1, 5)], 2)


def test_seeded_sharing_is_reproducible_and_unseeded_is_not() -> None:
    a = split_secret(99, 3, [1, 2, 3], SecureRandom(5))
    b = split_secret(99, 3, [1, 2, 3], SecureRandom(5))
    c = split_secret(99, 3, [1, 2, 3], SecureRandom(None))
    assert a == b
    assert a != c
