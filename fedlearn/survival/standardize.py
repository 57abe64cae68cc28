"""Federated standardisation: the pooled mean and standard deviation from three sums per site.

Newton-Raphson (and lifelines, whose answer we check against) fits the Cox model on
z-scored covariates. The pooled mean and (unbiased) standard deviation of every covariate
need only ``n_k``, ``sum_i x_ik`` and ``sum_i x_ik^2`` from each site k:

    mean = S1 / n,   var = (S2 - n mean^2) / (n - 1),   n = sum n_k, S1 = sum S1_k, ...

These are secure-aggregated (:func:`fedlearn.survival.secure.secure_sum_floats`), so the
server learns the pooled moments only, not any site's; every site then z-scores its own rows
with the pooled statistics. The fixed-point error on the sums is at most
``FixedPoint.error_bound(K)`` (returned), far below float32 resolution of the covariates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .secure import secure_sum_floats

__all__ = ["PooledMoments", "federated_moments"]


@dataclass(frozen=True)
class PooledMoments:
    """Pooled n, mean and std (ddof=1, as pandas and lifelines), and the sums' error bound."""

    n: int
    mean: np.ndarray
    std: np.ndarray
    sum_error_bound: float = 0.0

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Z-score rows with the pooled statistics (constant columns are only centred)."""
        return (np.asarray(x, dtype=np.float64) - self.mean) / np.where(self.std > 0, self.std, 1)


def federated_moments(xs: Sequence[np.ndarray], *, secure: bool = True, clip: float = 2.0**24,
                      seed: int | None = 0) -> PooledMoments:
    """Pooled moments of the sites' covariate matrices ``xs`` from ``[n_k, S1_k, S2_k]``.

    ``clip`` is the public bound on every sum (a site with 300 patients aged 90 has
    ``S2 = 2.4e6 < 2^24``); a larger sum is refused rather than wrapped.
    """
    vectors = {}
    for k, x in enumerate(xs):
        a = np.asarray(x, dtype=np.float64)
        vectors[k] = np.concatenate([[a.shape[0]], a.sum(0), (a * a).sum(0)])
    if secure:
        total, bound = secure_sum_floats(vectors, clip=clip, seed=seed)
    else:
        total, bound = np.sum(list(vectors.values()), axis=0), 0.0
    n = int(round(total[0]))
    p = (total.size - 1) // 2
    mean = total[1:1 + p] / n
    var = (total[1 + p:] - n * mean**2) / (n - 1)
    return PooledMoments(n, mean, np.sqrt(np.maximum(var, 0.0)), bound)
