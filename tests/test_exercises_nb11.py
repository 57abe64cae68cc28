"""The self-checks of notebook 11 accept the reference answers and reject likely mistakes."""

from __future__ import annotations

import math

import pytest
import torch

import fedlearn as fl
from fedlearn.aggregators.robust import Krum, Median, NormBound, krum_scores
from fedlearn.exercises import nb11


def test_trimmed_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    nb11.check_trimmed_breakdown(lambda n, b: math.floor(b * n) + 1)
    assert capsys.readouterr().out.startswith("Correct:")
    with pytest.raises(AssertionError, match="one more is needed"):
        nb11.check_trimmed_breakdown(lambda n, b: math.floor(b * n))
    with pytest.raises(AssertionError, match="not ceil"):
        nb11.check_trimmed_breakdown(lambda n, b: math.ceil(b * n) + 1)
    with pytest.raises(AssertionError, match="top end"):
        nb11.check_trimmed_breakdown(lambda n, b: n // 2)


def test_krum(capsys: pytest.CaptureFixture[str]) -> None:
    nb11.check_krum(lambda x, f: int(torch.argmin(krum_scores(x, f))))
    assert capsys.readouterr().out.startswith("Correct:")
    with pytest.raises(AssertionError, match="smallest update"):
        nb11.check_krum(lambda x, f: int(torch.argmin(x.norm(dim=1))))

    def medoid(x: torch.Tensor, f: int) -> int:  # distances to ALL others
        return int(torch.argmin(torch.cdist(x, x).pow(2).sum(1)))

    def n_minus_f(x: torch.Tensor, f: int) -> int:  # n - f nearest others
        d2 = torch.cdist(x, x).pow(2)
        return int(torch.argmin(torch.sort(d2, dim=1).values[:, 1:len(x) - f + 1].sum(1)))

    for wrong in (medoid, n_minus_f):
        with pytest.raises(AssertionError, match="n - f - 2"):
            nb11.check_krum(wrong)
    with pytest.raises(AssertionError):
        nb11.check_krum(lambda x, f: 0)


def test_defended_run(capsys: pytest.CaptureFixture[str]) -> None:
    good = fl.FedAvg(weighted=False)
    good.aggregator = Median()
    nb11.check_defended_run(good, 0.88, 0.5)
    assert capsys.readouterr().out.startswith("Correct:")
    with pytest.raises(AssertionError, match="robust rule"):
        nb11.check_defended_run(fl.FedAvg(), 0.88, 0.5)
    client_side = fl.FedAvg()
    client_side.aggregator = NormBound(1.0, where="client")
    with pytest.raises(AssertionError, match="malicious hospital"):
        nb11.check_defended_run(client_side, 0.88, 0.5)
    with pytest.raises(AssertionError, match="SAME attack"):
        nb11.check_defended_run(good, 0.88, 0.87)
    krum = fl.FedAvg(weighted=False)
    krum.aggregator = Krum(f=2)
    with pytest.raises(AssertionError, match="keeps ONE update"):
        nb11.check_defended_run(krum, 0.7, 0.5)
