"""Self-checks for notebook 01, *What federated learning is, and why medicine needs it*.

Every checker recomputes the right answer independently of the notebook (from the clients'
sizes, by minimising the objectives directly, or on fresh random patients), so a learner
cannot pass by copying a number printed earlier in the notebook.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..client import Client, TrainConfig, local_train, predict_proba
from ..history import History
from ..metrics import classification_metrics
from ..models import make_model
from ..simulation import run
from ..strategy import FedAvg
from ..update import ClientUpdate
from ..utils import StateDict, clone_state
from . import correct, say

__all__ = ["check_fedavg_weights", "check_weighting_bias", "check_fixed_points",
           "check_gradient_inversion", "logreg_direction", "logreg_minimiser"]

Model = nn.Module | Mapping[str, torch.Tensor] | History


def _state_of(obj: Model) -> StateDict:
    """The weights of a model, a state dict or a finished run (``History.final_state``)."""
    if isinstance(obj, History):
        if obj.final_state is None:
            raise AssertionError(say(
                en="this History has no final weights: pass the History that fl.run returned "
                   "(or the model it trained)",
                zh="这个 `History` 没有最终权重：请传入 fl.run 返回的 `History`"
                   "（或它训练出的模型）"))
        return dict(obj.final_state)
    if isinstance(obj, nn.Module):
        return clone_state(obj.state_dict())
    if isinstance(obj, Mapping):
        return dict(obj)
    raise AssertionError(say(
        en=f"expected a model, a state dict or a History, got {type(obj).__name__}",
        zh="需要一个模型、一个状态字典（`state_dict`）或一个 `History`，"
           f"收到的却是 {type(obj).__name__}"))


def logreg_direction(obj: Model) -> torch.Tensor:
    """The parameters that matter in fedlearn's two-output logistic regression.

    ``softmax(Wx + b)`` only depends on the *difference* of the two rows: the logit of
    disease is ``(W[1] - W[0]) x + (b[1] - b[0])``. Gradient steps never change
    ``W[0] + W[1]``, so two runs that reach the same model can differ in that sum; comparing
    the differences ``(beta, beta_0)`` is the meaningful comparison. Returned as float64
    ``[beta_1, ..., beta_d, beta_0]``.
    """
    state = _state_of(obj)
    if "linear.weight" not in state or "linear.bias" not in state:
        raise AssertionError(say(
            en="expected the weights of a fl.LogisticRegression ('linear.weight', "
               f"'linear.bias'), got keys {sorted(state)}",
            zh="需要 fl.LogisticRegression 的权重（'linear.weight' 和 'linear.bias'），"
               f"收到的键却是 {sorted(state)}"))
    w, b = state["linear.weight"].double(), state["linear.bias"].double()
    if w.shape[0] != 2 or b.shape != (2,):
        raise AssertionError(say(
            en=f"expected a binary model (2 output rows), got weight {tuple(w.shape)}",
            zh=f"需要一个二分类模型（2 个输出行），收到的权重形状却是 {tuple(w.shape)}"))
    return torch.cat([w[1] - w[0], (b[1] - b[0]).reshape(1)])


def _pooled_loss(beta: torch.Tensor, parts: Sequence[tuple[torch.Tensor, torch.Tensor]],
                 weights: Sequence[float]) -> torch.Tensor:
    """sum_k weights_k * mean cross-entropy on part k, for the logistic direction ``beta``."""
    total = torch.zeros((), dtype=torch.float64)
    for (x, y), wk in zip(parts, weights, strict=True):
        z = x.double() @ beta[:-1] + beta[-1]
        total = total + wk * nn.functional.binary_cross_entropy_with_logits(z, y.double())
    return total


def logreg_minimiser(clients: Sequence[Client], weighted: bool = True) -> torch.Tensor:
    """Minimiser of ``sum_k p_k F_k`` over logistic directions, with p_k = n_k/n or 1/K.

    Solved to machine precision with L-BFGS in float64, an optimiser that has nothing to do
    with federated averaging, so it is an independent reference for a FedSGD fixed point.
    """
    parts = [(c.train.tensors[0], c.train.tensors[1]) for c in clients]
    n = np.array([c.num_train for c in clients], dtype=float)
    p = n / n.sum() if weighted else np.full(len(n), 1.0 / len(n))
    beta = torch.zeros(parts[0][0].shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([beta], lr=1.0, max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _pooled_loss(beta, parts, p)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    return beta.detach()


def check_fedavg_weights(weights: Sequence[float] | Mapping[str, float] | torch.Tensor,
                         clients: Sequence[Client]) -> None:
    """FedAvg's weights are each hospital's share of the *training* examples, n_k / n."""
    if isinstance(weights, Mapping):
        missing = [c.name for c in clients if c.name not in weights]
        assert not missing, say(en=f"no weight for {missing}; key the weights by hospital name",
                                zh=f"{missing} 没有权重：请以医院名称作为权重字典的键")
        w = np.array([float(weights[c.name]) for c in clients])
    else:
        w = np.asarray(torch.as_tensor(weights, dtype=torch.float64).reshape(-1))
    n = np.array([c.num_train for c in clients], dtype=float)
    assert w.shape == n.shape, say(
        en=f"expected one weight per hospital ({len(n)}), got {w.size}",
        zh=f"每家医院需要一个权重（共 {len(n)} 个），收到的却是 {w.size} 个")
    if np.allclose(w, n, atol=0.5):
        raise AssertionError(say(en="these are the counts n_k; divide by n = sum_k n_k",
                                 zh="这些是样本数 n_k 本身：请再除以 n = sum_k n_k"))
    assert np.isclose(w.sum(), 1.0, atol=1e-4), say(
        en=f"the weights sum to {w.sum():.4f}, not 1: divide each n_k by n = sum_k n_k",
        zh=f"这些权重之和为 {w.sum():.4f}，而不是 1：请把每个 n_k 除以 n = sum_k n_k")
    if np.allclose(w, 1.0 / len(n), atol=1e-4):
        raise AssertionError(say(
            en="1/K for everyone is the unweighted average: FedAvg weights a hospital by its "
               "share n_k / n of the training examples",
            zh="每家都取 1/K 是不加权的平均：联邦平均（FedAvg）按每家医院在全部训练样本中"
               "所占的份额 n_k / n 加权"))
    tests = [c.test for c in clients]
    if all(t is not None for t in tests):
        m = np.array([len(t) for t in tests], dtype=float)  # type: ignore[arg-type]
        if np.allclose(w, m / m.sum(), atol=1e-4) and not np.allclose(m / m.sum(), n / n.sum()):
            raise AssertionError(say(
                en="these are the shares of the *test* sets; the weights count the examples "
                   "each hospital trains on",
                zh="这些是各家*测试*集所占的份额；权重统计的是每家医院用来训练的样本"))
    assert np.allclose(w, n / n.sum(), atol=1e-4), say(
        en="expected n_k / n with n_k = len(client.train) (client.num_train)",
        zh="应为 n_k / n，其中 n_k = len(client.train)（也就是 client.num_train）")
    share = ", ".join(f"{c.name} {wk:.3f}" for c, wk in zip(clients, w, strict=True))
    correct(say(en=f"FedAvg weights n_k/n = {share}",
                zh=f"联邦平均（FedAvg）给各医院的权重 n_k/n = {share}"))


def _pooled_train_loss(obj: Model, clients: Sequence[Client]) -> float:
    parts = [(c.train.tensors[0], c.train.tensors[1]) for c in clients]
    n = np.array([c.num_train for c in clients], dtype=float)
    return float(_pooled_loss(logreg_direction(obj), parts, n / n.sum()))


def _pooled_test_metrics(obj: Model, clients: Sequence[Client]) -> dict[str, float]:
    model = make_model("logreg", in_features=clients[0].train.tensors[0].shape[1])
    model.load_state_dict(_state_of(obj))
    tests = [c.test for c in clients if c.test is not None]
    assert tests, say(en="these clients have no test sets", zh="这些医院（客户端）没有测试集")
    x = torch.cat([t.tensors[0] for t in tests])
    y = torch.cat([t.tensors[1] for t in tests])
    return classification_metrics(y, predict_proba(model, x))


def _replay_fedavg(clients: Sequence[Client], cfg: TrainConfig, rounds: int, weighted: bool,
                   seed: int) -> torch.Tensor:
    """The run the exercise asks for, made here: FedAvg(cfg, weighted) from a fresh
    ``make_model("logreg", seed=seed)`` for ``rounds`` rounds with ``fl.run(..., seed=seed)``."""
    model = make_model("logreg", in_features=clients[0].train.tensors[0].shape[1], seed=seed)
    hist = run(model, list(clients), FedAvg(cfg, weighted=weighted), rounds=rounds,
               eval_every=0, seed=seed, progress=False)
    return logreg_direction(hist)


def check_weighting_bias(unweighted: Model, weighted: Model, clients: Sequence[Client], *,
                         cfg: TrainConfig, rounds: int, seed: int = 0,
                         atol: float = 1e-4) -> None:
    """Unweighted (1/K) FedAvg must fit the pooled patients worse than weighted FedAvg.

    First the two runs are checked to BE the runs asked for: both are replayed here
    (``fl.FedAvg(cfg, weighted=False/True)`` from ``fl.make_model("logreg", seed=seed)``,
    ``rounds`` rounds, ``fl.run(..., seed=seed)``) and compared weight by weight, so an
    untrained model, swapped runs or another configuration are named as such. Then, since
    the federated objective is the pooled empirical risk, the weighted run must reach the
    lower pooled *training* loss; the message reports the bias in clinical terms.
    """
    assert not torch.allclose(logreg_direction(unweighted), logreg_direction(weighted)), say(
        en="both models are identical: train one with fl.FedAvg(cfg, weighted=False) and one "
           "with fl.FedAvg(cfg, weighted=True), each from the same fresh initial model",
        zh="两个模型完全相同：请用 fl.FedAvg(cfg, weighted=False) 和 fl.FedAvg(cfg, weighted=True) "
           "各训练一个，两者都从同一个全新的初始模型开始")
    d = clients[0].train.tensors[0].shape[1]
    start = logreg_direction(make_model("logreg", in_features=d, seed=seed))
    ref = {w: _replay_fedavg(clients, cfg, rounds, w, seed) for w in (False, True)}
    for name, obj, is_weighted in (("unweighted", unweighted, False), ("weighted", weighted, True)):
        got = logreg_direction(obj)
        if torch.allclose(got, ref[is_weighted], atol=atol):
            continue
        if torch.allclose(got, ref[not is_weighted], atol=atol):
            raise AssertionError(say(
                en=f"the model passed as `{name}` is the weighted={not is_weighted} run: did you "
                   "swap the two runs? Pass the weighted=False run first",
                zh=f"作为 `{name}` 传入的模型是 weighted={not is_weighted} 的那次运行：是不是把"
                   "两次运行传反了？请先传 weighted=False 的那次"))
        if torch.allclose(got, start, atol=atol):
            raise AssertionError(say(
                en=f"the model passed as `{name}` is the untrained initial model: pass the "
                   "History that fl.run returned (or the model after fl.run), for "
                   f"FedAvg(cfg, weighted={is_weighted})",
                zh=f"作为 `{name}` 传入的是未经训练的初始模型：请传入 fl.run 返回的 History"
                   f"（或 fl.run 之后的模型），对应 FedAvg(cfg, weighted={is_weighted})"))
        raise AssertionError(say(
            en=f"the model passed as `{name}` is not FedAvg(cfg, weighted={is_weighted}) run for "
               f"rounds={rounds} from fl.make_model('logreg', in_features={d}, seed={seed}) with "
               f"fl.run(..., seed={seed}): use the same cfg, ROUNDS and SEED as section 5",
            zh=f"作为 `{name}` 传入的模型不是从 fl.make_model('logreg', in_features={d}, "
               f"seed={seed}) 出发、用 fl.run(..., seed={seed}) 运行 rounds={rounds} 轮的 "
               f"FedAvg(cfg, weighted={is_weighted})：请使用与第 5 节相同的 cfg、ROUNDS 和 SEED"))
    lu, lw = _pooled_train_loss(unweighted, clients), _pooled_train_loss(weighted, clients)
    assert lw < lu, say(
        en=f"the weighted run has the higher pooled training loss ({lw:.4f} vs {lu:.4f}) on these "
           "clients: the bias of 1/K averaging needs hospitals of unequal sizes",
        zh=f"在这些医院上，加权的运行反而有更高的合并训练损失（{lw:.4f} 对 {lu:.4f}）："
           "1/K 平均的偏差只有在医院规模不等时才会出现")
    mu, mw = _pooled_test_metrics(unweighted, clients), _pooled_test_metrics(weighted, clients)
    correct(say(
        en=f"pooled training loss {lu:.3f} (1/K) vs {lw:.3f} (n_k/n); on the pooled test set "
           f"sensitivity {mu['sensitivity']:.2f} vs {mw['sensitivity']:.2f}, specificity "
           f"{mu['specificity']:.2f} vs {mw['specificity']:.2f}: the small hospitals got "
           "more than their share of the vote",
        zh=f"合并训练损失 {lu:.3f}（1/K）对 {lw:.3f}（n_k/n）；在合并测试集上，敏感性 "
           f"{mu['sensitivity']:.2f} 对 {mw['sensitivity']:.2f}，特异性 "
           f"{mu['specificity']:.2f} 对 {mw['specificity']:.2f}：小医院得到了超出其份额的发言权"))


def check_fixed_points(unweighted: Model, weighted: Model, clients: Sequence[Client],
                       tol: float = 0.02) -> None:
    """Unweighted FedSGD converges to argmin (1/K) sum F_k, weighted to the pooled risk's.

    ``tol`` is the allowed distance (in the logistic direction, see
    :func:`logreg_direction`) between a run's end point and the exact minimiser.
    """
    m_u, m_w = logreg_minimiser(clients, weighted=False), logreg_minimiser(clients, weighted=True)
    gap = float((m_u - m_w).norm())
    assert gap > 5 * tol, say(
        en=f"on these clients the two objectives have almost the same minimiser (distance "
           f"{gap:.3f}): their sizes are too similar. Use the quantity-skewed clients",
        zh=f"在这些医院上，两个目标函数的最小值点几乎重合（距离 {gap:.3f}）：各家规模太接近了。"
           "请使用数量偏斜的那组医院")
    d_u, d_w = logreg_direction(unweighted), logreg_direction(weighted)
    for name_en, name_zh, d, own, other in (("unweighted", "不加权的", d_u, m_u, m_w),
                                            ("weighted", "加权的", d_w, m_w, m_u)):
        to_own, to_other = float((d - own).norm()), float((d - other).norm())
        if to_own > tol:
            if to_other <= tol:
                raise AssertionError(say(
                    en=f"your {name_en} model sits on the minimiser of the *other* objective: "
                       "did you swap weighted=True/False?",
                    zh=f"你{name_zh}模型停在了*另一个*目标函数的最小值点上：是不是把 "
                       "weighted=True/False 弄反了？"))
            raise AssertionError(say(
                en=f"your {name_en} model is {to_own:.3f} from the minimiser of its objective: "
                   "not converged. Use fl.FedSGD (one full-batch step per round) for a few "
                   "hundred rounds; FedAvg with many local steps stops elsewhere (client drift, "
                   "notebook 02)",
                zh=f"你{name_zh}模型离它自己目标函数的最小值点还有 {to_own:.3f}：尚未收敛。"
                   "请用 fl.FedSGD（每轮一次全批量梯度步）运行几百轮；本地迭代步很多的 FedAvg "
                   "会停在别处（客户端漂移，见笔记本 02）"))
    lu, lw = _pooled_train_loss(unweighted, clients), _pooled_train_loss(weighted, clients)
    correct(say(
        en=f"unweighted FedSGD stops at argmin (1/K) sum_k F_k, {gap:.3f} away from the pooled-"
           f"risk minimiser that weighted FedSGD reaches (pooled training loss {lu:.4f} vs "
           f"{lw:.4f})",
        zh=f"不加权的联邦随机梯度下降（FedSGD）停在 argmin (1/K) sum_k F_k，与加权 FedSGD "
           f"到达的合并风险最小值点相距 {gap:.3f}（合并训练损失 {lu:.4f} 对 {lw:.4f}）"))


def _one_patient_update(d: int, lr: float, seed: int) -> tuple[ClientUpdate, torch.Tensor, int]:
    """A fresh model, one random patient, one SGD step: what the curious server receives."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, d, generator=g) * 2.0
    y = int(torch.randint(0, 2, (1,), generator=g))
    model = make_model("logreg", in_features=d, seed=seed)
    update = local_train(model, clone_state(model.state_dict()),
                         TensorDataset(x, torch.tensor([y])),
                         TrainConfig(steps=1, batch_size=1, lr=lr), seed=seed)
    return update, x[0], y


