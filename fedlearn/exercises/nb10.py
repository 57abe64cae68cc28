"""Self-checks for notebook 10, *Survival across cancer centres*.

* :func:`check_risk_sign`: a C-index function must rank the patient who dies first as the
  riskier one (lifelines expects predicted *survival times*; a Cox score is a *hazard*).
* :func:`check_km_bracket`: the guaranteed bracket ``[S_lo, S_hi]`` of the exact Kaplan-Meier
  curve from per-interval deaths and censorings alone (checked on random tied data against
  the exact curve, computed here at every event time).
* :func:`check_sensitivities`: the L1 and L2 sensitivity of the DP Kaplan-Meier release
  (cells) against releasing raw at-risk counts.
* :func:`check_newton_step`: the server's half of one federated Newton-Raphson step for the
  penalised stratified Cox model, from the summed gradients and Hessians.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..survival.cox import efron_terms
from ..survival.km import grid_kaplan_meier, interval_counts, kaplan_meier_from_counts, site_counts
from . import correct, say

__all__ = ["check_risk_sign", "check_km_bracket", "check_sensitivities", "check_newton_step"]


def _concordance(risk: np.ndarray, t: np.ndarray, e: np.ndarray) -> float:
    """Harrell's C by brute force (independent of lifelines): ties in risk count 1/2."""
    num = den = 0.0
    for i in range(len(t)):
        if not e[i]:
            continue
        for j in range(len(t)):
            if t[j] > t[i]:
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


def check_risk_sign(c_index_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], float],
                    seed: int = 0) -> None:
    """``c_index_fn(risk, time, event)``; higher ``risk`` must mean *shorter* survival."""
    rng = np.random.default_rng(seed)
    for trial in range(5):
        n = int(rng.integers(15, 40))
        risk = rng.normal(size=n)
        t = rng.exponential(np.exp(-risk * (1 + trial)))
        e = (rng.random(n) < 0.7).astype(int)
        got, want = float(c_index_fn(risk, t, e)), _concordance(risk, t, e)
        if math.isclose(got, 1 - want, abs_tol=1e-9) and not math.isclose(want, 0.5):
            raise AssertionError(say(
                en=f"got {got:.3f}, expected {want:.3f}: the sign is flipped. lifelines' "
                   "concordance_index wants predicted survival times (higher = lives longer); "
                   "pass -risk",
                zh=f"收到 {got:.3f}，应为 {want:.3f}：正负号反了。lifelines 的 concordance_index "
                   "需要的是预测的生存时间（越大 = 活得越久）；请传入 -risk"))
        assert math.isclose(got, want, abs_tol=1e-9), say(
            en=f"got C = {got:.4f}, expected {want:.4f} on a random cohort of {n}",
            zh=f"在一个 {n} 人的随机队列上，收到 C = {got:.4f}，应为 {want:.4f}")
    correct(say(en="higher risk ranks earlier deaths first; a C-index of 0.5 is chance",
                zh="风险越高，越早死亡的排得越靠前；一致性指数（C 指数）为 0.5 相当于随机猜测"))


def _exact_at_grid(t: np.ndarray, e: np.ndarray, grid: np.ndarray) -> np.ndarray:
    times = np.unique(t[e.astype(bool)])
    n, d = site_counts(t, e, times)
    return kaplan_meier_from_counts(times, n, d).at(grid)


