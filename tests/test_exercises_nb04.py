import pytest
import torch

from fedlearn.exercises import nb04

from .exercise_language import assert_correct, exercise_language, only_in, rejects  # noqa: F401

pytestmark = pytest.mark.usefixtures("exercise_language")


def fednova_step(deltas, n, steps):
    p = torch.tensor(n, dtype=torch.float64) / sum(n)
    tau_eff = sum(float(pi) * s for pi, s in zip(p, steps, strict=True))
    return tau_eff * sum(float(pi) * d / s for pi, d, s in zip(p, deltas, steps, strict=True))


def test_fednova_reference_solution_passes(capsys):
    nb04.check_fednova_step(fednova_step)
    assert_correct(capsys.readouterr().out)


@pytest.mark.parametrize("wrong,hint", [
    (lambda d, n, s: sum(ni * x for ni, x in zip(n, d, strict=True)) / sum(n), "FedAvg"),
    (lambda d, n, s: sum(ni * x / si for ni, x, si in zip(n, d, s, strict=True)) / sum(n),
     "tau_eff"),
    (lambda d, n, s: sum(x / si for x, si in zip(d, s, strict=True)) / len(d) * sum(s) / len(s),
     "uniformly"),
    (lambda d, n, s: d[0], "wrong aggregate"),
])
def test_fednova_wrong_answers_get_hints(wrong, hint):
    with rejects(hint):
        nb04.check_fednova_step(wrong)


def ef_topk(deltas, k):
    e = torch.zeros_like(deltas[0])
    sent = []
    for d in deltas:
        p = d + e
        idx = p.abs().topk(k).indices
        s = torch.zeros_like(p)
        s[idx] = p[idx]
        e = p - s
        sent.append(s)
    return sent


def test_error_feedback_reference_solution_passes(capsys):
    nb04.check_error_feedback(ef_topk)
    assert_correct(capsys.readouterr().out)


def _plain_topk(deltas, k):
    out = []
    for d in deltas:
        s = torch.zeros_like(d)
        idx = d.abs().topk(k).indices
        s[idx] = d[idx]
        out.append(s)
    return out


@pytest.mark.parametrize("wrong,hint", [
    (_plain_topk, "residual"),
    (lambda ds, k: ds, "non-zero entries"),
    (lambda ds, k: [torch.zeros_like(d) for d in ds], "non-zero entries"),
    (lambda ds, k: ds[:1], "one sent vector per round"),
])
def test_error_feedback_wrong_answers_get_hints(wrong, hint):
    with rejects(hint):
        nb04.check_error_feedback(wrong)


def smallest_deadline(speeds, steps, keep):
    return sorted(steps / v for v in speeds.values())[keep - 1]


def test_deadline_reference_solution_passes(capsys):
    nb04.check_deadline(smallest_deadline)
    assert_correct(capsys.readouterr().out)


@pytest.mark.parametrize("wrong,hint", [
    (lambda sp, st, keep: sorted(st / v for v in sp.values())[keep - 1] * 0.99, "only"),
    (lambda sp, st, keep: max(st / v for v in sp.values()) + 1.0, "not the smallest"),
    (lambda sp, st, keep: sorted(st * v for v in sp.values())[keep - 1], "deadline"),
])
def test_deadline_wrong_answers_get_hints(wrong, hint):
    with rejects(hint):
        nb04.check_deadline(wrong)
