"""Self-checks for notebook 02, *Local SGD*.

The checkers call the learner's function on fresh random problems and compare with a
reference computed another way (``torch.optim.SGD`` with autograd; iterating the FedAvg map
until it stops moving; the eigenvalues of the Hessian), so a formula that only happens to
fit the notebook's example does not pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from . import correct, say

__all__ = ["check_sgd_step", "check_fedavg_fixed_point", "check_largest_stable_lr",
           "check_lr_decay", "fedavg_map_limit"]

SGDStep = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float],
                   tuple[torch.Tensor, torch.Tensor]]


def _reference_step(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of torch.optim.SGD on nn.Linear + mean cross-entropy (autograd gradients)."""
    layer = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(b)
    opt = torch.optim.SGD(layer.parameters(), lr=lr)
    nn.functional.cross_entropy(layer(x), y).backward()
    opt.step()
    return layer.weight.detach().clone(), layer.bias.detach().clone()


def check_sgd_step(sgd_step: SGDStep, trials: int = 5, seed: int = 0) -> None:
    """``sgd_step(W, b, x, y, lr) -> (W_new, b_new)``: one minibatch step of logistic regression.

    ``W`` is (2, d), ``b`` is (2,), ``x`` is (B, d), ``y`` is (B,) with labels in {0, 1};
    the loss is the mean cross-entropy of ``softmax(x W^T + b)``, as in ``fl.local_train``.
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        d, batch = 3 + 4 * t, [1, 4, 7, 16, 32][t % 5]
        lr = [0.05, 0.5, 1.0, 0.01, 0.2][t % 5]
        w, b = torch.randn(2, d, generator=g), torch.randn(2, generator=g)
        x, y = torch.randn(batch, d, generator=g), torch.randint(0, 2, (batch,), generator=g)
        w_ref, b_ref = _reference_step(w, b, x, y, lr)
        out = sgd_step(w.clone(), b.clone(), x.clone(), y.clone(), lr)
        assert isinstance(out, tuple) and len(out) == 2, say(
            en="sgd_step must return (W_new, b_new)", zh="sgd_step 必须返回 (W_new, b_new)")
        w_new, b_new = (torch.as_tensor(o).detach().float() for o in out)
        assert w_new.shape == w.shape and b_new.shape == b.shape, say(
            en=f"shapes: expected W {tuple(w.shape)} and b {tuple(b.shape)}, got "
               f"{tuple(w_new.shape)} and {tuple(b_new.shape)}: grad_W = (P - Y)^T X / B",
            zh=f"形状不对：W 应为 {tuple(w.shape)}、b 应为 {tuple(b.shape)}，收到的却是 "
               f"{tuple(w_new.shape)} 和 {tuple(b_new.shape)}：grad_W = (P - Y)^T X / B")
        if torch.allclose(w_new, w_ref, atol=1e-5) and torch.allclose(b_new, b_ref, atol=1e-5):
            continue
        if torch.allclose(w_new, 2 * w - w_ref, atol=1e-5):
            raise AssertionError(say(
                en="you stepped uphill: W_new = W - lr * grad, not W + lr * grad",
                zh="你朝上坡走了一步：应是 W_new = W - lr * grad，而不是 W + lr * grad"))
        if batch > 1 and torch.allclose(w_new - w, batch * (w_ref - w), atol=1e-4):
            raise AssertionError(say(
                en="your step is B times too large: the loss is the *mean* over the minibatch, "
                   "so divide the summed gradient by B",
                zh="你的步长大了 B 倍：损失是小批量上的*平均值*，所以要把求和得到的梯度除以 B"))
        if torch.allclose(w_new, w_ref, atol=1e-5):
            raise AssertionError(say(
                en="W is right but b is not: grad_b is the mean of (p_i - e_{y_i})",
                zh="W 对了，b 却不对：grad_b 是 (p_i - e_{y_i}) 的平均值"))
        raise AssertionError(say(
            en="wrong step: with P = softmax(x W^T + b) and Y the one-hot labels, "
               "grad_W = (P - Y)^T x / B and grad_b = (P - Y).mean(0)",
            zh="这一步不对：设 P = softmax(x W^T + b)，Y 为独热（one-hot）标签，则 "
               "grad_W = (P - Y)^T x / B，grad_b = (P - Y).mean(0)"))
    correct(say(
        en=f"your step matches torch.optim.SGD with autograd on {trials} random minibatches",
        zh=f"在 {trials} 个随机小批量上，你的一步与 torch.optim.SGD 加自动求导的结果一致"))


def fedavg_map_limit(hessians: Sequence[torch.Tensor], centers: Sequence[torch.Tensor],
                     weights: Sequence[float], lr: float, local_steps: int,
                     rounds: int = 100_000, tol: float = 1e-13) -> torch.Tensor:
    """Where FedAvg on quadratics ``F_k(w) = 1/2 (w - a_k)^T A_k (w - a_k)`` stops, by brute force.

    Runs the rounds themselves (every client takes ``local_steps`` gradient steps from the
    global point, the server takes the weighted mean) until the global point stops moving.
    No closed form is used, which is what makes it a reference for the formula.
    """
    p = torch.tensor([float(v) for v in weights], dtype=torch.float64)
    p = p / p.sum()
    a_list = [a.double() for a in centers]
    h_list = [h.double() for h in hessians]
    w = torch.zeros_like(a_list[0])
    for _ in range(rounds):
        new = torch.zeros_like(w)
        for pk, h, a in zip(p, h_list, a_list, strict=True):
            wk = w.clone()
            for _ in range(local_steps):
                wk = wk - lr * (h @ (wk - a))
            new += pk * wk
        if float((new - w).norm()) < tol:
            return new
        w = new
    raise RuntimeError(say(
        en="FedAvg did not converge: is lr below 2 / L for every client?",
        zh="联邦平均（FedAvg）没有收敛：每个参与方的 lr 都小于 2 / L 吗？"))


def _random_spd(d: int, g: torch.Generator, cond: float) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, float(np.log10(cond)), d, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.T


def check_fedavg_fixed_point(fixed_point: Callable[..., torch.Tensor], seed: int = 0) -> None:
    """``fixed_point(hessians, centers, weights, lr, local_steps) -> w``: FedAvg's end point.

    Checked on random quadratics in 2 and 3 dimensions with unequal curvatures, for one and
    for many local steps, against :func:`fedavg_map_limit`.
    """
    g = torch.Generator().manual_seed(seed)
    cases = [(2, 2, 1), (2, 2, 5), (2, 3, 20), (3, 2, 10), (3, 4, 3)]
    for d, k, steps in cases:
        hs = [_random_spd(d, g, cond=10.0) * (0.2 + i) for i in range(k)]
        centers = [3 * torch.randn(d, generator=g, dtype=torch.float64) for _ in range(k)]
        weights = [float(v) for v in torch.randint(5, 100, (k,), generator=g)]
        lr = 1.0 / max(float(torch.linalg.eigvalsh(h).max()) for h in hs)
        ref = fedavg_map_limit(hs, centers, weights, lr, steps)
        out = torch.as_tensor(fixed_point(hs, centers, weights, lr, steps),
                              dtype=torch.float64).reshape(-1)
        assert out.shape == ref.shape, say(
            en=f"expected a vector of {d} numbers, got {tuple(out.shape)}",
            zh=f"需要一个含 {d} 个数的向量，收到的形状却是 {tuple(out.shape)}")
        if torch.allclose(out, ref, rtol=1e-6, atol=1e-8):
            continue
        p = torch.tensor(weights, dtype=torch.float64) / sum(weights)
        w_star = torch.linalg.solve(sum(pi * h for pi, h in zip(p, hs, strict=True)),
                                    sum(pi * h @ a for pi, h, a in zip(p, hs, centers,
                                                                       strict=True)))
        mean_center = sum(pi * a for pi, a in zip(p, centers, strict=True))
        if steps > 1 and torch.allclose(out, w_star, rtol=1e-6, atol=1e-8):
            raise AssertionError(say(
                en="that is the minimiser of sum_k p_k F_k, where FedAvg stops only for ONE "
                   "local step; with E steps, client k maps w to a_k + (I - lr A_k)^E (w - a_k)",
                zh="这是 sum_k p_k F_k 的最小值点，只有在*一个*本地迭代步时 FedAvg 才停在那里；"
                   "有 E 步时，参与方 k 把 w 映射为 a_k + (I - lr A_k)^E (w - a_k)"))
        if torch.allclose(out, mean_center, rtol=1e-6, atol=1e-8):
            raise AssertionError(say(
                en="that is the weighted mean of the local optima, the limit for infinitely "
                   "many local steps; use (I - lr A_k)^E",
                zh="这是各本地最优点的加权平均，即本地迭代步数趋于无穷时的极限；"
                   "请使用 (I - lr A_k)^E"))
        raise AssertionError(say(
            en=f"wrong end point for d={d}, K={k}, E={steps}: solve sum_k p_k "
               "(I - M_k) w = sum_k p_k (I - M_k) a_k with M_k = (I - lr A_k)^E",
            zh=f"d={d}、K={k}、E={steps} 时终点不对：请求解 sum_k p_k "
               "(I - M_k) w = sum_k p_k (I - M_k) a_k，其中 M_k = (I - lr A_k)^E"))
    correct(say(
        en=f"your formula matches FedAvg run to convergence on {len(cases)} random problems",
        zh=f"在 {len(cases)} 个随机问题上，你的公式与运行到收敛的联邦平均（FedAvg）一致"))


def check_largest_stable_lr(lr: float, hessian: torch.Tensor) -> None:
    """Gradient descent on ``1/2 w^T A w`` converges iff ``lr < 2 / lambda_max(A)``."""
    eig = torch.linalg.eigvalsh(torch.as_tensor(hessian, dtype=torch.float64))
    lam_max, lam_min = float(eig.max()), float(eig.min())
    lr = float(lr)
    target = 2.0 / lam_max
    if np.isclose(lr, 1.0 / lam_max, rtol=1e-3):
        raise AssertionError(say(
            en="1/L is the step that lands exactly on the minimum along the stiffest direction; "
               "GD stays stable up to twice that",
            zh="1/L 是沿最陡方向恰好一步落到最小值的步长；梯度下降在它的两倍以内都保持稳定"))
    if np.isclose(lr, 2.0 / lam_min, rtol=1e-3) or np.isclose(lr, 1.0 / lam_min, rtol=1e-3):
        raise AssertionError(say(
            en="you used the smallest eigenvalue: the stiffest direction (largest eigenvalue L) "
               "is the first to blow up",
            zh="你用了最小的特征值：最陡的方向（最大特征值 L）才是最先发散的方向"))
    assert np.isclose(lr, target, rtol=1e-3), say(
        en="along eigenvector i the error is multiplied by (1 - lr * lambda_i) each step: all "
           "these factors must lie in (-1, 1)",
        zh="沿第 i 个特征向量，误差每一步都乘以 (1 - lr * lambda_i)：这些因子都必须落在 "
           "(-1, 1) 之内")
    correct(say(
        en=f"largest stable learning rate 2/L = {target:.4f} (L = lambda_max = {lam_max:.4f})",
        zh=f"最大的稳定学习率 2/L = {target:.4f}（L = lambda_max = {lam_max:.4f}）"))


def _fedavg_with_schedule(hs: Sequence[torch.Tensor], centers: Sequence[torch.Tensor],
                          p: torch.Tensor, schedule: Callable[[int], float], local_steps: int,
                          rounds: int, start: torch.Tensor) -> torch.Tensor:
    """FedAvg on quadratic clients, round t with learning rate ``schedule(t)``: client k maps
    w to a_k + (I - lr_t A_k)^E (w - a_k), the server takes the p-weighted mean."""
    eye = torch.eye(start.numel(), dtype=torch.float64)
    w = start.clone()
    for t in range(rounds):
        lr = float(schedule(t))
        w = sum(pk * (c + torch.linalg.matrix_power(eye - lr * h, local_steps) @ (w - c))
                for pk, h, c in zip(p, hs, centers, strict=True))
    return w


def check_lr_decay(schedule: Callable[[int], float], local_steps: int = 5, rounds: int = 400,
                   seed: int = 0) -> None:
    """``schedule(t)``: the learning rate of round t = 0, 1, ... for FedAvg's local steps.

    Li et al. (ICLR 2020): with a constant learning rate, FedAvg with E > 1 local steps stops
    at a biased fixed point; with a decaying rate (eta_t -> 0 but sum_t eta_t = infinity) it
    converges to the federated optimum w*. The schedule is run here on random two-client
    quadratics (curvatures in [0.1, 3], so rates up to 0.6 are stable) and must end at least
    four times closer to w* than a constant rate schedule(0) does.
    """
    g = torch.Generator().manual_seed(seed)
    rates = [float(schedule(t)) for t in range(rounds)]
    assert all(np.isfinite(rates)) and min(rates) > 0, say(
        en="the schedule must give a positive, finite learning rate for every round",
        zh="学习率计划必须为每一轮给出一个有限的正学习率")
    assert rates[0] <= 0.6, say(
        en=f"schedule(0) = {rates[0]:.3g} is unstable on these problems (curvature up to 3): "
           "start at most at the notebook's 0.3-0.6",
        zh=f"schedule(0) = {rates[0]:.3g} 在这些问题上不稳定（曲率最高为 3）："
           "起始值最多取笔记本中的 0.3-0.6")
    assert rates[-1] < 0.5 * rates[0], say(
        en=f"the rate of round {rounds - 1} is {rates[-1]:.3g}, not much below schedule(0) = "
           f"{rates[0]:.3g}: a constant (or slowly shrinking) rate keeps FedAvg at its biased "
           "fixed point; let eta_t go to 0, e.g. eta_0 / (1 + t / 10)",
        zh=f"第 {rounds - 1} 轮的学习率是 {rates[-1]:.3g}，并不比 schedule(0) = "
           f"{rates[0]:.3g} 小多少：恒定（或缓慢减小）的学习率会让 FedAvg 停在有偏的不动点上；"
           "请让 eta_t 趋于 0，例如 eta_0 / (1 + t / 10)")
    for trial in range(3):
        hs = [torch.diag(torch.empty(2, dtype=torch.float64).uniform_(0.1, 3.0, generator=g))
              for _ in range(2)]
        centers = [3 * torch.randn(2, generator=g, dtype=torch.float64) for _ in range(2)]
        p = torch.tensor([0.5, 0.5], dtype=torch.float64)
        w_star = torch.linalg.solve(sum(pk * h for pk, h in zip(p, hs, strict=True)),
                                    sum(pk * h @ c for pk, h, c in zip(p, hs, centers,
                                                                       strict=True)))
        start = torch.zeros(2, dtype=torch.float64)
        const = _fedavg_with_schedule(hs, centers, p, lambda t: rates[0], local_steps, rounds,
                                      start)
        decayed = _fedavg_with_schedule(hs, centers, p, lambda t: rates[t], local_steps, rounds,
                                        start)
        bias, left = float((const - w_star).norm()), float((decayed - w_star).norm())
        if left > 0.25 * bias:
            if sum(rates) * local_steps * 0.1 < 3:
                raise AssertionError(say(
                    en=f"the rates decay so fast that training stops early (sum_t eta_t = "
                       f"{sum(rates):.3g}): FedAvg ends {left:.3f} from w* on problem {trial}. "
                       "The sum over rounds must keep growing: 1/t or 1/sqrt(t) decay, not "
                       "geometric",
                    zh=f"学习率衰减得太快，训练过早停止（sum_t eta_t = {sum(rates):.3g}）："
                       f"在第 {trial} 个问题上 FedAvg 最终离 w* 还有 {left:.3f}。各轮学习率之和"
                       "必须持续增长：应按 1/t 或 1/sqrt(t) 衰减，而不是几何衰减"))
            raise AssertionError(say(
                en=f"FedAvg with your schedule ends {left:.3f} from w* on problem {trial}, "
                   f"against {bias:.3f} for a constant rate: decay further (eta_t -> 0)",
                zh=f"在第 {trial} 个问题上，用你的学习率计划 FedAvg 最终离 w* 还有 {left:.3f}，"
                   f"而恒定学习率是 {bias:.3f}：请继续衰减（eta_t -> 0）"))
    correct(say(
        en=f"with your decaying schedule FedAvg ({local_steps} local steps) ends within "
           f"{left:.4f} of w*, where the constant rate stops {bias:.3f} away: the drift bias "
           "shrinks with the learning rate",
        zh=f"用你的衰减学习率计划，FedAvg（{local_steps} 个本地迭代步）最终离 w* 不到 "
           f"{left:.4f}，而恒定学习率停在 {bias:.3f} 之外：漂移带来的偏差随学习率一起减小"))
