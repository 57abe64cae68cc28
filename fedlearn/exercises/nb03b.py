"""Self-check for appendix notebook 03b, *How simulators scale*.

The learner trains the same hospitals with both engines and reports how far apart the final
weights are. The checker re-runs both engines itself on fresh hospitals of unequal sizes, so
a made-up number (or a run that used the same engine twice) does not pass.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import TensorDataset

from ..client import Client, TrainConfig
from ..models import make_model
from ..simulation import run
from ..strategy import FedAvg
from . import correct, say

__all__ = ["check_engines_agree", "engine_gap"]


def engine_gap(sizes: tuple[int, ...] = (7, 30, 12), seed: int = 0) -> float:
    """Largest |w_sequential - w_vectorized| after 2 rounds of FedAvg with momentum."""
    g = torch.Generator().manual_seed(seed)
    clients = [Client(i, TensorDataset(torch.randn(n, 4, generator=g),
                                       torch.randint(0, 2, (n,), generator=g)))
               for i, n in enumerate(sizes)]
    finals = []
    for engine in ("sequential", "vectorized"):
        m = make_model("logreg", in_features=4, seed=seed)
        run(m, clients, FedAvg(TrainConfig(batch_size=4, lr=0.1, momentum=0.9)), rounds=2,
            eval_every=0, progress=False, engine=engine)
        finals.append(m.state_dict())
    return max(float((finals[0][k] - finals[1][k]).abs().max()) for k in finals[0])


def check_engines_agree(max_abs_diff: float, engines_differ: bool) -> None:
    """``max_abs_diff``: your measured gap; ``engines_differ``: do the engines compute
    different functions (True) or the same function up to float rounding (False)?"""
    assert isinstance(max_abs_diff, float) and math.isfinite(max_abs_diff), say(
        en=f"max_abs_diff must be a finite float, got {max_abs_diff!r}",
        zh=f"max_abs_diff 必须是一个有限的浮点数（finite float），收到的却是 {max_abs_diff!r}")
    assert max_abs_diff < 1e-4, say(
        en=f"a gap of {max_abs_diff:.2e} is far above float rounding: did both runs start from "
           "the same initial model and use the same seed? (make_model(..., seed=SEED), "
           "fl.run(seed=...))",
        zh=f"{max_abs_diff:.2e} 的差距远大于浮点舍入误差：两次运行是否从同一个初始模型出发、"
           "使用了同一个随机种子？（make_model(..., seed=SEED)，fl.run(seed=...)）")
    assert not engines_differ, say(
        en="same seeds give the same batches, and the vectorised engine applies the same SGD "
           "step to every client: the two engines compute the same function, only the order of "
           "float sums differs",
        zh="相同的随机种子给出相同的批，而向量化引擎对每个参与方执行的是同样的 SGD 步："
           "两个引擎计算的是同一个函数，只是浮点求和的顺序不同")
    ref = engine_gap()
    assert ref < 1e-5, say(en=f"the engines disagree on the checker's own hospitals ({ref:.2e})",
                           zh=f"两个引擎在检查程序自己的医院上结果不一致（{ref:.2e}）")
    correct(say(
        en=f"the engines agree to {max_abs_diff:.1e}: one function, two ways to evaluate it",
        zh=f"两个引擎的结果相差不超过 {max_abs_diff:.1e}：同一个函数，两种求值方式"))