def check_gradient_inversion(recover: Callable[[ClientUpdate], tuple[torch.Tensor, int]],
                             trials: int = 6, seed: int = 0) -> None:
    """``recover(update) -> (x, y)`` must rebuild a patient from a one-example update.

    The updates are made here, on random patients, feature counts and learning rates, so the
    function must work from the update alone.
    """
    rng = np.random.default_rng(seed)
    for t in range(trials):
        d = int(rng.choice([5, 13, 30]))
        lr = float(rng.choice([0.01, 0.1, 1.0]))
        update, x, y = _one_patient_update(d, lr, seed=1000 * seed + t)
        out = recover(update)
        assert isinstance(out, tuple) and len(out) == 2, say(
            en="recover(update) must return a pair (features, label)",
            zh="recover(update) 必须返回一对值：（特征，标签）")
        x_hat = torch.as_tensor(out[0], dtype=torch.float32).reshape(-1)
        assert x_hat.numel() == d, say(en=f"expected {d} features, got {x_hat.numel()}",
                                       zh=f"需要 {d} 个特征，收到的却是 {x_hat.numel()} 个")
        if not torch.allclose(x_hat, x, rtol=1e-3, atol=1e-4):
            ratio = x_hat / x
            if torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-3):
                raise AssertionError(say(
                    en=f"your features are x times {float(ratio[0]):.4g}: divide a row of the "
                       "weight delta by the SAME row of the bias delta, so that the learning "
                       "rate and (p - y) cancel",
                    zh=f"你的特征是 x 乘以 {float(ratio[0]):.4g}：请用权重增量的某一行除以偏置"
                       "增量的*同一*行，这样学习率和 (p - y) 才会约掉"))
            raise AssertionError(say(
                en="the features do not match: x = delta['linear.weight'][j] / "
                   "delta['linear.bias'][j] for either row j",
                zh="特征不对：对任意一行 j，x = delta['linear.weight'][j] / "
                   "delta['linear.bias'][j]"))
        assert int(out[1]) == y, say(
            en="the features are right but the label is not: the bias delta of row 1 is "
               "-lr (p_1 - y); p_1 lies in (0, 1), so its sign tells y",
            zh="特征对了，标签却不对：第 1 行的偏置增量是 -lr (p_1 - y)；p_1 位于 (0, 1) 之间，"
               "所以它的正负号就告诉了你 y")
    correct(say(
        en=f"recovered {trials} random patients exactly from one-example updates: a single "
           "patient's update is that patient's record",
        zh=f"从单样本更新中精确还原了 {trials} 名随机患者：只来自一名患者的更新，"
           "就是这名患者的记录"))
