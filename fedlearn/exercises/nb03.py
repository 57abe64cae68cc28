"""Self-checks for notebook 03, *FedAvg, derived*.

The checkers recompute every answer another way: the number of local updates by actually
running :func:`fedlearn.local_train` and counting its steps, the bytes of a round from the
model's own tensors, the FedSGD equivalence by running both strategies on fresh hospitals of
unequal sizes, and the "which configuration is faster" question from the learner's own
measured runs. A formula that only fits the notebook's numbers therefore does not pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..client import Client, TrainConfig, local_train
from ..history import History
from ..models import make_model
from ..simulation import run
from ..strategy import FedAvg, FedSGD
from ..utils import clone_state, float_keys, state_nbytes
from . import correct, say

__all__ = ["check_local_updates", "check_bytes_per_round", "check_fedavg_is_fedsgd",
           "check_fewer_rounds", "count_local_steps", "round_nbytes",
           "FEWER_ROUNDS_CONFIGS"]

LocalUpdates = Callable[[int, int, int | None], int]


def count_local_steps(n: int, epochs: int, batch_size: int | None, seed: int = 0) -> int:
    """How many optimiser steps :func:`fedlearn.local_train` really takes (by running it).

    A tiny logistic regression on ``n`` random examples keeps this fast; the count depends
    only on ``n``, ``epochs`` and ``batch_size``.
    """
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(n, 3, generator=g), torch.randint(0, 2, (n,), generator=g))
    model = make_model("logreg", in_features=3, seed=seed)
    update = local_train(model, clone_state(model.state_dict()), data,
                         TrainConfig(epochs=epochs, batch_size=batch_size, lr=0.01), seed=seed)
    return int(update.metrics["num_steps"])


def check_local_updates(local_updates: LocalUpdates) -> None:
    """``local_updates(n_k, epochs, batch_size) -> u``: steps one client takes in one round.

    ``batch_size=None`` means the full local data set (B = infinity). Compared with the
    steps :func:`fedlearn.local_train` takes, including sizes not divisible by ``B``.
    """
    cases = [(600, 5, 10), (150, 1, 50), (151, 1, 50), (151, 5, 10), (37, 3, 8), (200, 1, None),
             (200, 20, None), (9, 2, 32), (1000, 1, 1000)]
    for n, epochs, batch in cases:
        truth = count_local_steps(n, epochs, batch)
        answer = local_updates(n, epochs, batch)
        try:
            got = float(answer)
        except (TypeError, ValueError) as exc:
            raise AssertionError(say(
                en=f"local_updates({n}, {epochs}, {batch}) returned {answer!r}; return a number "
                   "of steps",
                zh=f"local_updates({n}, {epochs}, {batch}) 返回了 {answer!r}；"
                   "请返回步数（一个数）")) from exc
        if got == truth:
            continue
        if batch is None:
            raise AssertionError(say(
                en=f"local_updates({n}, {epochs}, None) = {answer}, expected {truth}: B = None is "
                   "the full batch, so ONE step per epoch",
                zh=f"local_updates({n}, {epochs}, None) = {answer}，应为 {truth}：B = None "
                   "表示全批量，所以每个本地训练周期（epoch）只走*一*步"))
        if math.isclose(got, epochs * n / batch) or got == epochs * (n // batch):
            raise AssertionError(say(
                en=f"local_updates({n}, {epochs}, {batch}) = {answer}, but local_train takes "
                   f"{truth} steps: E*n/B assumes B divides n; the last, smaller batch of each "
                   "epoch is a step too, so u = E * ceil(n / B)",
                zh=f"local_updates({n}, {epochs}, {batch}) = {answer}，但 local_train 实际走了 "
                   f"{truth} 步：E*n/B 假定 B 能整除 n；每个周期最后那个较小的批也算一步，"
                   "所以 u = E * ceil(n / B)"))
        raise AssertionError(say(
            en=f"local_updates({n}, {epochs}, {batch}) = {answer}, expected {truth}: each epoch "
               "walks through n examples in batches of B",
            zh=f"local_updates({n}, {epochs}, {batch}) = {answer}，应为 {truth}："
               "每个本地训练周期以大小为 B 的批遍历全部 n 个样本"))
    correct(say(
        en=f"u = E * ceil(n_k / B) matches the steps local_train takes in {len(cases)} cases",
        zh=f"在 {len(cases)} 种情形下，u = E * ceil(n_k / B) 与 local_train 实际走的步数一致"))


def round_nbytes(model: nn.Module, clients_per_round: int) -> int:
    """Bytes on the wire in one round as ``fl.run`` counts them: the model down to each sampled
    client plus one same-sized update back from each (floating-point entries only)."""
    state = model.state_dict()
    return 2 * clients_per_round * state_nbytes({k: state[k] for k in float_keys(state)})


def check_bytes_per_round(answer: float, model: nn.Module, num_clients: int,
                          fraction: float) -> None:
    """``answer``: bytes sent (both directions) in one round of ``fl.run`` with ``fraction``
    of ``num_clients`` hospitals taking part and raw float32 updates."""
    m = min(num_clients, max(int(round(fraction * num_clients)), 1))
    truth = round_nbytes(model, m)
    params = sum(p.numel() for p in model.parameters())
    try:
        got = float(answer)
    except (TypeError, ValueError) as exc:
        raise AssertionError(say(en=f"expected a number of bytes, got {answer!r}",
                                 zh=f"需要一个字节数，收到的却是 {answer!r}")) from exc
    if got == truth:
        correct(say(
            en=f"{m} hospitals x 2 directions x {truth // (2 * m):,} bytes = {truth:,} bytes "
               f"({truth / 1e6:.3f} MB) per round",
            zh=f"每轮 {m} 家医院 x 2 个方向 x {truth // (2 * m):,} 字节 = {truth:,} 字节"
               f"（{truth / 1e6:.3f} MB）"))
        return
    if got == truth / 2:
        raise AssertionError(say(
            en="count both directions: the server sends the global model DOWN to each sampled "
               "hospital and each sends its update back UP",
            zh="要计算两个方向：服务器把全局模型*下发*给每家被采样的医院，"
               "每家医院再把自己的模型更新*上传*回来"))
    if got == truth / 4:
        raise AssertionError(say(
            en="that is a number of parameters; each float32 parameter is 4 bytes",
            zh="这是参数的个数；每个 float32 参数占 4 字节"))
    if m != num_clients and got == round_nbytes(model, num_clients):
        raise AssertionError(say(
            en=f"only the sampled hospitals take part: m = max(round(C*K), 1) = {m}, "
               f"not K = {num_clients}",
            zh=f"只有被采样的医院参与：m = max(round(C*K), 1) = {m}，"
               f"而不是 K = {num_clients}"))
    if math.isclose(got, truth / 1e6) or math.isclose(got, truth / 2**20):
        raise AssertionError(say(en="give the answer in bytes, not megabytes",
                                 zh="请以字节为单位作答，而不是兆字节（MB）"))
    raise AssertionError(say(
        en=f"expected 2 * m * 4 * (number of parameters) with m = {m} and {params:,} parameters",
        zh=f"应为 2 * m * 4 * （参数个数），其中 m = {m}，参数共 {params:,} 个"))


def _unequal_hospitals(seed: int = 0) -> list[Client]:
    """Three synthetic hospitals of very different sizes and label mixes."""
    g = torch.Generator().manual_seed(seed)
    clients = []
    for cid, (n, shift) in enumerate([(90, 0.0), (25, 1.0), (7, -1.5)]):
        x = torch.randn(n, 4, generator=g) + shift
        y = ((x @ torch.tensor([1.0, -1.0, 0.5, 0.0]) + 0.5 * torch.randn(n, generator=g))
             > shift).long()
        clients.append(Client(cid=cid, train=TensorDataset(x, y)))
    return clients


def check_fedavg_is_fedsgd(strategy: FedAvg, lr: float, rounds: int = 5) -> None:
    """``strategy``: an ``fl.FedAvg`` (built from a ``TrainConfig``, not ``fl.FedSGD``) that
    behaves exactly like ``fl.FedSGD(lr)``. Both are run on three hospitals of unequal sizes."""
    if isinstance(strategy, FedSGD):
        raise AssertionError(say(
            en="build it from fl.FedAvg and an fl.TrainConfig, not fl.FedSGD",
            zh="请用 fl.FedAvg 加一个 fl.TrainConfig 来构造它，而不是用 fl.FedSGD"))
    if not isinstance(strategy, FedAvg):
        raise AssertionError(say(
            en=f"expected an fl.FedAvg strategy, got {type(strategy).__name__}",
            zh=f"需要一个 fl.FedAvg 策略，收到的却是 {type(strategy).__name__}"))
    clients = _unequal_hospitals()
    runs = {}
    for name, strat in (("yours", strategy), ("FedSGD", FedSGD(lr))):
        model = make_model("logreg", in_features=4, seed=0)
        runs[name] = run(model, clients, strat, rounds=rounds, eval_every=0, progress=False)
    ours, ref = runs["yours"].final_state, runs["FedSGD"].final_state
    assert ours is not None and ref is not None
    if all(torch.allclose(ours[k], ref[k], atol=1e-6) for k in ref):
        correct(say(
            en=f"FedAvg with E=1, B=infinity took the same {rounds} rounds as FedSGD(lr={lr}): "
               "one full-batch gradient step per hospital, averaged with weights n_k/n",
            zh=f"E=1、B=无穷大的联邦平均（FedAvg）走出了与 FedSGD(lr={lr}) 完全相同的 {rounds} "
               "轮：每家医院一次全批量梯度步，再按权重 n_k/n 平均"))
        return
    cfg = strategy.config
    if cfg.lr != lr:
        raise AssertionError(say(
            en=f"the local learning rate must be FedSGD's lr = {lr}, got {cfg.lr}",
            zh=f"本地学习率必须等于 FedSGD 的 lr = {lr}，收到的却是 {cfg.lr}"))
    if not strategy.weighted:
        raise AssertionError(say(
            en="FedSGD averages with weights n_k/n (weighted=True): that is what makes the "
               "average the pooled gradient",
            zh="FedSGD 按权重 n_k/n 平均（weighted=True）：正因如此，平均值才等于合并数据上的梯度"))
    if strategy.server_lr != 1.0:
        raise AssertionError(say(
            en="keep server_lr=1: the server just adds the averaged delta",
            zh="请保持 server_lr=1：服务器只是把平均后的增量加上去"))
    if cfg.batch_size is not None:
        raise AssertionError(say(
            en=f"batch_size={cfg.batch_size} splits a hospital's data into several minibatches; "
               "FedSGD uses the full batch: batch_size=None (B = inf)",
            zh=f"batch_size={cfg.batch_size} 会把一家医院的数据分成好几个小批量；"
               "FedSGD 用的是全批量：batch_size=None（B = inf）"))
    if cfg.steps not in (None, 1) or (cfg.steps is None and cfg.epochs != 1):
        raise AssertionError(say(
            en="exactly one local step per round: epochs=1 (or steps=1)",
            zh="每轮恰好一个本地迭代步：epochs=1（或 steps=1）"))
    raise AssertionError(say(
        en="the runs differ: check the optimiser (plain SGD, no momentum, no weight decay) and "
           "the other TrainConfig fields",
        zh="两次运行结果不同：请检查优化器（普通 SGD，不带动量，不带权重衰减）"
           "以及 TrainConfig 的其他字段"))


#: the two configurations of exercise 4 (E, B): A does five times the computation of B per round
FEWER_ROUNDS_CONFIGS = {"A": (10, None), "B": (2, 10)}


def _first_round_loss(hist: History) -> float:
    if not hist.rounds or "train_loss" not in hist.rounds[0]:
        raise AssertionError(say(
            en="this History has no rounds: pass the History that fl.run returned",
            zh="这个 `History` 里没有任何轮次：请传入 fl.run 返回的 `History`"))
    return float(hist.rounds[0]["train_loss"])


def _replayed_first_round(clients: list[Client], new_model: Callable[[], nn.Module], lr: float,
                          seed: int) -> dict[str, float]:
    """Round 1 of each configuration, run here: its mean local training loss identifies it."""
    out = {}
    for name, (epochs, batch) in FEWER_ROUNDS_CONFIGS.items():
        strat = FedAvg(TrainConfig(epochs=epochs, batch_size=batch, lr=lr))
        hist = run(new_model(), clients, strat, rounds=1, eval_every=0, seed=seed, progress=False)
        out[name] = _first_round_loss(hist)
    return out


def check_fewer_rounds(prediction: str, hist_a: History, hist_b: History, clients: list[Client],
                       new_model: Callable[[], nn.Module], *, lr: float, seed: int = 0,
                       target: float = 0.9, metric: str = "auroc",
                       test_set: str = "pooled") -> None:
    """``prediction``: "A" or "B", the configuration you expect to reach ``metric >= target``
    in fewer rounds; ``hist_a``/``hist_b``: your runs of the two configurations.

    The runs are first checked to be the configurations asked for: the first round of A
    (E=10, B=inf) and of B (E=2, B=10) with learning rate ``lr`` is replayed here on
    ``clients`` from ``new_model()`` with ``fl.run(..., seed=seed)``, and its mean local
    training loss must equal the first round of ``hist_a`` and ``hist_b``. Swapped histories
    or another configuration are named as such instead of being scored.
    """
    choice = str(prediction).strip().upper()
    if choice not in ("A", "B"):
        raise AssertionError(say(en=f"predict 'A' or 'B', got {prediction!r}",
                                 zh=f"请预测 'A' 或 'B'，收到的却是 {prediction!r}"))
    for name, hist in (("A", hist_a), ("B", hist_b)):
        if not isinstance(hist, History) or not hist.evals:
            raise AssertionError(say(
                en=f"hist_{name.lower()} must be the History that fl.run returned (with "
                   "evaluations, eval_every=1)",
                zh=f"hist_{name.lower()} 必须是 fl.run 返回的 History（带评估结果，"
                   "eval_every=1）"))
    ref = _replayed_first_round(list(clients), new_model, lr, seed)
    got = {"A": _first_round_loss(hist_a), "B": _first_round_loss(hist_b)}

    def same(x: float, y: float) -> bool:
        return math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6)

    if same(got["A"], ref["B"]) and same(got["B"], ref["A"]):
        raise AssertionError(say(
            en="hist_a is configuration B's run and hist_b is A's: swap them",
            zh="hist_a 是配置 B 的运行，hist_b 才是 A 的：请把它们对调"))
    for name, (epochs, batch) in FEWER_ROUNDS_CONFIGS.items():
        if not same(got[name], ref[name]):
            raise AssertionError(say(
                en=f"hist_{name.lower()} is not configuration {name}: its first round does not "
                   f"match fl.FedAvg(fl.TrainConfig(epochs={epochs}, batch_size={batch}, "
                   f"lr={lr})) run on these hospitals from new_model() with seed={seed}",
                zh=f"hist_{name.lower()} 不是配置 {name}：它的第一轮与在这些医院上从 new_model() "
                   f"出发、以 seed={seed} 运行的 fl.FedAvg(fl.TrainConfig(epochs={epochs}, "
                   f"batch_size={batch}, lr={lr})) 对不上"))
    rounds = {name: hist.rounds_to(target, metric, test_set)
              for name, hist in (("A", hist_a), ("B", hist_b))}
    if rounds["A"] is None and rounds["B"] is None:
        raise AssertionError(say(
            en=f"neither run reached {metric} >= {target}: run more rounds",
            zh=f"两次运行都没有达到 {metric} >= {target}：请多运行几轮"))
    ra = rounds["A"] if rounds["A"] is not None else math.inf
    rb = rounds["B"] if rounds["B"] is not None else math.inf
    if ra == rb:
        correct(say(en=f"a tie: both reached {metric} >= {target} in round {ra}",
                    zh=f"平局：两者都在第 {ra} 轮达到 {metric} >= {target}"))
        return
    faster = "A" if ra < rb else "B"
    shown_en = {k: ("not reached" if v is None else f"round {v}") for k, v in rounds.items()}
    shown_zh = {k: ("未达到" if v is None else f"第 {v} 轮") for k, v in rounds.items()}
    if choice != faster:
        raise AssertionError(say(
            en=f"the measurement says {faster} (A: {shown_en['A']}, B: {shown_en['B']}). Count "
               "the local updates u = E * ceil(n_k / B) of each: progress per round follows the "
               "number of updates, not the epochs of computation",
            zh=f"测量结果是 {faster}（A：{shown_zh['A']}，B：{shown_zh['B']}）。请数一数两者"
               "各自的本地更新次数 u = E * ceil(n_k / B)：每轮的进展取决于更新次数，"
               "而不是计算了多少个周期"))
    correct(say(
        en=f"{faster} is faster (A: {shown_en['A']}, B: {shown_en['B']}): more local updates per "
           "round, even with fewer epochs of computation",
        zh=f"{faster} 更快（A：{shown_zh['A']}，B：{shown_zh['B']}）：即使计算的周期更少，"
           "它每轮的本地更新次数更多"))
