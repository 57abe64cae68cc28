"""The self-checks of notebooks 01 and 02 accept the reference answers and reject wrong ones.

The reference answers here are the notebooks' solutions, written again in the shortest form.
Wrong answers are the mistakes a learner is likely to make (unweighted averaging, swapped
runs, a step uphill, the minimiser of the sum instead of FedAvg's end point, ...).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.exercises import nb01, nb02
from fedlearn.update import ClientUpdate

from .exercise_language import assert_correct, exercise_language, only_in, rejects  # noqa: F401
from .helpers import blobs

pytestmark = pytest.mark.usefixtures("exercise_language")

# ----------------------------------------------------------------------------------- notebook 01


def _noisy_logistic(n: int, seed: int) -> TensorDataset:
    """Labels drawn from a logistic model with modest weights: a well-conditioned risk whose
    minimiser is finite and close, so FedSGD reaches it in a few hundred rounds."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    p = torch.sigmoid(x @ torch.tensor([1.0, -0.5, 0.5, 0.0]) + 0.3)
    return TensorDataset(x, torch.bernoulli(p, generator=g).long())


def _skewed_clients() -> list[fl.Client]:
    """Five hospitals of very different sizes drawn from one synthetic population."""
    data = _noisy_logistic(400, seed=3)
    parts = fl.partition.size_partition(400, [250, 100, 30, 12, 8], seed=0)
    test = _noisy_logistic(200, seed=4)
    test_parts = fl.partition.size_partition(200, [100, 50, 30, 12, 8], seed=0)
    return fl.clients_from_partition(data, parts, test=test, test_parts=test_parts)


def _fedsgd(clients: list[fl.Client], weighted: bool, rounds: int = 100) -> fl.History:
    model = fl.make_model("logreg", in_features=4, seed=0)
    return fl.run(model, clients, fl.FedSGD(lr=1.0, weighted=weighted), rounds=rounds,
                  eval_every=0, progress=False)


@pytest.fixture(scope="module")
def skewed() -> tuple[list[fl.Client], fl.History, fl.History]:
    # Tiny tensors: one thread avoids thread hand-off overhead that dominates on a busy CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clients = _skewed_clients()
        return clients, _fedsgd(clients, weighted=False), _fedsgd(clients, weighted=True)
    finally:
        torch.set_num_threads(threads)


def test_fedavg_weights(capsys: pytest.CaptureFixture[str]) -> None:
    clients = _skewed_clients()
    n = np.array([c.num_train for c in clients])
    nb01.check_fedavg_weights(n / n.sum(), clients)
    nb01.check_fedavg_weights({c.name: c.num_train / n.sum() for c in clients}, clients)
    assert_correct(capsys.readouterr().out)
    for wrong, hint in [(np.full(5, 0.2), "unweighted"), (n, "counts"),
                        (n / n.sum() * 2, "sum to"), (n[:4] / n[:4].sum(), "one weight")]:
        with rejects(hint):
            nb01.check_fedavg_weights(wrong, clients)


def test_fedavg_weights_rejects_test_set_shares() -> None:
    clients = _skewed_clients()
    m = np.array([len(c.test) for c in clients])
    with rejects("test"):
        nb01.check_fedavg_weights(m / m.sum(), clients)


def test_fixed_points(skewed, capsys: pytest.CaptureFixture[str]) -> None:
    clients, unweighted, weighted = skewed
    nb01.check_fixed_points(unweighted, weighted, clients)
    assert_correct(capsys.readouterr().out)
    with rejects("swap"):
        nb01.check_fixed_points(weighted, unweighted, clients)
    with rejects("not converged"):
        nb01.check_fixed_points(_fedsgd(clients, weighted=False, rounds=1), weighted, clients)


def test_fixed_points_needs_unequal_sizes() -> None:
    data = blobs(200, d=4, seed=3)
    clients = fl.clients_from_partition(data, fl.partition.iid_partition(200, 4, seed=0))
    h = _fedsgd(clients, weighted=True, rounds=2)
    with rejects("too similar"):
        nb01.check_fixed_points(h, h, clients)


@only_in("en")  # no message to check
def test_fixed_point_references_are_minimisers(skewed) -> None:
    clients, unweighted, weighted = skewed
    for weighted_obj, run in ((False, unweighted), (True, weighted)):
        ref = nb01.logreg_minimiser(clients, weighted=weighted_obj)
        assert torch.allclose(nb01.logreg_direction(run), ref, atol=1e-3)


BIAS_CFG = fl.TrainConfig(steps=5, batch_size=8, lr=0.1)
BIAS_ROUNDS = 8


