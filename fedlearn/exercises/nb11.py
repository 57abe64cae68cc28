"""Self-checks for notebook 11, *Can the hospitals trust each other?*

The function checkers draw fresh cases and compare the learner's answer with an independent
reference (:mod:`fedlearn.aggregators.robust`), so passing means the answer is right in
general, not only on the notebook's example.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..aggregators.robust import Krum, NormBound, RobustRule, krum_scores, trimmed_mean
from . import correct, say

__all__ = ["check_trimmed_breakdown", "check_krum", "check_defended_run"]


def check_trimmed_breakdown(breakdown: Callable[[int, float], int], seed: int = 0) -> None:
    """``breakdown(n, beta)``: the fewest arbitrary hospitals that can move
    ``TrimmedMean(beta)`` over ``n`` hospitals arbitrarily far."""
    rng = np.random.default_rng(seed)
    cases = [(8, 0.25), (10, 0.1), (5, 0.0), (7, 0.3), (9, 0.49)]
    cases += [(int(rng.integers(3, 40)), float(rng.uniform(0, 0.49))) for _ in range(30)]
    for n, beta in cases:
        want = math.floor(beta * n) + 1
        got = breakdown(n, beta)
        if got == want:
            # and the claim is true: `want` attackers do break it, `want - 1` do not
            x = torch.zeros(n, 1, dtype=torch.float64)
            x[:want] = 1e9
            assert float(trimmed_mean(x, beta)) > 1e6
            x[:want] = 0
            x[:want - 1] = 1e9
            assert float(trimmed_mean(x, beta)) == 0.0
            continue
        if got == want - 1:
            raise AssertionError(say(
                en=f"n={n}, beta={beta:.3f}: {got} attackers can all be trimmed away (floor(beta "
                   "n) values are cut at EACH end); one more is needed to survive the cut",
                zh=f"n={n}、beta={beta:.3f}：{got} 个攻击者会全部被截掉（*每一*端各截去 "
                   "floor(beta n) 个值）；还需要再多一个才能躲过截尾"))
        if got == math.ceil(beta * n) + 1 and got != want:
            raise AssertionError(say(
                en=f"n={n}, beta={beta:.3f}: the cut is floor(beta n), as in "
                   "scipy.stats.trim_mean, not ceil",
                zh=f"n={n}、beta={beta:.3f}：截去的个数是 floor(beta n)，与 "
                   "scipy.stats.trim_mean 一样，而不是 ceil"))
        raise AssertionError(say(
            en=f"n={n}, beta={beta:.3f}: got {got}. Count how many values TrimmedMean drops at "
               "the top end",
            zh=f"n={n}、beta={beta:.3f}：收到 {got}。请数一数 TrimmedMean（截尾均值）"
               "在顶端去掉了多少个值"))
    correct(say(
        en=f"{len(cases)} (n, beta) pairs: TrimmedMean breaks at floor(beta n) + 1 attackers",
        zh=f"{len(cases)} 组 (n, beta)：截尾均值在 floor(beta n) + 1 个攻击者时失效"))


def check_krum(krum: Callable[[torch.Tensor, int], int], trials: int = 40,
               seed: int = 0) -> None:
    """``krum(x, f)``: the row index of ``x`` (``n x d``) that Krum selects."""
    gen = torch.Generator().manual_seed(seed)
    for t in range(trials):
        n = 4 + t % 7
        f = t % max(1, (n - 1) // 2)
        f = min(f, (n - 3) // 2)
        x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
        x[: f] += 5 * torch.randn(f, 3, generator=gen, dtype=torch.float64)  # outliers
        scores = krum_scores(x, f)
        want = int(torch.argmin(scores))
        got = int(krum(x.clone(), f))
        if math.isclose(float(scores[got]), float(scores[want]), rel_tol=1e-9):
            continue
        if got == int(torch.argmin(x.norm(dim=1))):
            raise AssertionError(say(
                en="that is the smallest update, not Krum's choice: score each update by its "
                   "squared distances to its NEIGHBOURS",
                zh="这是最小的那个更新，不是 Krum 的选择：请用每个更新到它的*近邻*的距离平方"
                   "来给它打分"))
        d2 = torch.cdist(x, x).pow(2)
        for k in (n - f - 1, n - f, n - 1):
            if got == int(torch.argmin(torch.sort(d2, dim=1).values[:, :k].sum(1))) or \
                    got == int(torch.argmin(torch.sort(d2, dim=1).values[:, 1:k + 1].sum(1))):
                raise AssertionError(say(
                    en=f"n={n}, f={f}: sum the distances to the n - f - 2 = {n - f - 2} nearest "
                       "OTHER updates (not the update itself, not n - f)",
                    zh=f"n={n}、f={f}：请对最近的 n - f - 2 = {n - f - 2} 个*其他*更新的距离求和"
                       "（不包括该更新自身，也不是 n - f 个）"))
        raise AssertionError(say(
            en=f"n={n}, f={f}: selected row {got}, Krum selects {want}. Score of i: sum of the "
               "n - f - 2 smallest ||x_i - x_j||^2, j != i",
            zh=f"n={n}、f={f}：你选了第 {got} 行，Krum 选的是第 {want} 行。i 的得分："
               "最小的 n - f - 2 个 ||x_i - x_j||^2（j != i）之和"))
    correct(say(
        en=f"your Krum picked the same update as the reference in {trials} random rounds",
        zh=f"在 {trials} 个随机轮次中，你的 Krum 与参考实现选中了同一个更新"))


def check_defended_run(strategy: object, pooled_auroc: float, fedavg_auroc: float) -> None:
    """A run under the two sign-flipping hospitals: a robust ``strategy`` that keeps the
    pooled AUROC >= 0.8 where FedAvg (``fedavg_auroc``) collapsed."""
    agg = getattr(strategy, "aggregator", None)
    robust = isinstance(agg, RobustRule) or (isinstance(agg, NormBound)
                                             and agg.where == "server")
    if not robust:
        raise AssertionError(say(
            en=f"the strategy aggregates with {agg!r}: set strategy.aggregator to a robust rule "
               "(Median(), TrimmedMean(0.25), Krum(f=2), ...) or NormBound(..., "
               "where='server'); client-side bounding is skipped by a malicious hospital",
            zh=f"该策略用 {agg!r} 聚合：请把 strategy.aggregator 设为一个鲁棒聚合规则"
               "（Median()、TrimmedMean(0.25)、Krum(f=2) 等）或 NormBound(..., "
               "where='server')；恶意医院会直接跳过客户端一侧的范数约束"))
    if not fedavg_auroc < 0.7:
        raise AssertionError(say(
            en=f"fedavg_auroc={fedavg_auroc:.3f}: pass the AUROC of plain FedAvg under the SAME "
               "attack (it should have collapsed to about 0.5)",
            zh=f"fedavg_auroc={fedavg_auroc:.3f}：请传入普通 FedAvg 在*同一*攻击下的受试者"
               "工作特征曲线下面积（AUROC）（它应当已经跌到 0.5 左右）"))
    if not pooled_auroc >= 0.8:
        hint = (say(en=" (Krum with f=2 keeps ONE update: try Median or TrimmedMean)",
                    zh="（f=2 的 Krum 只保留*一个*更新：试试 Median()（中位数）"
                       "或 TrimmedMean()（截尾均值））")
                if isinstance(agg, Krum) and agg.m == 1 else say(en="", zh=""))
        raise AssertionError(say(
            en=f"pooled AUROC {pooled_auroc:.3f} < 0.8 under attack{hint.en}",
            zh=f"在攻击下，合并的受试者工作特征曲线下面积（AUROC）为 {pooled_auroc:.3f} < 0.8"
               f"{hint.zh}"))
    correct(say(
        en=f"{agg!r} kept the pooled AUROC at {pooled_auroc:.3f} where FedAvg fell to "
           f"{fedavg_auroc:.3f}",
        zh=f"{agg!r} 把合并的受试者工作特征曲线下面积（AUROC）保持在 {pooled_auroc:.3f}，"
           f"而 FedAvg 跌到了 {fedavg_auroc:.3f}"))
