"""Self-checks for notebook 09, *One model per hospital?*.

Each checker calls the learner's function on fresh random cases and compares it with the
package (:func:`fedlearn.evaluation.summary`, Ditto's :class:`ProxToward` step) or with the
binomial formula, so an answer tuned to the notebook's example does not pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..algorithms.personal_ditto import ProxToward
from ..evaluation import summary
from . import correct, say

__all__ = ["check_hospital_summary", "check_prox_step", "check_validation_sd"]


def check_hospital_summary(fn: Callable[[pd.DataFrame], tuple[float, str]], trials: int = 8,
                           seed: int = 0) -> None:
    """``fn(scores) -> (mean over hospitals, name of the worst hospital)``.

    ``scores`` has one row per hospital: ``hospital``, ``n`` (test patients) and ``accuracy``
    of that hospital's own model on its own test set.
    """
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        k = int(rng.integers(3, 7))
        n = rng.integers(5, 200, k)
        n[0] = 8  # one small hospital, so that pooled, weighted and per-hospital means differ
        acc = np.round(rng.uniform(0.4, 0.95, k), 3)
        names = [f"H{i}" for i in range(k)]
        scores = pd.DataFrame({"hospital": names, "n": n, "accuracy": acc})
        ref = summary(scores)
        mean, worst = fn(scores.copy())
        if not math.isclose(float(mean), float(ref["mean"]), abs_tol=1e-9):
            if math.isclose(float(mean), float(ref["weighted"]), abs_tol=1e-9):
                raise AssertionError(say(
                    en="that is the size-weighted (pooled) accuracy: it hides a small hospital "
                       "behind a large one; count each hospital once (a plain mean over "
                       "hospitals)",
                    zh="这是按规模加权的（合并的）准确率：它把小医院藏在了大医院身后；"
                       "请让每家医院只算一次（对各医院取简单平均）"))
            raise AssertionError(say(
                en=f"the mean over hospitals should be {ref['mean']:.4f}, got {float(mean):.4f}",
                zh=f"各医院的平均值应为 {ref['mean']:.4f}，收到的却是 {float(mean):.4f}"))
        if worst != ref["worst_hospital"]:
            hint = (say(en=" (that is the best one)", zh="（那是最好的一家）")
                    if worst == names[int(np.argmax(acc))] else say(en="", zh=""))
            raise AssertionError(say(
                en=f"the worst hospital is the one with the lowest accuracy, "
                   f"{ref['worst_hospital']}, not {worst!r}{hint.en}",
                zh=f"最差的医院是准确率最低的那家，即 {ref['worst_hospital']}，"
                   f"而不是 {worst!r}{hint.zh}"))
    correct(say(en="the mean counts every hospital once and the worst hospital is named",
                zh="平均值让每家医院只算一次，并且指出了最差的医院"))


def check_prox_step(fn: Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor],
                    trials: int = 8, seed: int = 0) -> None:
    """``fn(v, w, lr, lam) -> v'``: Ditto's proximal step towards the global model ``w``."""
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        d = 2 + t
        v, w = torch.randn(d, generator=g), torch.randn(d, generator=g)
        lr = float(torch.empty(1).uniform_(0.01, 0.5, generator=g))
        lam = [0.0, 0.5, 10.0, 1e4][t % 4]
        layer = nn.Linear(d, 1, bias=False)
        with torch.no_grad():
            layer.weight.copy_(v[None])
        ProxToward(lam, lr, {"weight": w[None]}).after_step(layer)
        ref = layer.weight.detach()[0]
        out = torch.as_tensor(fn(v.clone(), w.clone(), lr, lam)).reshape(-1)
        if torch.allclose(out, ref, atol=1e-5):
            continue
        grad = v - lr * lam * (v - w)
        if torch.allclose(out, grad, atol=1e-5):
            raise AssertionError(say(
                en="that is a gradient step on lam/2 ||v - w||^2: it multiplies v - w by "
                   "1 - lr*lam, which blows up once lr*lam > 2; solve the proximal problem "
                   "instead (it divides by 1 + lr*lam)",
                zh="这是对 lam/2 ||v - w||^2 走了一个梯度步：它把 v - w 乘以 1 - lr*lam，"
                   "一旦 lr*lam > 2 就会发散；请改为求解近端问题（它是除以 1 + lr*lam）"))
        raise AssertionError(say(
            en=f"for lr={lr:.3f}, lam={lam} expected {ref.tolist()}, got {out.tolist()}; "
               "minimise lam/2||u-w||^2 + ||u-v||^2/(2 lr) over u",
            zh=f"lr={lr:.3f}、lam={lam} 时应得到 {ref.tolist()}，收到的却是 {out.tolist()}；"
               "请对 u 最小化 lam/2||u-w||^2 + ||u-v||^2/(2 lr)"))
    correct(say(
        en="the proximal step shrinks v - w by 1/(1 + lr*lam): stable for every lambda",
        zh="近端步把 v - w 缩小为原来的 1/(1 + lr*lam)：对任何 lambda 都稳定"))


def check_validation_sd(fn: Callable[[float, int], float], trials: int = 8, seed: int = 0
                        ) -> None:
    """``fn(p, n) -> standard deviation`` of an accuracy measured on ``n`` validation images
    when the model's true accuracy is ``p``."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        p, n = float(rng.uniform(0.5, 0.95)), int(rng.integers(10, 500))
        ref = math.sqrt(p * (1 - p) / n)
        out = float(fn(p, n))
        if math.isclose(out, ref, rel_tol=1e-6):
            continue
        if math.isclose(out, ref**2, rel_tol=1e-6):
            raise AssertionError(say(
                en="that is the variance p(1-p)/n; take its square root",
                zh="这是方差 p(1-p)/n；请再开平方根"))
        if math.isclose(out, math.sqrt(p * (1 - p)) / n, rel_tol=1e-6):
            raise AssertionError(say(
                en="divide the variance by n before the square root: sqrt(p(1-p)/n)",
                zh="请先把方差除以 n，再开平方根：sqrt(p(1-p)/n)"))
        raise AssertionError(say(
            en=f"for p={p:.3f}, n={n} expected {ref:.4f}, got {out:.4f}; an accuracy is a mean "
               "of n Bernoulli(p) outcomes",
            zh=f"p={p:.3f}、n={n} 时应为 {ref:.4f}，收到的却是 {out:.4f}；"
               "准确率是 n 次伯努利试验 Bernoulli(p) 结果的平均值"))
    correct(say(
        en="on 78 images an accuracy near 0.8 has a standard deviation of about 0.045",
        zh="在 78 张图像上，接近 0.8 的准确率的标准差约为 0.045"))
