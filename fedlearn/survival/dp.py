"""A differentially private Kaplan-Meier curve, noised inside the secure sum.

What is released: for a public grid ``g_1 < ... < g_G``, the pooled deaths ``D_i`` and
censorings ``C_i`` of every interval (:func:`fedlearn.survival.km.interval_counts`): 2 (G + 1)
integers. Each patient falls in exactly one cell, so adding or removing one patient changes
one cell by one: L1 (and L2) sensitivity 1. The at-risk counts are *not* released; they are
derived by a reverse cumulative sum, which is post-processing and costs no privacy. Releasing
raw at-risk counts instead would count each patient in every interval up to its time: L1
sensitivity up to G, L2 sensitivity sqrt(G), so G times (or sqrt(G)) more noise for the same ε.

Mechanism: the discrete Laplace (two-sided geometric) mechanism, ``P(z) ∝ exp(-ε |z|)`` per
cell, which is ε-differentially private (δ = 0) for sensitivity-1 integer counts. The noise
is *distributed*: each of K sites adds ``X - Y`` with ``X, Y ~ NegBin(1/K, 1 - e^-ε)``
(the Pólya decomposition: K such shares sum to exactly one discrete Laplace draw), then the
noisy integer vectors go through secure aggregation. No party sees a noise-free total, and
the server learns only the noisy sum. Caveat: if a site drops out (or does not add its
share) the total carries less noise than promised; an honest-majority assumption.

Post-processing (free): negative cells are set to 0, the actuarial hazards
``D_i / (N_i - C_i/2)`` of :func:`fedlearn.survival.km.grid_kaplan_meier` are clipped to
[0, 1], and ``S = cumprod(1 - h)`` is therefore non-increasing and in [0, 1].
The function returns its ε with the curve, so a release ledger can record it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .km import SiteData, _check_grid, interval_counts
from .secure import secure_sum_counts

__all__ = ["DPKaplanMeier", "discrete_laplace_share", "dp_kaplan_meier"]


@dataclass(frozen=True)
class DPKaplanMeier:
    """A released DP curve: grid, survival at each grid point, the noisy cells, and ε."""

    grid: np.ndarray
    survival: np.ndarray
    noisy_deaths: np.ndarray
    noisy_censored: np.ndarray
    epsilon: float
    delta: float = 0.0
    mechanism: str = "distributed discrete Laplace, sensitivity 1"


def discrete_laplace_share(size: int, epsilon: float, num_shares: int,
                           rng: np.random.Generator) -> np.ndarray:
    """One site's noise share: the sum of ``num_shares`` shares is discrete Laplace(ε)."""
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if num_shares < 1:
        raise ValueError(f"num_shares must be >= 1, got {num_shares}")
    p = 1.0 - np.exp(-epsilon)  # success probability; failures ~ geometric when r = 1
    r = 1.0 / num_shares
    return (rng.negative_binomial(r, p, size) - rng.negative_binomial(r, p, size)).astype(np.int64)


def dp_kaplan_meier(sites: Sequence[SiteData], grid: np.ndarray, epsilon: float, *,
                    seed: int, secure: bool = True, bits: int = 32) -> DPKaplanMeier:
    """ε-DP Kaplan-Meier on a public ``grid`` (module docstring); ``seed`` drives the noise.

    Protects every patient (add/remove one) with pure ε-DP against the server and every
    reader of the curve, provided every site adds its noise share.
    """
    g = _check_grid(grid)
    k = len(sites)
    rng = np.random.default_rng(seed)
    noisy = {}
    for cid, (t, e) in enumerate(sites):
        d, c = interval_counts(t, e, g)
        cells = np.concatenate([d, c])
        noisy[cid] = cells + discrete_laplace_share(cells.size, epsilon, k, rng)
    if secure and k >= 2:
        total = secure_sum_counts(noisy, bits=bits, seed=seed)
    else:
        total = np.sum(list(noisy.values()), axis=0)
    d_hat = np.maximum(total[:g.size + 1], 0).astype(np.float64)
    c_hat = np.maximum(total[g.size + 1:], 0).astype(np.float64)
    n_hat = np.cumsum((d_hat + c_hat)[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = n_hat - c_hat / 2  # the actuarial estimate, as grid_kaplan_meier
        h = np.where(n_eff > 0, d_hat / n_eff, 0.0)
    surv = np.cumprod(1.0 - np.clip(h, 0.0, 1.0))[:-1]
    return DPKaplanMeier(g, surv, total[:g.size + 1], total[g.size + 1:], float(epsilon))
