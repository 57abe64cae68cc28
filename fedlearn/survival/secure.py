"""Secure sums of the regions' count vectors and statistics, through the real protocol.

Every federated survival statistic in this package is a *sum over sites*: at-risk and event
counts (Kaplan-Meier, log-rank), counts, sums and sums of squares (standardisation), gradients
and Hessians (Newton-Raphson). Each sum goes through Bonawitz et al.'s secure aggregation,
:func:`fedlearn.secagg.simulate.run_secure_sum` (pairwise masks, Shamir-shared seeds): the
server object only ever holds masked vectors and their total.

Masking works in the ring Z_(2^bits), so a sum that exceeds the ring *wraps* silently and
decodes to a wrong number. Both functions therefore check the range first and refuse with a
:class:`SumRangeError` instead of returning garbage:

* :func:`secure_sum_counts` (integers): with K sites and every entry in ``[-B, B]`` the sum
  lies in ``[-K B, K B]``, which decodes exactly iff ``K B < 2^(bits-1)`` (two's complement;
  non-negative counts could use the full ring, but DP noise makes them signed).
* :func:`secure_sum_floats` (gradients, Hessians): fixed point with
  :class:`fedlearn.secagg.quantize.FixedPoint`; values must lie in ``[-clip, clip]`` (a public
  bound; a value outside is refused, not clipped, since clipping would bias a Newton step) and
  the decoded sum is within ``FixedPoint.error_bound(K) = K (1/(2s) + 2 clip 2^-52)`` of the
  exact sum, ``s`` = ``FixedPoint.scale``: about ``K^2 clip 2^-52`` at 53 bits.

These are the two places the lead's ``Secure`` aggregator can later take over.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fedlearn.secagg.quantize import FixedPoint
from fedlearn.secagg.simulate import run_secure_sum

__all__ = ["SumRangeError", "secure_sum_counts", "secure_sum_floats", "default_threshold"]


class SumRangeError(ValueError):
    """The inputs could wrap modulo 2^bits (or exceed the public clip): the sum is refused."""


def default_threshold(num_sites: int) -> int:
    """Shamir threshold t: a strict majority of the sites, at least 2 (the protocol's minimum)."""
    return max(2, num_sites // 2 + 1)


def _check_sites(vectors: Mapping[int, np.ndarray]) -> int:
    if len(vectors) < 2:
        raise ValueError(f"secure aggregation needs at least 2 sites, got {len(vectors)}; "
                         "a 'sum' of one site is that site's own data")
    lengths = {np.asarray(v).shape for v in vectors.values()}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise ValueError(f"every site must send a 1-d vector of the same length, got shapes "
                         f"{sorted(lengths)}")
    return next(iter(lengths))[0]


def secure_sum_counts(counts: Mapping[int, np.ndarray], *, bits: int = 32,
                      threshold: int | None = None, seed: int | None = 0,
                      round_id: int = 0) -> np.ndarray:
    """Exact sum of the sites' integer vectors (``site id -> counts``), secure-aggregated.

    Raises :class:`SumRangeError` unless ``K * max|entry| < 2^(bits-1)``, ``K`` the number of
    sites; in a deployment each site checks its own vector against the public bound.
    Returns int64.
    """
    length = _check_sites(counts)
    arrays = {}
    for cid, v in counts.items():
        a = np.asarray(v)
        if a.dtype.kind not in "iub":
            if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
                raise ValueError(f"site {cid}: counts must be integers, got dtype {a.dtype}")
        arrays[cid] = a.astype(np.int64)
    bound = max((int(np.abs(a).max()) for a in arrays.values() if a.size), default=0)
    k = len(arrays)
    if k * bound >= 1 << (bits - 1):
        raise SumRangeError(
            f"{k} sites with counts up to {bound} can sum to {k * bound}, which wraps in "
            f"{bits}-bit secure aggregation (limit {(1 << (bits - 1)) - 1}); use "
            f"bits >= {int(k * bound).bit_length() + 1}")
    mask = np.uint64((1 << bits) - 1)
    ring = {cid: (a.astype(np.uint64) & mask) for cid, a in arrays.items()}  # two's complement
    t = default_threshold(k) if threshold is None else threshold
    res = run_secure_sum(ring, threshold=t, bits=bits, seed=seed, round_id=round_id)
    total = res.total.astype(np.int64) if length else np.zeros(0, dtype=np.int64)
    return np.where(total >= 1 << (bits - 1), total - (1 << bits), total)


def secure_sum_floats(vectors: Mapping[int, np.ndarray], *, clip: float, bits: int = 53,
                      threshold: int | None = None, seed: int | None = 0,
                      round_id: int = 0) -> tuple[np.ndarray, float]:
    """Sum of float vectors in fixed point; returns ``(sum, error_bound)``.

    ``clip`` is a public bound on every entry; an entry outside ``[-clip, clip]`` raises
    :class:`SumRangeError` (with the value and the fix) instead of being clipped. The decoded
    sum is within ``error_bound`` of the exact float64 sum in every coordinate.
    """
    _check_sites(vectors)
    k = len(vectors)
    fp = FixedPoint(clip=clip, num_summands=k, bits=bits)
    ring = {}
    for cid, v in vectors.items():
        a = np.asarray(v, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"site {cid}: vector has NaN or inf entries")
        worst = float(np.abs(a).max()) if a.size else 0.0
        if worst > clip:
            raise SumRangeError(f"site {cid}: |entry| {worst:.4g} exceeds the public bound "
                                f"clip={clip:.4g}; raise clip (at most {clip:.4g} was agreed)")
        ring[cid] = fp.encode(a)
    t = default_threshold(k) if threshold is None else threshold
    res = run_secure_sum(ring, threshold=t, bits=bits, seed=seed, round_id=round_id)
    return fp.decode(res.total), fp.error_bound(k)
