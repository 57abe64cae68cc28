"""Self-checks for notebook 08, *From simulation to deployment*.

* :func:`check_order_free_aggregate`: replies reach a real server in any order; the
  learner's aggregation must give fedlearn's FedAvg weights *bit for bit* whatever the
  order (checked on random models, sizes and shuffles against ``fl.FedAvg().aggregate``).
* :func:`check_round_outcome`: how long a round lasts and whom it aggregates when
  hospitals are slow or down (Flower's ``send_and_receive`` semantics, simplified).
* :func:`check_site_roles`: what each hospital and the coordinator hold in production.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..models import make_model
from ..strategy import FedAvg
from ..update import ClientUpdate
from ..utils import StateDict, state_sub
from . import correct, say

__all__ = ["check_order_free_aggregate", "reference_round_outcome", "check_round_outcome",
           "SITE_ITEMS", "LOCATIONS", "check_site_roles"]

Reply = dict[str, Any]


def _reference_aggregate(global_state: StateDict, replies: Sequence[Reply]) -> StateDict:
    ups = [ClientUpdate(cid=r["partition_id"], delta=state_sub(r["weights"], global_state),
                        num_examples=r["num_examples"])
           for r in sorted(replies, key=lambda r: r["partition_id"])]
    return FedAvg().aggregate(1, global_state, ups)


def _max_diff(a: StateDict, b: StateDict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _problem(rng: random.Random, trial: int) -> tuple[StateDict, list[Reply]]:
    """A global model and K hospitals' local models of very different sizes."""
    torch.manual_seed(trial)
    d = rng.randint(3, 12)
    model = make_model("mlp" if trial % 2 else "logreg", in_features=d, seed=trial)
    glob = {k: v.detach().clone() for k, v in model.state_dict().items()}
    replies = []
    for k in range(rng.randint(3, 7)):
        local = {name: v + 0.1 * torch.randn(v.shape) for name, v in glob.items()}
        replies.append({"partition_id": k, "num_examples": rng.choice([1, 7, 30, 250, 4000]),
                        "weights": local})
    return glob, replies


def check_order_free_aggregate(aggregate: Callable[[StateDict, list[Reply]], StateDict],
                               trials: int = 6, seed: int = 0) -> None:
    """``aggregate(global_state, replies) -> new_state``; each reply is a dict with
    ``partition_id``, ``num_examples`` and ``weights`` (the hospital's local state dict)."""
    rng = random.Random(seed)
    for trial in range(trials):
        glob, replies = _problem(rng, trial)
        ref = _reference_aggregate(glob, replies)
        outs = []
        for _ in range(4):
            shuffled = list(replies)
            rng.shuffle(shuffled)
            out = aggregate({k: v.clone() for k, v in glob.items()},
                            [dict(r) for r in shuffled])
            assert isinstance(out, dict) and set(out) == set(glob), say(
                en=f"return a state dict with the model's keys {sorted(glob)}",
                zh=f"请返回一个 state dict，键与模型的键 {sorted(glob)} 相同")
            outs.append(out)
        if any(_max_diff(o, outs[0]) > 0 for o in outs[1:]):
            raise AssertionError(say(
                en="your result depends on the order the replies arrive in: float addition is "
                   "not associative, so sort the replies by partition_id before summing",
                zh="你的结果取决于回复到达的顺序：浮点加法不满足结合律，"
                   "所以求和之前请按 partition_id 给回复排序"))
        diff = _max_diff(outs[0], ref)
        if diff == 0:
            continue
        unweighted = {k: sum(r["weights"][k].double() for r in replies) / len(replies)
                      for k in glob}
        if _max_diff(outs[0], unweighted) < 1e-5:
            raise AssertionError(say(
                en="you averaged with 1/K: weight each hospital by num_examples",
                zh="你按 1/K 做了平均：请按 num_examples 给每家医院加权"))
        if diff < 1e-5:
            raise AssertionError(say(
                en=f"close (max difference {diff:.1e}) but not bit for bit: average the deltas "
                   "local - global (fedlearn.utils.state_sub) in float64, as "
                   "fl.FedAvg().aggregate does, instead of the float32 models",
                zh=f"很接近（最大差值 {diff:.1e}），但没有做到逐位一致：请像 fl.FedAvg().aggregate "
                   "那样，用 float64 平均增量 local - global（fedlearn.utils.state_sub），"
                   "而不是平均 float32 的模型"))
        raise AssertionError(say(
            en=f"wrong weights (max difference {diff:.3g}): FedAvg's new model is "
               "global + sum_k n_k/n (local_k - global)",
            zh=f"权重不对（最大差值 {diff:.3g}）：联邦平均（FedAvg）的新模型是 "
               "global + sum_k n_k/n (local_k - global)"))
    correct(say(
        en=f"order-free, bit-for-bit FedAvg on {trials} random federations x 4 arrival orders",
        zh=f"在 {trials} 个随机联邦 x 4 种到达顺序上，你的联邦平均（FedAvg）与顺序无关、逐位一致"))


