"""Shamir's t-of-n secret sharing over a prime field, written out by hand.

A secret ``s`` becomes the constant term of a random polynomial of degree ``t - 1``,

    f(x) = s + a_1 x + ... + a_{t-1} x^{t-1}   (mod p),

and party ``i`` gets the point ``(x_i, f(x_i))``. Any ``t`` points fix the polynomial, so
Lagrange interpolation at ``x = 0`` gives back ``s``. Any ``t - 1`` points are consistent
with *every* secret: for each candidate ``s'`` there is exactly one polynomial of degree
``t - 1`` through the ``t - 1`` points and ``(0, s')``. With uniformly random coefficients
all candidates are therefore equally likely, so ``t - 1`` shares reveal nothing at all
(perfect secrecy, not just "hard to compute").

Secure aggregation shares two 256-bit secrets per hospital (a self-mask seed and a private
key), so the default field is the smallest prime above 2^256: every 32-byte secret is a field
element and a share costs 33 bytes on the wire.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .prg import SecureRandom

__all__ = ["PRIME_256", "Share", "split_secret", "reconstruct_secret", "lagrange_at_zero",
           "eval_poly", "share_nbytes"]

PRIME_256 = 2**256 + 297
"""The smallest prime above 2^256 (checked with ``sympy.isprime`` in the tests)."""


@dataclass(frozen=True)
class Share:
    """One point ``(x, y)`` of the sharing polynomial; ``x`` is never 0 (that is the secret)."""

    x: int
    y: int


def share_nbytes(prime: int = PRIME_256) -> int:
    """Bytes needed to send one share value ``y < prime``."""
    return (prime.bit_length() + 7) // 8


def eval_poly(coeffs: Sequence[int], x: int, prime: int) -> int:
    """``coeffs[0] + coeffs[1] x + ...`` mod ``prime`` by Horner's rule."""
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % prime
    return acc


def split_secret(secret: int, t: int, xs: Sequence[int], rng: SecureRandom,
                 prime: int = PRIME_256) -> list[Share]:
    """Share ``secret`` so that any ``t`` of the points at ``xs`` recover it.

    Args:
        secret: an integer in ``[0, prime)``.
        t: the threshold, ``1 <= t <= len(xs)``.
        xs: distinct, non-zero evaluation points (in secure aggregation: client id + 1).
        rng: the source of the random coefficients; a :class:`SecureRandom` built without a
            seed draws from the operating system, with a seed it is reproducible.
        prime: the field size; must exceed ``secret`` and every ``x``.
    """
    if not 0 <= secret < prime:
        raise ValueError(f"secret must lie in [0, prime), got {secret}")
    n = len(xs)
    if not 1 <= t <= n:
        raise ValueError(f"threshold t must satisfy 1 <= t <= n = {n}, got {t}")
    if len(set(x % prime for x in xs)) != n or any(x % prime == 0 for x in xs):
        raise ValueError("evaluation points must be distinct and non-zero mod prime")
    coeffs = [secret] + [rng.below(prime) for _ in range(t - 1)]
    return [Share(x, eval_poly(coeffs, x, prime)) for x in xs]


def lagrange_at_zero(xs: Sequence[int], prime: int = PRIME_256) -> list[int]:
    """Weights ``l_i(0) = prod_{j != i} x_j / (x_j - x_i)`` so that ``f(0) = sum_i l_i(0) y_i``.

    They depend only on *which* parties answered, so the server computes them once per set of
    survivors and reuses them for every secret it reconstructs.
    """
    if len(set(x % prime for x in xs)) != len(xs):
        raise ValueError(f"duplicate evaluation points {list(xs)}")
    weights = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % prime
                den = den * (xj - xi) % prime
        weights.append(num * pow(den, -1, prime) % prime)
    return weights


def reconstruct_secret(shares: Sequence[Share], t: int, prime: int = PRIME_256) -> int:
    """The secret from at least ``t`` shares (exactly ``t`` are used).

    Raises:
        ValueError: fewer than ``t`` shares (the caller then cannot, and must not try to,
            guess the secret), or duplicate points.
    """
    if len(shares) < t:
        raise ValueError(f"need at least t = {t} shares to reconstruct, got {len(shares)}")
    use = list(shares)[:t]
    xs = [s.x for s in use]
    weights = lagrange_at_zero(xs, prime)
    return sum(w * s.y for w, s in zip(weights, use, strict=True)) % prime