def check_km_bracket(bracket: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                     seed: int = 0) -> None:
    """``bracket(deaths, censored) -> (s_lo, s_hi)`` from G + 1 interval cells (G grid points).

    Must equal the telescoping bounds and contain the exact curve on random data.
    """
    rng = np.random.default_rng(seed)
    for _ in range(20):
        n = int(rng.integers(10, 80))
        t = rng.integers(0, 40, n).astype(float)
        e = (rng.random(n) < 0.6).astype(int)
        grid = np.arange(5.0, 40.0, float(rng.integers(2, 8)))
        d, c = interval_counts(t, e, grid)
        lo, hi = (np.asarray(v, dtype=np.float64) for v in bracket(d, c))
        ref = grid_kaplan_meier(grid, d, c)
        exact = _exact_at_grid(t, e, grid)
        assert lo.shape == hi.shape == grid.shape, say(
            en=f"return one value per grid point ({grid.size}); drop the cell after the last "
               f"point (got shapes {lo.shape}, {hi.shape})",
            zh=f"请每个网格点返回一个值（共 {grid.size} 个）；去掉最后一个点之后的那个单元"
               f"（收到的形状是 {lo.shape} 和 {hi.shape}）")
        swapped = np.allclose(lo, ref.s_upper) and np.allclose(hi, ref.s_lower)
        if swapped and not np.allclose(ref.s_lower, ref.s_upper):
            raise AssertionError(say(
                en="lower and upper are swapped: censorings *before* the deaths shrink the risk "
                   "set, so 1 - D/(N - C) is the LOWER factor",
                zh="下界和上界颠倒了：发生在死亡*之前*的删失会缩小风险集，"
                   "所以 1 - D/(N - C) 才是*下界*的因子"))
        if not (np.all(lo <= exact + 1e-12) and np.all(exact <= hi + 1e-12)):
            raise AssertionError(say(
                en="the exact curve falls outside your bracket: at risk at the start of "
                   "interval i is N_i = sum_{j>=i} (D_j + C_j); the factors are 1 - D_i/N_i "
                   "(upper) and 1 - D_i/(N_i - C_i) (lower)",
                zh="精确曲线落到了你给出的区间之外：第 i 个区间开始时的风险集大小为 "
                   "N_i = sum_{j>=i} (D_j + C_j)；因子分别是 1 - D_i/N_i（上界）"
                   "和 1 - D_i/(N_i - C_i)（下界）"))
        for got, want, bound_en, bound_zh in ((lo, ref.s_lower, "lower", "下界"),
                                              (hi, ref.s_upper, "upper", "上界")):
            if not np.allclose(got, want, rtol=1e-7, atol=1e-12, equal_nan=True):
                raise AssertionError(say(
                    en=f"{bound_en} bound: expected {np.round(want, 4)}, got {np.round(got, 4)}; "
                       "multiply the factors of the intervals up to each grid point",
                    zh=f"{bound_zh}不对：应为 {np.round(want, 4)}，收到的却是 {np.round(got, 4)}；"
                       "请把直到每个网格点为止各区间的因子连乘起来"))
    correct(say(
        en="the released counts alone bound the exact curve; the grid's price is their gap",
        zh="仅凭发布的计数就能把精确曲线夹在中间；网格的代价就是上下界之间的差距"))


def check_sensitivities(answer: Callable[[int], tuple[float, float, float]]) -> None:
    """``answer(G) -> (cells_l1, at_risk_l1, at_risk_l2)`` for a grid of G intervals."""
    for g in (1, 4, 20, 100):
        cells, l1, l2 = (float(v) for v in answer(g))
        if math.isclose(cells, 2.0):
            raise AssertionError(say(
                en="a patient is either a death or a censoring, in one interval: one cell of "
                   "the 2(G+1) changes, by 1",
                zh="一名患者要么是一次死亡，要么是一次删失，且只落在一个区间里："
                   "2(G+1) 个单元中只有一个改变，改变量为 1"))
        assert math.isclose(cells, 1.0), say(
            en=f"cells: got {cells}, expected 1 (one cell changes by 1)",
            zh=f"单元计数的敏感度：收到 {cells}，应为 1（只有一个单元改变，改变量为 1）")
        if math.isclose(l1, math.sqrt(g)) and math.isclose(l2, g) and g > 1:
            raise AssertionError(say(
                en="L1 and L2 are swapped: G changes of 1 sum to G in L1 and to sqrt(G) in L2",
                zh="L1 和 L2 颠倒了：G 个大小为 1 的变化，在 L1 下总和为 G，在 L2 下为 sqrt(G)"))
        assert math.isclose(l1, g), say(
            en=f"at-risk L1 for G = {g}: got {l1}; a patient followed past the last grid point "
               "is at risk in every interval",
            zh=f"G = {g} 时风险集计数的 L1 敏感度：收到 {l1}；随访超过最后一个网格点的患者"
               "在每个区间里都属于风险集")
        assert math.isclose(l2, math.sqrt(g)), say(
            en=f"at-risk L2 for G = {g}: got {l2}",
            zh=f"G = {g} 时风险集计数的 L2 敏感度：收到的却是 {l2}")
    correct(say(
        en="release the cells (sensitivity 1) and derive at-risk counts by a cumulative sum",
        zh="发布各单元计数（敏感度为 1），再用累积和推出风险集的计数"))