def reference_round_outcome(reply_seconds: Mapping[int, float], timeout: float,
                            heartbeat: float = 60.0) -> tuple[float, list[int]]:
    """When a round ends and whom it aggregates, in a simplified model of Flower.

    The server waits until every sampled hospital has answered, or until ``timeout``.
    A hospital that is down (``math.inf``) never answers, but the SuperLink reports it
    unavailable after ``heartbeat`` seconds, which also counts as an (error) answer.
    """
    answers = [t if math.isfinite(t) else heartbeat for t in reply_seconds.values()]
    duration = min(max(answers, default=0.0), timeout)
    who = sorted(k for k, t in reply_seconds.items() if math.isfinite(t) and t <= timeout)
    return float(duration), who


def check_round_outcome(round_outcome: Callable[..., tuple[float, list[int]]],
                        trials: int = 200, seed: int = 0) -> None:
    """``round_outcome(reply_seconds, timeout, heartbeat=60.0) -> (seconds, ids)``."""
    rng = random.Random(seed)
    cases: list[tuple[dict[int, float], float, float]] = [
        ({0: 20.0, 1: 25.0, 2: 31.0}, 600.0, 60.0),      # everyone answers
        ({0: 20.0, 1: 25.0, 2: math.inf}, 600.0, 60.0),  # one hospital is down
        ({0: 20.0, 1: 25.0, 2: math.inf}, 45.0, 60.0),   # timeout before the heartbeat
        ({0: 20.0, 1: 900.0, 2: 31.0}, 120.0, 60.0),     # a straggler misses the timeout
    ]
    for _ in range(trials):
        k = rng.randint(1, 6)
        times = {i: (math.inf if rng.random() < 0.2 else rng.uniform(1, 200)) for i in range(k)}
        cases.append((times, rng.uniform(10, 250), rng.uniform(20, 90)))
    for times, timeout, heartbeat in cases:
        want = reference_round_outcome(times, timeout, heartbeat)
        got = round_outcome(dict(times), timeout, heartbeat)
        assert isinstance(got, tuple) and len(got) == 2, say(
            en="return (seconds, sorted ids)",
            zh="请返回一对值：（秒数，排好序的医院编号）")
        seconds, who = float(got[0]), sorted(int(i) for i in got[1])
        if who != want[1]:
            raise AssertionError(say(
                en=f"reply times {times}, timeout {timeout:.0f} s: expected hospitals {want[1]} "
                   f"to be aggregated, got {who}; a reply counts only if it arrives by the "
                   "timeout, and a hospital that is down never replies",
                zh=f"回复时间 {times}，超时 {timeout:.0f} 秒：应聚合的医院是 {want[1]}，"
                   f"你给出的是 {who}；回复只有在超时之前到达才算数，宕机的医院永远不会回复"))
        if not math.isclose(seconds, want[0], rel_tol=1e-9, abs_tol=1e-9):
            raise AssertionError(say(
                en=f"reply times {times}, timeout {timeout:.0f} s, heartbeat {heartbeat:.0f} s: "
                   f"the round lasts {want[0]:.1f} s, not {seconds:.1f} s; the server stops "
                   "waiting when every hospital has answered or been reported unavailable "
                   "(after the heartbeat), and never later than the timeout",
                zh=f"回复时间 {times}，超时 {timeout:.0f} 秒，心跳 {heartbeat:.0f} 秒："
                   f"这一轮持续 {want[0]:.1f} 秒，而不是 {seconds:.1f} 秒；当每家医院都已回复"
                   "或被报告为不可用（心跳超时之后）时，服务器就停止等待，且绝不晚于超时"))
    correct(say(
        en=f"your round timing agrees on {len(cases)} federations with slow and dead hospitals",
        zh=f"在 {len(cases)} 个含慢速和宕机医院的联邦上，你算出的轮次时长都一致"))


