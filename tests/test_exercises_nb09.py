import math

import pytest
import torch

from fedlearn.exercises import nb09

from .exercise_language import assert_correct, exercise_language, only_in, rejects  # noqa: F401

pytestmark = pytest.mark.usefixtures("exercise_language")


def summary_ok(scores):
    worst = scores.loc[scores["accuracy"].idxmin(), "hospital"]
    return float(scores["accuracy"].mean()), worst


def test_hospital_summary_reference_passes(capsys):
    nb09.check_hospital_summary(summary_ok)
    assert_correct(capsys.readouterr().out)


@pytest.mark.parametrize("wrong,hint", [
    (lambda s: (float((s["accuracy"] * s["n"]).sum() / s["n"].sum()),
                s.loc[s["accuracy"].idxmin(), "hospital"]), "size-weighted"),
    (lambda s: (float(s["accuracy"].mean()), s.loc[s["accuracy"].idxmax(), "hospital"]),
     "best one"),
    (lambda s: (float(s["accuracy"].median()), "H0"), "mean over hospitals"),
])
def test_hospital_summary_wrong_answers_get_hints(wrong, hint):
    with rejects(hint):
        nb09.check_hospital_summary(wrong)


def test_prox_step(capsys):
    nb09.check_prox_step(lambda v, w, lr, lam: (v + lr * lam * w) / (1 + lr * lam))
    assert_correct(capsys.readouterr().out)
    with rejects("gradient step"):
        nb09.check_prox_step(lambda v, w, lr, lam: v - lr * lam * (v - w))
    with rejects("expected"):
        nb09.check_prox_step(lambda v, w, lr, lam: torch.as_tensor(w))


def test_validation_sd(capsys):
    nb09.check_validation_sd(lambda p, n: math.sqrt(p * (1 - p) / n))
    assert_correct(capsys.readouterr().out)
    for wrong, hint in [(lambda p, n: p * (1 - p) / n, "variance"),
                        (lambda p, n: math.sqrt(p * (1 - p)) / n, "before the square root"),
                        (lambda p, n: 0.05, "expected")]:
        with rejects(hint):
            nb09.check_validation_sd(wrong)
