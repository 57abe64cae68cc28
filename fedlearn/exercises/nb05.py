"""Self-checks for notebook 05, *Differential privacy for hospitals*.

Every checker recomputes the answer independently of the notebook: the Gaussian mechanism's
formula, a fresh set of random updates for the clipped noisy mean, and for the budget
question Opacus' RDP of one round, composed round by round by hand. Messages name the
likely mistake (forgetting the sensitivity, dividing by the actual instead of the expected
number of hospitals, counting one round too many, ...).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from opacus.accountants.analysis import rdp as rdp_analysis

from ..privacy.accounting import ALPHAS
from . import correct, say

__all__ = ["check_gaussian_sigma", "check_dp_mean", "check_rounds_within_budget"]

DPMean = Callable[[Sequence[dict[str, torch.Tensor]], float, float, float, torch.Generator],
                  dict[str, torch.Tensor]]


def check_gaussian_sigma(sigma: float, epsilon: float, delta: float, sensitivity: float) -> None:
    """The classic Gaussian mechanism: ``sigma = sensitivity * sqrt(2 ln(1.25/delta)) / eps``."""
    sigma = float(sigma)
    base = math.sqrt(2 * math.log(1.25 / delta)) / epsilon
    want = sensitivity * base
    if sensitivity != 1 and math.isclose(sigma, base, rel_tol=1e-3):
        raise AssertionError(say(
            en="you left out the sensitivity: the noise is measured in units of how much one "
               f"patient can change the answer ({sensitivity})",
            zh="你漏掉了（查询的）敏感度：噪声的单位是一名患者最多能让答案改变多少"
               f"（{sensitivity}）"))
    if math.isclose(sigma, sensitivity * math.sqrt(2 * math.log(1 / delta)) / epsilon,
                    rel_tol=1e-3):
        raise AssertionError(say(
            en="close: the constant inside the log is 1.25/delta, not 1/delta",
            zh="很接近了：对数里的常数是 1.25/delta，而不是 1/delta"))
    assert math.isclose(sigma, want, rel_tol=1e-3), say(
        en=f"got sigma = {sigma:.4g}, expected {want:.4g}: sigma = sensitivity * "
           "sqrt(2 ln(1.25 / delta)) / epsilon",
        zh=f"收到 sigma = {sigma:.4g}，应为 {want:.4g}：sigma = sensitivity * "
           "sqrt(2 ln(1.25 / delta)) / epsilon，其中 `sensitivity` 是（查询的）敏感度")
    correct(say(
        en=f"sigma = {want:.3f}: every released count is off by about that much, by design",
        zh=f"sigma = {want:.3f}：每个发布出去的计数都会偏离大约这么多，这正是设计使然"))


def _reference_dp_mean(updates: Sequence[dict[str, torch.Tensor]], clip: float,
                       expected_clients: float) -> dict[str, torch.Tensor]:
    total = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in updates[0].items()}
    for u in updates:
        norm = math.sqrt(sum(float((v.double() ** 2).sum()) for v in u.values()))
        f = min(1.0, clip / (norm + 1e-12))
        for k in total:
            total[k] += f * u[k].double()
    return {k: v / expected_clients for k, v in total.items()}


def check_dp_mean(dp_mean: DPMean, seed: int = 0) -> None:
    """``dp_mean(updates, clip, noise_multiplier, expected_clients, generator)``.

    Must return ``(sum_k clip(update_k) + N(0, (z C)^2)) / expected_clients`` key by key.
    Checked without noise (exact), then with noise over many draws (its std must be
    ``z C / expected_clients``).
    """
    g = torch.Generator().manual_seed(seed)
    updates = [{"w": 3 * torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)}
               for _ in range(5)]
    updates[0] = {k: 0.01 * v for k, v in updates[0].items()}  # one update below the clip norm
    clip, m = 1.0, 8.0  # expected 8 hospitals, 5 happened to be sampled
    out = dp_mean(updates, clip, 0.0, m, torch.Generator().manual_seed(1))
    ref = _reference_dp_mean(updates, clip, m)
    assert set(out) == set(ref), say(
        en=f"return one tensor per key {sorted(ref)}, got {sorted(out)}",
        zh=f"请为每个键 {sorted(ref)} 各返回一个张量，收到的键却是 {sorted(out)}")
    for k in ref:
        got = out[k].double()
        if torch.allclose(got, ref[k] * m / len(updates), atol=1e-5):
            raise AssertionError(say(
                en="you divided by the number of updates received; divide by the EXPECTED "
                   "number of hospitals: the actual count depends on who took part, so it would "
                   "leak",
                zh="你除以的是实际收到的更新个数；请除以*期望的*医院数：实际个数取决于谁参与了，"
                   "会泄露信息"))
        unclipped = sum(u[k].double() for u in updates) / m
        if torch.allclose(got, unclipped, atol=1e-5):
            raise AssertionError(say(
                en="the updates were not clipped: scale each update (all its tensors together) "
                   "to L2 norm at most `clip` first",
                zh="这些更新没有经过裁剪：请先把每个更新（它的所有张量合在一起）缩放到 L2 范数"
                   "不超过 `clip`"))
        assert torch.allclose(got, ref[k], atol=1e-5), say(
            en=f"with noise_multiplier=0 the result for {k!r} should be the clipped sum divided "
               "by expected_clients; clip by the norm of the WHOLE update, not tensor by tensor",
            zh=f"noise_multiplier=0 时，{k!r} 的结果应是裁剪后的和除以 expected_clients；"
               "请按*整个*更新的范数裁剪，而不是逐个张量裁剪")
    z = 2.0
    draws = torch.stack([
        torch.cat([(dp_mean(updates, clip, z, m, torch.Generator().manual_seed(100 + i))[k]
                    .double() - ref[k]).flatten() for k in ref])
        for i in range(300)])
    std = float(draws.std())
    want = z * clip / m
    assert abs(std - want) < 0.1 * want, say(
        en=f"noise std on the mean is {std:.4f}, expected z*C/m = {want:.4f}: add N(0, (z*C)^2) "
           "to the SUM, then divide by expected_clients",
        zh=f"均值上的噪声标准差为 {std:.4f}，应为 z*C/m = {want:.4f}：请把 N(0, (z*C)^2) "
           "加到*总和*上，再除以 expected_clients")
    assert float(draws.std(dim=1).mean()) > 0.5 * want, say(
        en="every entry needs its own noise draw (torch.normal with size=tensor.shape)",
        zh="每个元素都需要单独抽取一次噪声（torch.normal，size=tensor.shape）")
    correct(say(
        en=f"clipped sum + N(0, (zC)^2), divided by m: noise std on the mean {std:.4f} "
           f"~ zC/m = {want:.4f}",
        zh=f"裁剪后的和 + N(0, (zC)^2)，再除以 m：均值上的噪声标准差 {std:.4f} "
           f"~ zC/m = {want:.4f}"))


def check_rounds_within_budget(answer: int, noise_multiplier: float, client_rate: float,
                               epsilon: float, delta: float) -> None:
    """The largest number of DP-FedAvg rounds whose epsilon stays within ``epsilon``."""
    # RDP composes additively: one round's RDP vector (from Opacus), times the round count.
    one_round = np.asarray(rdp_analysis.compute_rdp(
        q=client_rate, noise_multiplier=noise_multiplier, steps=1, orders=ALPHAS))
    rounds = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eps, _ = rdp_analysis.get_privacy_spent(orders=ALPHAS, rdp=one_round * (rounds + 1),
                                                    delta=delta)
        if eps > epsilon:
            break
        rounds += 1
        if rounds > 100_000:
            raise AssertionError(say(
                en="this budget allows more than 100,000 rounds; pick a smaller one",
                zh="这个隐私预算允许超过 100,000 轮；请选一个更小的预算"))
    answer = int(answer)
    if answer == rounds + 1:
        raise AssertionError(say(
            en=f"{answer} rounds would spend more than epsilon = {epsilon}: the last round you "
               "counted is the one that crosses the budget",
            zh=f"{answer} 轮花掉的会超过 epsilon = {epsilon}："
               "你数的最后一轮正是越过隐私预算的那一轮"))
    assert answer == rounds, say(
        en=f"got {answer}, expected {rounds}; step an RDPAccountant once per round (sample_rate "
           "= client_rate) and stop before get_epsilon(delta) exceeds the budget",
        zh=f"收到 {answer}，应为 {rounds}；请每轮让 RDPAccountant 走一步（sample_rate = "
           "client_rate），并在 get_epsilon(delta) 超出隐私预算之前停下")
    correct(say(
        en=f"{rounds} rounds fit in epsilon = {epsilon} at delta = {delta:g}; round "
           f"{rounds + 1} would cross it",
        zh=f"在 delta = {delta:g} 时，epsilon = {epsilon} 的隐私预算容得下 {rounds} 轮；"
           f"第 {rounds + 1} 轮就会越界"))
