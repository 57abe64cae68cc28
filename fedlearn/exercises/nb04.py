"""Self-checks for notebook 04, *When hospitals differ*.

Each checker calls the learner's function on fresh random cases and compares it with the
package's own implementation (``FedNova.combine``, ``ErrorFeedback(TopK)``,
``SystemModel.plan_round``), which the unit tests check against their defining properties,
so an answer tuned to the notebook's example does not pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..algorithms import FedNova
from ..client import Client, TrainConfig
from ..compression import ErrorFeedback, TopK
from ..strategy import FedAvg
from ..system import SystemModel
from ..update import ClientUpdate
from . import correct, say

__all__ = ["check_fednova_step", "check_error_feedback", "check_deadline"]

FedNovaStep = Callable[[Sequence[torch.Tensor], Sequence[int], Sequence[int]], torch.Tensor]


def _fednova_reference(deltas: Sequence[torch.Tensor], n: Sequence[int],
                       steps: Sequence[int]) -> torch.Tensor:
    ups = [ClientUpdate(i, {"w": d}, n_i, {"num_steps": float(s)})
           for i, (d, n_i, s) in enumerate(zip(deltas, n, steps, strict=True))]
    return FedNova().combine(1, ups)["w"]


def check_fednova_step(fednova_step: FedNovaStep, trials: int = 6, seed: int = 0) -> None:
    """``fednova_step(deltas, num_examples, num_steps) -> aggregate delta`` (plain SGD).

    ``deltas[i]`` is client ``i``'s ``local - global`` after ``num_steps[i]`` SGD steps on
    ``num_examples[i]`` examples.
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        k, d = 2 + t % 3, 3 + t
        deltas = [torch.randn(d, generator=g) for _ in range(k)]
        n = [int(x) for x in torch.randint(5, 200, (k,), generator=g)]
        steps = [int(x) for x in torch.randint(1, 30, (k,), generator=g)]
        steps[0] = steps[1] + 7  # never all equal, or FedNova would be FedAvg
        ref = _fednova_reference(deltas, n, steps)
        out = torch.as_tensor(fednova_step([x.clone() for x in deltas], list(n), list(steps)))
        assert out.shape == ref.shape, say(
            en=f"expected shape {tuple(ref.shape)}, got {tuple(out.shape)}",
            zh=f"形状应为 {tuple(ref.shape)}，收到的却是 {tuple(out.shape)}")
        if torch.allclose(out.double(), ref.double(), atol=1e-5):
            continue
        p = torch.tensor(n, dtype=torch.float64) / sum(n)
        fedavg = sum(pi * x.double() for pi, x in zip(p, deltas, strict=True))
        normalised = sum(pi * x.double() / s for pi, x, s in zip(p, deltas, steps, strict=True))
        uniform_tau = sum(x.double() / s for x, s in zip(deltas, steps, strict=True)) / k * \
            sum(steps) / k
        if torch.allclose(out.double(), fedavg, atol=1e-5):
            raise AssertionError(say(
                en="that is FedAvg's average: divide each delta by its number of steps before "
                   "averaging",
                zh="这是联邦平均（FedAvg）的平均：请先把每个增量除以它的本地迭代步数，再做平均"))
        if torch.allclose(out.double(), normalised, atol=1e-5):
            raise AssertionError(say(
                en="you averaged the normalised updates but forgot to rescale by the effective "
                   "step count tau_eff = sum_i p_i tau_i",
                zh="你对归一化后的更新做了平均，但忘了再乘以有效步数 tau_eff = sum_i p_i tau_i"))
        if torch.allclose(out.double(), uniform_tau, atol=1e-5):
            raise AssertionError(say(en="weight clients by p_i = n_i / n, not uniformly",
                                     zh="请按 p_i = n_i / n 给各参与方加权，而不是等权"))
        raise AssertionError(say(
            en="wrong aggregate: with p_i = n_i / n, return "
               "(sum_i p_i tau_i) * sum_i p_i delta_i / tau_i",
            zh="聚合结果不对：设 p_i = n_i / n，应返回 "
               "(sum_i p_i tau_i) * sum_i p_i delta_i / tau_i"))
    correct(say(en=f"your FedNova aggregate matches fedlearn's on {trials} random rounds",
                zh=f"在 {trials} 个随机轮次上，你的 FedNova（归一化平均）聚合与 fedlearn 的一致"))


EFTopK = Callable[[Sequence[torch.Tensor], int], Sequence[torch.Tensor]]


