"""The federated log-rank test: do two groups (e.g. two stages) survive differently?

At every death time t of the pooled data, with ``n(t)`` at risk and ``d(t)`` deaths of which
``d_1(t)`` in group 1 (``n_1(t)`` at risk), group 1's expected deaths under "no difference"
are ``d n_1 / n`` (hypergeometric), with variance ``d (n_1/n) (1 - n_1/n) (n - d)/(n - 1)``.
The statistic ``(sum (d_1 - E_1))^2 / sum V`` is chi-square with one degree of freedom.

Everything is a sum over sites of four count vectors at the union of event times,
``n_1, d_1, n, d``, so it is secure-aggregated like the Kaplan-Meier counts (with the same
caveat: the union publishes every site's death times).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from .km import event_times, site_counts
from .secure import secure_sum_counts

__all__ = ["LogRankResult", "federated_logrank"]


@dataclass(frozen=True)
class LogRankResult:
    statistic: float
    p_value: float
    observed_minus_expected: float
    variance: float


def federated_logrank(sites: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], *,
                      secure: bool = True, seed: int | None = 0) -> LogRankResult:
    """Log-rank test of group 1 vs group 0; each site gives ``(T, E, group)``, group in {0, 1}."""
    groups = []
    for k, (_, _, grp) in enumerate(sites):
        g = np.asarray(grp).ravel()
        if not np.isin(g, (0, 1)).all():
            raise ValueError(f"site {k}: group must be 0 or 1, got {np.unique(g)}")
        groups.append(g.astype(bool))
    union = np.unique(np.concatenate([event_times(t, e) for t, e, _ in sites]))
    vectors = {}
    for k, ((t, e, _), g) in enumerate(zip(sites, groups, strict=True)):
        t, e = np.asarray(t, dtype=np.float64), np.asarray(e)
        n1, d1 = site_counts(t[g], e[g], union)
        n, d = site_counts(t, e, union)
        vectors[k] = np.concatenate([n1, d1, n, d])
    total = (secure_sum_counts(vectors, seed=seed) if secure
             else np.sum(list(vectors.values()), axis=0))
    n1, d1, n, d = (total[i * union.size:(i + 1) * union.size].astype(np.float64)
                    for i in range(4))
    expected = d * n1 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(n > 1, d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1), 0.0)
    o_e = float((d1 - expected).sum())
    v = float(var.sum())
    stat = o_e**2 / v
    return LogRankResult(stat, float(chi2.sf(stat, 1)), o_e, v)
