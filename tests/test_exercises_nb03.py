"""The self-checks of notebook 03 accept the reference answers and reject the likely mistakes.

Reference answers are the notebook's solutions in their shortest form; wrong answers are the
slips a learner is likely to make (E*n/B without the last partial batch, one direction of
traffic only, parameters instead of bytes, a minibatch FedAvg passed off as FedSGD, ...).
"""

from __future__ import annotations

import math

import pytest
import torch

import fedlearn as fl
from fedlearn.exercises import nb03

from .exercise_language import assert_correct, exercise_language, only_in, rejects  # noqa: F401
from .helpers import blobs

pytestmark = pytest.mark.usefixtures("exercise_language")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Tiny tensors: thread hand-offs would dominate on a shared CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------- local updates u


def _u(n: int, epochs: int, batch_size: int | None) -> int:
    return epochs if batch_size is None else epochs * math.ceil(n / batch_size)


@only_in("en")  # no message to check
def test_count_local_steps_runs_local_train() -> None:
    assert nb03.count_local_steps(151, 1, 50) == 4  # 50 + 50 + 50 + 1
    assert nb03.count_local_steps(200, 3, None) == 3
    assert nb03.count_local_steps(600, 5, 10) == 300  # McMahan et al.'s u for E=5, B=10


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
def test_local_updates_accepts_ceil(capsys: pytest.CaptureFixture[str]) -> None:
    nb03.check_local_updates(_u)
    assert_correct(capsys.readouterr().out)


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda n, e, b: e * n / b if b else e, "ceil"),
    (lambda n, e, b: e * (n // b) if b else e, "ceil"),
    (lambda n, e, b: e * math.ceil(n / b) if b else e * n, "ONE step per epoch"),
    (lambda n, e, b: math.ceil(n / b) if b else 1, "expected"),
    (lambda n, e, b: "many", "number of steps"),
])
def test_local_updates_rejects(wrong, hint: str) -> None:
    with rejects(hint):
        nb03.check_local_updates(wrong)


# -------------------------------------------------------------------------- bytes per round


@only_in("en")  # no message to check
def test_round_nbytes_matches_the_simulation() -> None:
    """The checker's count is what fl.run logs, for a sampled fraction of the clients."""
    data = blobs(200, d=6, seed=1)
    parts = fl.partition.iid_partition(200, 8, seed=0)
    clients = fl.clients_from_partition(data, parts)
    model = fl.make_model("mlp", in_features=6, hidden=(5,), seed=0)
    hist = fl.run(model, clients, fl.FedAvg(fl.TrainConfig(epochs=1, batch_size=20)), rounds=2,
                  fraction=0.5, eval_every=0, progress=False)
    frame = hist.rounds_frame()
    per_round = (frame["bytes_up"] + frame["bytes_down"]).tolist()
    assert per_round == [nb03.round_nbytes(model, 4)] * 2
    assert per_round[0] == 2 * 4 * 4 * fl.num_parameters(model)


def test_bytes_per_round_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    model = fl.SmallCNN(width=8)
    m = 5  # round(0.25 * 20)
    nb03.check_bytes_per_round(2 * m * 4 * fl.num_parameters(model), model, 20, 0.25)
    assert_correct(capsys.readouterr().out)


@pytest.mark.parametrize(("factor", "hint"), [
    (0.5, "both directions"),
    (0.25, "parameters"),
    (4.0, "only the sampled"),
    (1e-6, "bytes, not megabytes"),
    (3.0, "expected 2"),
])
def test_bytes_per_round_rejects(factor: float, hint: str) -> None:
    model = fl.SmallCNN(width=8)
    truth = 2 * 5 * 4 * fl.num_parameters(model)
    with rejects(hint):
        nb03.check_bytes_per_round(truth * factor, model, 20, 0.25)


def test_bytes_per_round_rejects_non_numbers() -> None:
    with rejects("number of bytes"):
        nb03.check_bytes_per_round("a lot", fl.SmallCNN(width=8), 20, 0.25)


# ------------------------------------------------------------------ FedAvg(E=1, B=inf) = FedSGD


@pytest.mark.parametrize("cfg", [
    fl.TrainConfig(epochs=1, batch_size=None, lr=0.5),
    fl.TrainConfig(steps=1, batch_size=None, lr=0.5),
])
def test_fedavg_is_fedsgd_accepts(cfg: fl.TrainConfig, capsys: pytest.CaptureFixture[str]) -> None:
    nb03.check_fedavg_is_fedsgd(fl.FedAvg(cfg), lr=0.5)
    assert_correct(capsys.readouterr().out)


@pytest.mark.parametrize(("strategy", "hint"), [
    (fl.FedSGD(0.5), "not fl.FedSGD"),
    ("FedAvg", "expected an fl.FedAvg"),
    (fl.FedAvg(fl.TrainConfig(epochs=1, batch_size=10, lr=0.5)), "batch_size=None"),
    (fl.FedAvg(fl.TrainConfig(epochs=2, batch_size=None, lr=0.5)), "exactly one local step"),
    (fl.FedAvg(fl.TrainConfig(epochs=1, batch_size=None, lr=0.1)), "learning rate"),
    (fl.FedAvg(fl.TrainConfig(epochs=1, batch_size=None, lr=0.5), weighted=False), "n_k/n"),
    (fl.FedAvg(fl.TrainConfig(epochs=1, batch_size=None, lr=0.5), server_lr=2.0), "server_lr"),
    (fl.FedAvg(fl.TrainConfig(epochs=1, batch_size=None, lr=0.5, weight_decay=0.1)),
     "weight decay"),
])
def test_fedavg_is_fedsgd_rejects(strategy, hint: str) -> None:
    # (Momentum would pass, rightly: a fresh optimiser's first momentum step is a plain step.)
    with rejects(hint):
        nb03.check_fedavg_is_fedsgd(strategy, lr=0.5)


