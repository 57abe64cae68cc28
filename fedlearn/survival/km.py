"""Federated Kaplan-Meier: the survival curve from summed counts, exact or on a public grid.

The Kaplan-Meier estimator needs, at every distinct event time ``t``, only two numbers:
``n(t)`` patients still at risk (``T >= t``) and ``d(t)`` deaths at ``t``:

    S(t) = prod_{t_j <= t} (1 - d_j / n_j).

Both are sums over hospitals, so each site sends its own counts and the server (through
secure aggregation, :mod:`fedlearn.survival.secure`) learns only the totals. Two variants:

* **At the union of event times** (:func:`federated_kaplan_meier`): equal to the pooled
  estimator exactly (the tests check it against lifelines' ``KaplanMeierFitter``). The price:
  to agree on the union, every site publishes its distinct event times, i.e. *the day each of
  its patients died*. Secure aggregation hides the counts, not the time axis.
* **On a public grid** ``g_1 < ... < g_G`` fixed in advance (:func:`grid_kaplan_meier`): each
  site sends, per interval ``I_i = (g_{i-1}, g_i]`` (``I_1`` starts at -inf, ``I_{G+1}`` is
  everything after ``g_G``), its deaths ``D_i`` and censorings ``C_i``. At-risk counts follow
  by a reverse cumulative sum, ``N_i = sum_{j >= i} (D_j + C_j)``. Within an interval the exact
  factor ``prod (1 - d_k/n_k)`` telescopes: it is ``1 - D_i/N_i`` if every censoring comes
  after every death and ``1 - D_i/(N_i - C_i)`` if every censoring comes first, and lies
  between the two otherwise. Hence, at every grid point,

      S_lo(g_j) = prod_{i<=j} (1 - D_i/(N_i - C_i))  <=  S(g_j)  <=  prod_{i<=j} (1 - D_i/N_i)
      = S_hi(g_j),

  and our estimate (the actuarial one, ``N_i - C_i/2`` at risk) is within
  ``S_hi(g_j) - S_lo(g_j)`` of the exact curve: a bound computed from the released counts
  alone. The grid reveals nothing if it is fixed before seeing data (e.g. every 6 months);
  a grid built from the data (quantiles of the death times) reveals those times.

Greenwood's variance ``Var S(t) = S(t)^2 sum_{t_j <= t} d_j / (n_j (n_j - d_j))`` needs the
same counts; confidence bands use the log(-log) ("exponential Greenwood") transform, as
lifelines does, so they stay inside [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from .secure import secure_sum_counts

__all__ = ["KaplanMeier", "GridKaplanMeier", "kaplan_meier_from_counts", "site_counts",
           "event_times", "federated_kaplan_meier", "interval_counts", "grid_kaplan_meier",
           "federated_grid_kaplan_meier", "greenwood_bands"]

SiteData = tuple[np.ndarray, np.ndarray]  # (times T, events E) of one site


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier curve at its event times, with Greenwood variance and bands.

    ``greenwood`` is ``sum d/(n(n-d))`` (the variance of log S); ``lower``/``upper`` the
    ``1 - alpha`` exponential-Greenwood band.
    """

    times: np.ndarray
    at_risk: np.ndarray
    deaths: np.ndarray
    survival: np.ndarray
    greenwood: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def at(self, t: np.ndarray | float) -> np.ndarray:
        """S at arbitrary times (right-continuous step function; 1 before the first event)."""
        idx = np.searchsorted(self.times, np.asarray(t, dtype=np.float64), side="right")
        return np.concatenate([[1.0], self.survival])[idx]


@dataclass(frozen=True)
class GridKaplanMeier:
    """Kaplan-Meier on a grid: estimate and the guaranteed bracket of the exact curve.

    ``survival`` (actuarial) and the exact curve both lie in ``[s_lower, s_upper]`` at every
    grid point, so ``error_bound = s_upper - s_lower`` bounds ``|survival - exact|``.
    """

    grid: np.ndarray
    deaths: np.ndarray
    censored: np.ndarray
    at_risk: np.ndarray
    survival: np.ndarray
    s_lower: np.ndarray
    s_upper: np.ndarray

    @property
    def error_bound(self) -> np.ndarray:
        return self.s_upper - self.s_lower


def _check(times: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times, dtype=np.float64).ravel()
    e = np.asarray(events).ravel()
    if t.shape != e.shape:
        raise ValueError(f"times and events differ in length: {t.size} vs {e.size}")
    if not np.all(np.isfinite(t)) or (t < 0).any():
        raise ValueError("times must be finite and >= 0")
    if not np.isin(e, (0, 1)).all():
        raise ValueError(f"events must be 0 (censored) or 1 (death), got {np.unique(e)}")
    return t, e.astype(bool)