def _fedavg(clients: list[fl.Client], weighted: bool, cfg: fl.TrainConfig = BIAS_CFG,
            seed: int = 0) -> fl.History:
    model = fl.make_model("logreg", in_features=4, seed=seed)
    return fl.run(model, clients, fl.FedAvg(cfg, weighted=weighted), rounds=BIAS_ROUNDS,
                  eval_every=0, seed=seed, progress=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids thread hand-off overhead that dominates on a busy CPU
    (the checkers replay runs, so this matters here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fedavg_runs() -> tuple[list[fl.Client], fl.History, fl.History]:
    clients = _skewed_clients()
    return clients, _fedavg(clients, weighted=False), _fedavg(clients, weighted=True)


def test_fixed_points_rejects_an_untrained_model(skewed) -> None:
    clients, _, weighted = skewed
    untrained = fl.make_model("logreg", in_features=4, seed=0)
    with rejects("not converged"):
        nb01.check_fixed_points(untrained, weighted, clients)


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
def test_weighting_bias(fedavg_runs, capsys: pytest.CaptureFixture[str]) -> None:
    clients, unweighted, weighted = fedavg_runs
    nb01.check_weighting_bias(unweighted, weighted, clients, cfg=BIAS_CFG, rounds=BIAS_ROUNDS)
    assert_correct(capsys.readouterr().out, en="specificity", zh="特异性")


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
def test_weighting_bias_rejects_wrong_runs(fedavg_runs) -> None:
    """Swapped runs, an untrained model and another configuration are each named."""
    clients, unweighted, weighted = fedavg_runs
    untrained = fl.make_model("logreg", in_features=4, seed=0)
    other_lr = _fedavg(clients, weighted=False, cfg=fl.TrainConfig(steps=5, batch_size=8, lr=0.3))
    other_seed = _fedavg(clients, weighted=True, seed=1)
    for args, hint in [((weighted, unweighted), "swap"), ((weighted, weighted), "identical"),
                       ((untrained, weighted), "untrained"), ((other_lr, weighted), "not FedAvg"),
                       ((unweighted, other_seed), "seed=0")]:
        with rejects(hint):
            nb01.check_weighting_bias(*args, clients, cfg=BIAS_CFG, rounds=BIAS_ROUNDS)


def _recover(update: ClientUpdate) -> tuple[torch.Tensor, int]:
    dw, db = update.delta["linear.weight"], update.delta["linear.bias"]
    return dw[1] / db[1], int(db[1] > 0)


def test_gradient_inversion(capsys: pytest.CaptureFixture[str]) -> None:
    nb01.check_gradient_inversion(_recover)
    assert_correct(capsys.readouterr().out)


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda u: (u.delta["linear.weight"][1], int(u.delta["linear.bias"][1] > 0)), "times"),
    (lambda u: (u.delta["linear.weight"][1] / u.delta["linear.bias"][1],
                int(u.delta["linear.bias"][1] < 0)), "label"),
    (lambda u: (u.delta["linear.weight"][1] / u.delta["linear.bias"][0], 1), "SAME row"),
    (lambda u: torch.zeros(3), "pair"),
])
def test_gradient_inversion_rejects(wrong, hint: str) -> None:
    with rejects(hint):
        nb01.check_gradient_inversion(wrong)


def test_state_of_accepts_models_states_and_histories(skewed) -> None:
    clients, unweighted, _ = skewed
    model = fl.make_model("logreg", in_features=4)
    model.load_state_dict(unweighted.final_state)
    ref = nb01.logreg_direction(unweighted)
    assert torch.equal(nb01.logreg_direction(model), ref)
    assert torch.equal(nb01.logreg_direction(model.state_dict()), ref)
    with rejects("LogisticRegression"):
        nb01.logreg_direction(fl.make_model("mlp", in_features=4))
    with rejects("final weights"):
        nb01.logreg_direction(fl.History())


# ----------------------------------------------------------------------------------- notebook 02


def _sgd_step(w, b, x, y, lr):
    p = torch.softmax(x @ w.T + b, dim=1)
    r = p - torch.nn.functional.one_hot(y, 2).float()
    return w - lr * r.T @ x / len(x), b - lr * r.mean(0)


def test_sgd_step(capsys: pytest.CaptureFixture[str]) -> None:
    nb02.check_sgd_step(_sgd_step)
    assert_correct(capsys.readouterr().out)


def _uphill(w, b, x, y, lr):
    return _sgd_step(w, b, x, y, -lr)


def _summed(w, b, x, y, lr):
    return _sgd_step(w, b, x, y, lr * len(x))


def _bad_bias(w, b, x, y, lr):
    return _sgd_step(w, b, x, y, lr)[0], b


@pytest.mark.parametrize(("wrong", "hint"), [
    (_uphill, "uphill"), (_summed, "B times"), (_bad_bias, "b is not"),
    (lambda w, b, x, y, lr: (w.T, b), "shapes"), (lambda w, b, x, y, lr: (w * 0.9, b), "wrong"),
])
def test_sgd_step_rejects(wrong, hint: str) -> None:
    with rejects(hint):
        nb02.check_sgd_step(wrong)