def check_error_feedback(ef_topk: EFTopK, trials: int = 4, seed: int = 0) -> None:
    """``ef_topk(deltas, k) -> sent``: what ONE client sends in each round with top-k + EF.

    ``deltas`` are the client's true updates (1-D tensors) in rounds 1, 2, ...; ``sent[t]``
    keeps ``k`` entries of ``deltas[t]`` plus the residual carried over from earlier rounds.
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        d, rounds, k = 10 + 5 * t, 4 + t, 1 + t
        deltas = [torch.randn(d, generator=g) for _ in range(rounds)]
        ef = ErrorFeedback(TopK(k=k))
        ref = [ef(0, {"w": x})[0]["w"] for x in deltas]
        out = [torch.as_tensor(s) for s in ef_topk([x.clone() for x in deltas], k)]
        assert len(out) == rounds, say(
            en=f"return one sent vector per round ({rounds}), got {len(out)}",
            zh=f"请每轮返回一个发送的向量（共 {rounds} 个），收到的却是 {len(out)} 个")
        for r, (o, e) in enumerate(zip(out, ref, strict=True)):
            if torch.allclose(o.float(), e, atol=1e-6):
                continue
            nnz = int((o != 0).sum())
            if nnz != k:
                raise AssertionError(say(
                    en=f"round {r + 1}: you sent {nnz} non-zero entries, top-k sends exactly "
                       f"k = {k}",
                    zh=f"第 {r + 1} 轮：你发送了 {nnz} 个非零元素，top-k 稀疏化恰好发送 "
                       f"k = {k} 个"))
            plain = TopK(k=k).compress({"w": deltas[r]})[0]["w"]
            if torch.allclose(o.float(), plain, atol=1e-6):
                raise AssertionError(say(
                    en=f"round {r + 1}: that is plain top-k of this round's delta; add the "
                       "residual e (what was not sent before) first",
                    zh=f"第 {r + 1} 轮：这是对本轮增量直接做 top-k；请先加上残差 e"
                       "（之前没有发出去的部分）"))
            raise AssertionError(say(
                en=f"round {r + 1}: wrong vector. Each round: p = delta + e; "
                   "sent = top-k of p by |value|; e = p - sent",
                zh=f"第 {r + 1} 轮：向量不对。每一轮：p = delta + e；"
                   "sent = 按 |value| 取 p 的 top-k；e = p - sent"))
    correct(say(
        en=f"your error feedback sends exactly what fedlearn's does over {trials} random runs",
        zh=f"在 {trials} 次随机运行中，你的误差反馈发送的内容与 fedlearn 的完全一致"))


SmallestDeadline = Callable[[dict[int, float], int, int], float]


def _reporting(speeds: dict[int, float], steps: int, deadline: float) -> int:
    clients = [Client(c, _dummy_data()) for c in speeds]
    ins = FedAvg(TrainConfig(steps=steps)).configure_round(1, clients)
    return len(SystemModel(speeds, deadline=deadline).plan_round(1, clients, ins).instructions)


def _dummy_data() -> torch.utils.data.TensorDataset:
    return torch.utils.data.TensorDataset(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))


def check_deadline(smallest_deadline: SmallestDeadline, trials: int = 6, seed: int = 0) -> None:
    """``smallest_deadline(speeds, steps, keep) -> seconds``: the shortest round deadline at
    which at least ``keep`` clients finish all ``steps`` local steps (speeds in steps/second).
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        k = 3 + t
        speeds = {c: float(v) for c, v in enumerate(torch.rand(k, generator=g) * 4 + 0.1)}
        steps = 5 + 10 * t
        keep = 1 + t % k
        d = float(smallest_deadline(dict(speeds), steps, keep))
        got = _reporting(speeds, steps, d)
        if got < keep:
            raise AssertionError(say(
                en=f"with deadline {d:.4g} s only {got} of {k} clients finish but keep = {keep}: "
                   "client c needs steps / speed[c] seconds",
                zh=f"截止时间为 {d:.4g} 秒时，{k} 个参与方中只有 {got} 个完成，但 keep = {keep}："
                   "参与方 c 需要 steps / speed[c] 秒"))
        if _reporting(speeds, steps, d * (1 - 1e-6)) >= keep:
            raise AssertionError(say(
                en=f"deadline {d:.4g} s works but is not the smallest: sort the finishing times "
                   "steps / speed and take the keep-th smallest",
                zh=f"截止时间 {d:.4g} 秒可行，但不是最小的：请把完成时间 steps / speed 排序，"
                   "取第 keep 小的那个"))
    correct(say(
        en=f"your deadlines are the smallest that keep enough hospitals, on {trials} cases",
        zh=f"在 {trials} 个情形中，你的截止时间都是能留住足够多医院的最小值"))
