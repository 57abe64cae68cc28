"""The self-checks of notebook 11 accept the reference answers and reject likely mistakes."""

from __future__ import annotations

import math

import pytest
import torch

import fedlearn as fl
from fedlearn.aggregators.robust import Krum, Median, NormBound, krum_scores
from fedlearn.exercises import nb11

from .exercise_language import assert_correct, exercise_language, only_in, rejects  # noqa: F401

pytestmark = pytest.mark.usefixtures("exercise_language")


def test_trimmed_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    nb11.check_trimmed_breakdown(lambda n, b: math.floor(b * n) + 1)
    assert_correct(capsys.readouterr().out)
    with rejects("one more is needed"):
        nb11.check_trimmed_breakdown(lambda n, b: math.floor(b * n))
    with rejects("not ceil"):
        nb11.check_trimmed_breakdown(lambda n, b: math.ceil(b * n) + 1)
    with rejects("top end"):
        nb11.check_trimmed_breakdown(lambda n, b: n // 2)


def test_krum(capsys: pytest.CaptureFixture[str]) -> None:
    nb11.check_krum(lambda x, f: int(torch.argmin(krum_scores(x, f))))
    assert_correct(capsys.readouterr().out)
    with rejects("smallest update"):
        nb11.check_krum(lambda x, f: int(torch.argmin(x.norm(dim=1))))

    def medoid(x: torch.Tensor, f: int) -> int:  # distances to ALL others
        return int(torch.argmin(torch.cdist(x, x).pow(2).sum(1)))

    def n_minus_f(x: torch.Tensor, f: int) -> int:  # n - f nearest others
        d2 = torch.cdist(x, x).pow(2)
        return int(torch.argmin(torch.sort(d2, dim=1).values[:, 1:len(x) - f + 1].sum(1)))

    for wrong in (medoid, n_minus_f):
        with rejects("n - f - 2"):
            nb11.check_krum(wrong)
    with rejects("Krum selects"):
        nb11.check_krum(lambda x, f: 0)


def test_defended_run(capsys: pytest.CaptureFixture[str]) -> None:
    good = fl.FedAvg(weighted=False)
    good.aggregator = Median()
    nb11.check_defended_run(good, 0.88, 0.5)
    assert_correct(capsys.readouterr().out)
    with rejects("robust rule"):
        nb11.check_defended_run(fl.FedAvg(), 0.88, 0.5)
    client_side = fl.FedAvg()
    client_side.aggregator = NormBound(1.0, where="client")
    with rejects("malicious hospital"):
        nb11.check_defended_run(client_side, 0.88, 0.5)
    with rejects("SAME attack"):
        nb11.check_defended_run(good, 0.88, 0.87)
    krum = fl.FedAvg(weighted=False)
    krum.aggregator = Krum(f=2)
    with rejects("keeps ONE update"):
        nb11.check_defended_run(krum, 0.7, 0.5)
