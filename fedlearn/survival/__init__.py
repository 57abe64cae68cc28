"""Federated survival analysis: Kaplan-Meier, log-rank and Cox models across hospitals.

Every statistic here is a sum over sites, secure-aggregated through the real protocol
(:mod:`.secure`); nothing in this package sends a patient row. One concept per module:

* :mod:`.secure` - integer and fixed-point secure sums with range checks (no silent wrap);
* :mod:`.km` - Kaplan-Meier at the union of event times (exact) or on a public grid
  (bounded error), Greenwood bands;
* :mod:`.logrank` - the two-group log-rank test;
* :mod:`.dp` - an ε-DP Kaplan-Meier curve (distributed discrete Laplace, sensitivity 1);
* :mod:`.cox` - the Cox partial likelihood: a torch loss and Efron's ties for Newton;
* :mod:`.standardize` - pooled mean and std from per-site counts, sums and sums of squares;
* :mod:`.newton` - Newton-Raphson for the site-stratified Cox model;
* :mod:`.metrics` - the C-index (through lifelines, imported only when called).

Import it explicitly (``import fedlearn.survival as sv``); ``import fedlearn`` does not load
it, nor lifelines, the reference implementation the tests compare against.
"""

from .cox import cox_loss, efron_terms
from .dp import DPKaplanMeier, discrete_laplace_share, dp_kaplan_meier
from .km import (
    GridKaplanMeier,
    KaplanMeier,
    event_times,
    federated_grid_kaplan_meier,
    federated_kaplan_meier,
    grid_kaplan_meier,
    interval_counts,
    kaplan_meier_from_counts,
    site_counts,
)
from .logrank import LogRankResult, federated_logrank
from .metrics import c_index, survival_metrics
from .newton import CoxNewtonResult, federated_cox_newton
from .secure import SumRangeError, secure_sum_counts, secure_sum_floats
from .standardize import PooledMoments, federated_moments

__all__ = [
    "cox_loss", "efron_terms",
    "DPKaplanMeier", "discrete_laplace_share", "dp_kaplan_meier",
    "GridKaplanMeier", "KaplanMeier", "event_times", "federated_grid_kaplan_meier",
    "federated_kaplan_meier", "grid_kaplan_meier", "interval_counts",
    "kaplan_meier_from_counts", "site_counts",
    "LogRankResult", "federated_logrank",
    "c_index", "survival_metrics",
    "CoxNewtonResult", "federated_cox_newton",
    "SumRangeError", "secure_sum_counts", "secure_sum_floats",
    "PooledMoments", "federated_moments",
]
