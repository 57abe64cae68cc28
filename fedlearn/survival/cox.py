"""Cox proportional hazards: the partial likelihood, as a torch loss and with Efron's ties.

The Cox model says patient i's hazard is ``h_0(t) exp(x_i . beta)``: the baseline ``h_0`` is
never estimated, only the *order* of deaths matters. At each death time ``t`` with risk set
``R(t) = {j : T_j >= t}``, the probability that the patient who died is the one who did is
``exp(s_i) / sum_{j in R(t)} exp(s_j)`` (``s = x . beta``, the risk score). Hence the negative
log partial likelihood

    -l(beta) = sum_{i : E_i = 1} [ log sum_{j in R(T_i)} exp(s_j) - s_i ].

Two implementations, for two uses:

* :func:`cox_loss` (torch, differentiable): for minibatch SGD (FLamby's Fed-TCGA-BRCA loss:
  the batch is the whole world, ties are broken by order, the sum is divided by the batch
  size so that it averages over patients like every other loss in the course).
* :func:`efron_terms` (numpy): log-likelihood, gradient and Hessian of one stratum with
  Efron's handling of tied death times (lifelines' default), for Newton-Raphson. With ``d``
  deaths tied at ``t`` and ``S_D`` their summed ``exp(s)``, Efron replaces the ``d`` identical
  denominators by ``S_R - (l/d) S_D``, l = 0..d-1: the tied patients leave the risk set
  gradually instead of all at once (Breslow) or in some arbitrary order.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["cox_loss", "efron_terms"]


def cox_loss(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative partial log-likelihood of a batch; ``target[:, 0] = E``, ``[:, 1] = T``.

    Patients are sorted by decreasing time, so the risk set of the i-th is the prefix
    ``0..i`` and its log-denominator is a running ``logcumsumexp`` (stable, O(n log n)).
    Tied times are ordered by their position after a stable sort (FLamby does the same).
    """
    s = scores.reshape(-1)
    if target.ndim != 2 or target.shape[1] != 2 or target.shape[0] != s.shape[0]:
        raise ValueError(f"target must be (n, 2) = (E, T) for n = {s.shape[0]} scores, "
                         f"got shape {tuple(target.shape)}")
    order = torch.argsort(target[:, 1], descending=True, stable=True)
    s, e = s[order], target[order, 0]
    log_denominator = torch.logcumsumexp(s, dim=0)
    return ((log_denominator - s) * e).sum() / s.shape[0]


def efron_terms(x: np.ndarray, time: np.ndarray, event: np.ndarray,
                beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``(loglik, gradient, Hessian)`` of one stratum's Efron partial likelihood at ``beta``.

    Everything a site sends in federated Newton-Raphson: because strata have separate risk
    sets, the stratified log-likelihood is the plain sum of these over sites.
    """
    x = np.asarray(x, dtype=np.float64)
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event).astype(bool)
    p = x.shape[1]
    s = x @ beta
    shift = s.max() if s.size else 0.0
    w = np.exp(s - shift)  # the shift cancels in every ratio below
    ll, grad, hess = 0.0, np.zeros(p), np.zeros((p, p))
    order = np.argsort(-time, kind="stable")
    x, time, event, s, w = x[order], time[order], event[order], s[order], w[order]
    # running sums over the risk set {T >= t}, growing as t decreases
    r0, r1, r2 = 0.0, np.zeros(p), np.zeros((p, p))
    i, n = 0, len(time)
    while i < n:
        j = i
        while j < n and time[j] == time[i]:
            j += 1
        blk = slice(i, j)
        wx = w[blk, None] * x[blk]
        r0 += w[blk].sum()
        r1 += wx.sum(0)
        r2 += x[blk].T @ wx
        dead = event[blk]
        d = int(dead.sum())
        if d:
            xd, wd = x[blk][dead], w[blk][dead]
            t0, t1, t2 = wd.sum(), (wd[:, None] * xd).sum(0), xd.T @ (wd[:, None] * xd)
            ll += s[blk][dead].sum()
            grad += xd.sum(0)
            for lth in range(d):
                frac = lth / d
                a0 = r0 - frac * t0
                a1 = r1 - frac * t1
                a2 = r2 - frac * t2
                mean = a1 / a0
                ll -= np.log(a0) + shift
                grad -= mean
                hess -= a2 / a0 - np.outer(mean, mean)
        i = j
    return float(ll), grad, hess