SITE_ITEMS: tuple[str, ...] = (
    "patient data", "node private key", "node config with the data path",
    "SuperLink TLS private key", "node public key", "CA certificate",
    "Flower App (FAB)", "global model weights",
)
LOCATIONS = ("hospital only", "coordinator only", "both")
#: item -> (where it belongs, why in English, why in Chinese)
_SITE_ANSWERS: dict[str, tuple[str, str, str]] = {
    "patient data": ("hospital only", "data never leave the hospital; only weights travel",
                     "数据从不离开医院，在网络上传输的只有权重"),
    "node private key": ("hospital only", "a private key proves the hospital's identity, so "
                         "it never leaves the hospital",
                         "私钥证明的是医院的身份，所以它永远不离开医院"),
    "node config with the data path": ("hospital only", "each hospital starts its own "
                                       "SuperNode with its own --node-config",
                                       "每家医院用自己的 --node-config 启动自己的 SuperNode"
                                       "（Flower 节点）"),
    "SuperLink TLS private key": ("coordinator only", "only the server that presents the "
                                  "certificate holds its key",
                                  "只有出示该证书的服务器才持有它的私钥"),
    "node public key": ("both", "the hospital generates it and the coordinator registers it "
                        "(flwr supernode register) so that only known nodes connect",
                        "医院生成它，协调方登记它（flwr supernode register），"
                        "这样只有已知的节点才能连接"),
    "CA certificate": ("both", "the coordinator's server certificate is signed by it and "
                       "every hospital needs it to verify the server (--root-certificates)",
                       "协调方的服务器证书由它签发，每家医院都需要它来验证服务器"
                       "（--root-certificates）"),
    "Flower App (FAB)": ("both", "the coordinator submits it with flwr run and every "
                         "SuperNode downloads and runs it",
                         "协调方用 flwr run 提交它，每个 SuperNode 都会下载并运行它"),
    "global model weights": ("both", "the server broadcasts them every round",
                             "服务器每一轮都会广播它们"),
}


def check_site_roles(roles: Mapping[str, str]) -> None:
    """``roles`` maps every item of :data:`SITE_ITEMS` to one of :data:`LOCATIONS`."""
    missing = [i for i in SITE_ITEMS if i not in roles]
    assert not missing, say(en=f"also place: {missing}", zh=f"还需要放置：{missing}")
    bad = [v for v in roles.values() if v not in LOCATIONS]
    assert not bad, say(en=f"locations must be one of {LOCATIONS}, got {bad}",
                        zh=f"位置必须是 {LOCATIONS} 之一，收到的却是 {bad}")
    for item in SITE_ITEMS:
        where, why_en, why_zh = _SITE_ANSWERS[item]
        if roles[item] != where:
            raise AssertionError(say(en=f"{item!r}: {where}, because {why_en}",
                                     zh=f"{item!r} 应放在 {where!r}，因为{why_zh}"))
    correct(say(en="you placed all eight items where a production deployment keeps them",
                zh="你把全部八项都放到了生产部署中它们应在的位置"))