def _fixed_point(hessians, centers, weights, lr, local_steps):
    p = torch.tensor(weights, dtype=torch.float64) / sum(weights)
    eye = torch.eye(len(centers[0]), dtype=torch.float64)
    shrink = [eye - torch.linalg.matrix_power(eye - lr * h, local_steps) for h in hessians]
    lhs = sum(pk * s for pk, s in zip(p, shrink, strict=True))
    rhs = sum(pk * s @ a for pk, s, a in zip(p, shrink, centers, strict=True))
    return torch.linalg.solve(lhs, rhs)


def _minimiser_of_sum(hessians, centers, weights, lr, local_steps):
    return _fixed_point(hessians, centers, weights, lr, 1)


def _mean_of_optima(hessians, centers, weights, lr, local_steps):
    p = torch.tensor(weights, dtype=torch.float64) / sum(weights)
    return sum(pk * a for pk, a in zip(p, centers, strict=True))


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
def test_fedavg_fixed_point(capsys: pytest.CaptureFixture[str]) -> None:
    nb02.check_fedavg_fixed_point(_fixed_point)
    assert_correct(capsys.readouterr().out)


@pytest.mark.parametrize(("wrong", "hint"), [
    (_minimiser_of_sum, "ONE local step"), (_mean_of_optima, "infinitely many"),
    (lambda h, a, w, lr, e: _fixed_point(h, a, [1.0] * len(a), lr, e), "wrong end point"),
])
def test_fedavg_fixed_point_rejects(wrong, hint: str) -> None:
    with rejects(hint):
        nb02.check_fedavg_fixed_point(wrong)


@only_in("en")  # a reference helper; its message is checked by test_exercises_language
def test_fedavg_map_limit_is_gradient_descent_fixed_point_for_one_step() -> None:
    h = [torch.diag(torch.tensor([3.0, 0.3], dtype=torch.float64)),
         torch.diag(torch.tensor([0.3, 3.0], dtype=torch.float64))]
    a = [torch.tensor([1.0, 1.0], dtype=torch.float64), torch.tensor([-1.0, -1.0],
                                                                      dtype=torch.float64)]
    w = nb02.fedavg_map_limit(h, a, [1.0, 1.0], lr=0.2, local_steps=1)
    grad = sum(hk @ (w - ak) for hk, ak in zip(h, a, strict=True))
    assert float(grad.norm()) < 1e-10
    with pytest.raises(RuntimeError, match="converge"):
        nb02.fedavg_map_limit(h, a, [1.0, 1.0], lr=1.5, local_steps=1, rounds=500)


def test_largest_stable_lr(capsys: pytest.CaptureFixture[str]) -> None:
    a = torch.tensor([[4.0, 1.0], [1.0, 0.5]])
    lam = torch.linalg.eigvalsh(a.double())
    nb02.check_largest_stable_lr(2 / float(lam.max()), a)
    assert_correct(capsys.readouterr().out)
    for wrong, hint in [(1 / float(lam.max()), "twice"), (2 / float(lam.min()), "smallest"),
                        (0.1, "factors")]:
        with rejects(hint):
            nb02.check_largest_stable_lr(wrong, a)


@only_in("en")  # no message to check
def test_largest_stable_lr_is_the_divergence_threshold() -> None:
    """GD just below 2/L converges and just above diverges, which is what the check claims."""
    a = torch.tensor([[4.0, 1.0], [1.0, 0.5]], dtype=torch.float64)
    lr_max = 2 / float(torch.linalg.eigvalsh(a).max())
    for factor, converges in ((0.99, True), (1.01, False)):
        w = torch.tensor([1.0, 1.0], dtype=torch.float64)
        for _ in range(3000):
            w = w - factor * lr_max * (a @ w)
        assert (float(w.norm()) < 1e-3) == converges



@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
def test_lr_decay_accepts_a_harmonic_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    nb02.check_lr_decay(lambda t: 0.3 / (1 + t / 10))
    assert_correct(capsys.readouterr().out)


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda t: 0.3, "biased fixed point"),                  # constant rate
    (lambda t: 0.3 * 0.5 ** t, "training stops early"),     # geometric: the sum converges
    (lambda t: 1.5 / (1 + t), "unstable"),                   # too large a start
    (lambda t: 0.3 / (1 + t / 1000), "biased fixed point"),  # decays far too slowly
    (lambda t: -0.1, "positive"),
])
def test_lr_decay_rejects_wrong_schedules(wrong, hint: str) -> None:
    with rejects(hint):
        nb02.check_lr_decay(wrong)