def greenwood_bands(survival: np.ndarray, greenwood: np.ndarray,
                    alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Exponential-Greenwood ``1 - alpha`` band: ``exp(-exp(log(-log S) -/+ z sqrt(V)/log S))``."""
    z = norm.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.log(survival)
        lo = np.exp(-np.exp(np.log(-v) - z * np.sqrt(greenwood) / v))
        hi = np.exp(-np.exp(np.log(-v) + z * np.sqrt(greenwood) / v))
    return np.nan_to_num(lo, nan=1.0), np.nan_to_num(hi, nan=1.0)


def kaplan_meier_from_counts(times: np.ndarray, at_risk: np.ndarray, deaths: np.ndarray,
                             alpha: float = 0.05) -> KaplanMeier:
    """The product-limit curve and Greenwood band from (pooled) counts at event times."""
    n = np.asarray(at_risk, dtype=np.float64)
    d = np.asarray(deaths, dtype=np.float64)
    if (d > n).any() or (n < 0).any() or (d < 0).any():
        raise ValueError("need 0 <= deaths <= at_risk at every time")
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n > 0, 1.0 - d / n, 1.0)
        term = np.where(n > d, d / (n * (n - d)), 0.0)  # lifelines sets the n = d term to 0
    surv = np.cumprod(factor)
    gw = np.cumsum(term)
    lo, hi = greenwood_bands(surv, gw, alpha)
    return KaplanMeier(np.asarray(times, dtype=np.float64), n.astype(np.int64),
                       d.astype(np.int64), surv, gw, lo, hi)


def event_times(times: np.ndarray, events: np.ndarray) -> np.ndarray:
    """A site's distinct death times: what it must *publish* to build the union."""
    t, e = _check(times, events)
    return np.unique(t[e])


def site_counts(times: np.ndarray, events: np.ndarray,
                at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One site's ``(at_risk, deaths)`` at times ``at``: ``#(T >= t)``, ``#(T = t, E = 1)``."""
    t, e = _check(times, events)
    at = np.asarray(at, dtype=np.float64)
    ts = np.sort(t)
    at_risk = ts.size - np.searchsorted(ts, at, side="left")
    dt = np.sort(t[e])
    deaths = np.searchsorted(dt, at, side="right") - np.searchsorted(dt, at, side="left")
    return at_risk.astype(np.int64), deaths.astype(np.int64)


def _sum(vectors: dict[int, np.ndarray], secure: bool, seed: int | None) -> np.ndarray:
    if secure:
        return secure_sum_counts(vectors, seed=seed)
    return np.sum(list(vectors.values()), axis=0)


def federated_kaplan_meier(sites: Sequence[SiteData], *, secure: bool = True,
                           seed: int | None = 0, alpha: float = 0.05) -> KaplanMeier:
    """Pooled Kaplan-Meier at the union of event times from per-site counts.

    Each site publishes its event times (the union is public), then sends ``[n(t), d(t)]``
    for every ``t`` in the union; with ``secure=True`` the counts are summed by secure
    aggregation. The result equals the pooled estimator exactly.
    """
    union = np.unique(np.concatenate([event_times(t, e) for t, e in sites]))
    vectors = {k: np.concatenate(site_counts(t, e, union)) for k, (t, e) in enumerate(sites)}
    total = _sum(vectors, secure, seed)
    return kaplan_meier_from_counts(union, total[:union.size], total[union.size:], alpha)


def _check_grid(grid: np.ndarray) -> np.ndarray:
    g = np.asarray(grid, dtype=np.float64).ravel()
    if g.size == 0 or not np.all(np.isfinite(g)) or (np.diff(g) <= 0).any():
        raise ValueError("grid must be a non-empty, finite, strictly increasing sequence")
    return g


def interval_counts(times: np.ndarray, events: np.ndarray,
                    grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One site's deaths and censorings per interval ``(g_{i-1}, g_i]``, G + 1 cells each.

    Each patient falls in exactly one of the 2 (G + 1) cells, which is why one patient
    changes the released vector by 1 in one place (sensitivity 1, :mod:`.dp`).
    """
    t, e = _check(times, events)
    g = _check_grid(grid)
    cell = np.searchsorted(g, t, side="left")  # t <= g_1 -> 0, ..., t > g_G -> G
    deaths = np.bincount(cell[e], minlength=g.size + 1)
    censored = np.bincount(cell[~e], minlength=g.size + 1)
    return deaths.astype(np.int64), censored.astype(np.int64)


def grid_kaplan_meier(grid: np.ndarray, deaths: np.ndarray,
                      censored: np.ndarray) -> GridKaplanMeier:
    """Actuarial curve and exact-curve bracket from pooled per-interval counts (module doc)."""
    g = _check_grid(grid)
    d = np.asarray(deaths, dtype=np.float64)
    c = np.asarray(censored, dtype=np.float64)
    if d.shape != (g.size + 1,) or c.shape != (g.size + 1,):
        raise ValueError(f"need G + 1 = {g.size + 1} cells of deaths and censorings, got "
                         f"{d.shape} and {c.shape}")
    n = np.cumsum((d + c)[::-1])[::-1]

    def prod(at_risk: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.where(at_risk > 0, d / at_risk, 0.0)
        return np.cumprod(1.0 - np.clip(h, 0.0, 1.0))[:-1]  # drop the cell after g_G

    return GridKaplanMeier(g, d[:-1].astype(np.int64), c[:-1].astype(np.int64),
                           n[:-1].astype(np.int64), prod(n - c / 2), prod(n - c), prod(n))


def federated_grid_kaplan_meier(sites: Sequence[SiteData], grid: np.ndarray, *,
                                secure: bool = True, seed: int | None = 0) -> GridKaplanMeier:
    """Grid Kaplan-Meier from each site's per-interval deaths and censorings, summed."""
    g = _check_grid(grid)
    vectors = {k: np.concatenate(interval_counts(t, e, g)) for k, (t, e) in enumerate(sites)}
    total = _sum(vectors, secure, seed)
    return grid_kaplan_meier(g, total[:g.size + 1], total[g.size + 1:])