# --------------------------------------------------------------------- predict the faster run

LR = 0.05


def _hospitals() -> list[fl.Client]:
    return [fl.Client(cid=k, train=blobs(40 + 13 * k, seed=k), test=blobs(30, seed=10 + k))
            for k in range(3)]


def _new_model() -> torch.nn.Module:
    return fl.make_model("logreg", in_features=5, seed=0)


def _run(epochs: int, batch: int | None, lr: float = LR, seed: int = 0) -> fl.History:
    strat = fl.FedAvg(fl.TrainConfig(epochs=epochs, batch_size=batch, lr=lr))
    return fl.run(_new_model(), _hospitals(), strat, rounds=3, seed=seed, progress=False)


@pytest.fixture(scope="module")
def runs() -> dict[str, fl.History]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {"A": _run(10, None), "B": _run(2, 10)}
    finally:
        torch.set_num_threads(threads)


def _with_curve(hist: fl.History, curve: list[float], metric: str = "auroc") -> fl.History:
    """The same run (its rounds identify the configuration) with a chosen learning curve, to
    test the decision logic on every outcome."""
    out = fl.History(strategy=hist.strategy, rounds=list(hist.rounds))
    for rnd, value in enumerate(curve):
        out.log_eval(rnd, "pooled", {metric: value})
    return out


def _check(prediction: str, a: fl.History, b: fl.History, **kw) -> None:
    nb03.check_fewer_rounds(prediction, a, b, _hospitals(), _new_model, lr=LR, seed=0, **kw)


def test_fewer_rounds_accepts_the_measured_winner(runs, capsys) -> None:
    slow, fast = [0.5, 0.7, 0.8, 0.91], [0.5, 0.92, 0.93, 0.93]
    _check("B", _with_curve(runs["A"], slow), _with_curve(runs["B"], fast))
    _check(" a ", _with_curve(runs["A"], fast), _with_curve(runs["B"], slow))
    out = capsys.readouterr().out
    assert_correct(out, count=2)
    assert ("round 1" in out and "round 3" in out) or ("第 1 轮" in out and "第 3 轮" in out)


def test_fewer_rounds_accepts_the_real_runs(runs, capsys) -> None:
    _check("B", runs["A"], runs["B"], target=0.5, metric="accuracy")
    assert_correct(capsys.readouterr().out)


def test_fewer_rounds_counts_never_reached_as_slower(runs, capsys) -> None:
    _check("A", _with_curve(runs["A"], [0.5, 0.95]), _with_curve(runs["B"], [0.5, 0.6, 0.7]))
    assert_correct(capsys.readouterr().out, en="not reached", zh="未达到")


def test_fewer_rounds_tie(runs, capsys) -> None:
    _check("A", _with_curve(runs["A"], [0.5, 0.95]), _with_curve(runs["B"], [0.4, 0.91]))
    assert_correct(capsys.readouterr().out, en="tie", zh="平局")


@pytest.mark.parametrize(("prediction", "a", "b", "hint"), [
    ("A", [0.5, 0.7, 0.91], [0.5, 0.95], "measurement says B"),
    ("C", [0.5, 0.95], [0.5, 0.7], "'A' or 'B'"),
    ("A", [0.5, 0.6], [0.5, 0.7], "neither run"),
])
def test_fewer_rounds_rejects(runs, prediction: str, a: list[float], b: list[float],
                              hint: str) -> None:
    with rejects(hint):
        _check(prediction, _with_curve(runs["A"], a), _with_curve(runs["B"], b))


@only_in("zh")  # slow: one language (rejects() checks both versions of a hint)
def test_fewer_rounds_rejects_swapped_and_misconfigured_runs(runs) -> None:
    """The typical wrong runs: swapped histories (they used to pass), a wrong learning rate,
    the wrong batch size, another seed and a History with no rounds."""
    with rejects("swap them"):
        _check("A", runs["B"], runs["A"])
    with rejects("hist_a is not configuration A"):
        _check("B", _run(10, None, lr=0.2), runs["B"])
    with rejects("hist_b is not configuration B"):
        _check("B", runs["A"], _run(2, 20))
    with rejects("seed=0"):
        _check("B", runs["A"], _run(2, 10, seed=3))
    with rejects("no rounds"):
        _check("B", _with_curve(fl.History(), [0.5, 0.95]), runs["B"])


def test_fewer_rounds_needs_histories(runs) -> None:
    with rejects("History"):
        _check("A", fl.History(), runs["B"])


def test_fewer_rounds_other_metric(runs, capsys) -> None:
    a = _with_curve(runs["A"], [0.6, 0.7, 0.86], metric="accuracy")
    b = _with_curve(runs["B"], [0.6, 0.9], metric="accuracy")
    _check("B", a, b, target=0.85, metric="accuracy")
    assert_correct(capsys.readouterr().out)