NewtonStep = Callable[[np.ndarray, float, np.ndarray, np.ndarray, int, float], np.ndarray]


def check_newton_step(step: NewtonStep, seed: int = 0) -> None:
    """``step(beta, loglik_sum, grad_sum, hess_sum, n, penalizer) -> new beta``.

    The sums are over sites of the unpenalised Efron terms; the server adds lifelines' ridge
    ``n * penalizer / 2 * ||beta||^2`` and takes a full Newton step.
    """
    rng = np.random.default_rng(seed)
    for _ in range(5):
        p, sites = int(rng.integers(2, 5)), int(rng.integers(2, 4))
        beta = rng.normal(scale=0.3, size=p)
        parts = []
        for _ in range(sites):
            m = int(rng.integers(10, 30))
            parts.append(efron_terms(rng.normal(size=(m, p)), rng.integers(1, 20, m),
                                     (rng.random(m) < 0.6).astype(int), beta))
        ll = sum(q[0] for q in parts)
        g = sum(q[1] for q in parts)
        h = sum(q[2] for q in parts)
        n = int(rng.integers(30, 90))
        lam = float(rng.choice([0.01, 0.1]))
        want = beta + np.linalg.solve(-(h - n * lam * np.eye(p)), g - n * lam * beta)
        got = np.asarray(step(beta.copy(), ll, g.copy(), h.copy(), n, lam), dtype=np.float64)
        no_pen = beta + np.linalg.solve(-h, g)
        if np.allclose(got, no_pen, atol=1e-8):
            raise AssertionError(say(
                en="the ridge penalty is missing: subtract n*penalizer*beta from the gradient "
                   "and n*penalizer*I from the Hessian",
                zh="缺少岭惩罚项：请从梯度中减去 n*penalizer*beta，从 Hessian 中减去 "
                   "n*penalizer*I"))
        if np.allclose(got, beta - np.linalg.solve(-(h - n * lam * np.eye(p)),
                                                   g - n * lam * beta), atol=1e-8):
            raise AssertionError(say(
                en="the step goes downhill: the Hessian of a concave log-likelihood is negative "
                   "definite, so beta + (-H)^-1 g",
                zh="这一步在往下坡走：凹对数似然的 Hessian 是负定的，"
                   "所以应为 beta + (-H)^-1 g"))
        if np.allclose(got, beta + np.linalg.solve(-(h - lam * np.eye(p)), g - lam * beta),
                       atol=1e-8):
            raise AssertionError(say(
                en="lifelines scales the penalty by the number of patients n: "
                   "n * penalizer / 2 * ||beta||^2",
                zh="`lifelines` 会按患者人数 n 缩放惩罚项：n * penalizer / 2 * ||beta||^2"))
        if not np.allclose(got, want, rtol=1e-8, atol=1e-10, equal_nan=True):
            raise AssertionError(say(
                en=f"new beta {np.round(got, 6)}, expected {np.round(want, 6)}: "
                   "new beta = beta + (-(H - n lam I))^-1 (g - n lam beta)",
                zh=f"新的 beta 为 {np.round(got, 6)}，应为 {np.round(want, 6)}："
                   "新 beta = beta + (-(H - n lam I))^-1 (g - n lam beta)"))
    correct(say(
        en="the server's step needs only the sums: no site's gradient, no patient row",
        zh="服务器这一步只需要各项之和：不需要任何一个站点的梯度，也不需要任何一行患者数据"))
