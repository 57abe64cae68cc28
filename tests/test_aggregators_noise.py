"""Noise on: the measured std of (aggregated sum - clear sum) is what the accountant assumes.

Over 10^5 coordinates the sample variance of Gaussian noise of std sigma satisfies
``(N - 1) s^2 / sigma^2 ~ chi^2(N - 1)``; each test asserts the measured std lies in the
99.9 % interval of that distribution around the std the accountant is told about.
Hospitals that drop out are included: distributed DP sizes its shares for the protocol's
threshold ``t``, fixed from the hospitals instructed, and a round with fewer reports aborts
(before the new layer, 3 of 6 reporting gave 0.87 z C while the accountant assumed z C).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chi2

import fedlearn as fl
from fedlearn.privacy import DPFedAvg
from fedlearn.secagg import DistributedGaussian, SecureAggregation

from .helpers import blobs

N = 100_000


def interval(sigma: float, n: int = N) -> tuple[float, float]:
    """The 99.9 % interval of the sample std of ``n`` draws of N(0, sigma^2)."""
    lo, hi = chi2.ppf([0.0005, 0.9995], n - 1)
    return sigma * math.sqrt(lo / (n - 1)), sigma * math.sqrt(hi / (n - 1))


def zero_updates(k: int, seed: int = 0) -> list[fl.ClientUpdate]:
    """Updates whose clipped sum is known exactly (small random vectors, far below C)."""
    g = torch.Generator().manual_seed(seed)
    return [fl.ClientUpdate(cid=i, delta={"w": 1e-4 * torch.randn(N, generator=g)},
                            num_examples=10 + i) for i in range(k)]


def hospitals(k: int) -> list[fl.Client]:
    return [fl.Client(cid=i, train=blobs(10 + i, seed=i)) for i in range(k)]


def clear_sum(updates: list[fl.ClientUpdate], weights: list[float]) -> torch.Tensor:
    return sum(w * u.delta["w"].double() for u, w in zip(updates, weights, strict=True))


def central_dp_noise(weighted: bool, z: float = 1.3, c: float = 0.7, k: int = 6
                     ) -> tuple[fl.strategy.RoundOutcome, torch.Tensor, float]:
    """One central-DP round over 6 hospitals: (outcome, noise on the sum, assumed std)."""
    ups = zero_updates(k)
    dp = DPFedAvg(fl.FedAvg(weighted=weighted), noise_multiplier=z, clip_norm=c, seed=4)
    clients = hospitals(k)
    dp.start({"w": torch.zeros(N)}, clients)
    out = dp.aggregate_round(1, {"w": torch.zeros(N)}, ups)
    row = out.measurements["central_dp"]
    weights = [float(cl.num_train) if weighted else 1.0 for cl in clients]
    noise = out.state["w"].double() * row["denominator"] - clear_sum(ups, weights)
    return out, noise, z * c * max(weights)  # the accountant's sensitivity is w_max C


@pytest.mark.parametrize("weighted", [False, True])
def test_central_dp_noise_has_the_assumed_std(weighted: bool) -> None:
    out, noise, assumed = central_dp_noise(weighted)
    assert out.measurements["central_dp"]["noise_std_on_sum"] == pytest.approx(assumed)
    lo, hi = interval(assumed)
    assert lo <= float(noise.std()) <= hi


@pytest.mark.parametrize("reported", [4, 5, 6])
def test_distributed_dp_noise_when_hospitals_drop_out(reported: int) -> None:
    z, c, k = 1.0, 1.0, 6
    ddp = DistributedGaussian(clip_norm=c, noise_multiplier=z, seed=2)
    strat = SecureAggregation(fl.FedAvg(weighted=False), transform=ddp, threshold=2 / 3,
                              clip=8.0, bits=40)
    strat.start({"w": torch.zeros(N)}, hospitals(k))
    ups = zero_updates(k)[:reported]  # instructed 6, t = 4
    out = strat.aggregate_round(1, {"w": torch.zeros(N)}, ups, instructed=k)
    row = out.measurements["distributed_dp"]
    assert out.aborted is None and row["threshold"] == 4 and row["summed"] == reported
    noise = out.state["w"].double() * reported - clear_sum(ups, [1.0] * reported)
    measured = float(noise.std())
    expected = z * c * math.sqrt(reported / 4)  # s >= t shares of std zC/sqrt(t)
    assert row["noise_std_on_sum"] == pytest.approx(expected)
    lo, hi = interval(expected)
    assert lo <= measured <= hi
    assert measured >= interval(row["assumed_std_on_sum"])[0]  # never below what is accounted


def test_three_of_six_reporting_aborts_instead_of_thinning_the_noise() -> None:
    ddp = DistributedGaussian(clip_norm=1.0, noise_multiplier=1.0, seed=2)
    strat = SecureAggregation(fl.FedAvg(weighted=False), transform=ddp, threshold=2 / 3,
                              clip=8.0, bits=40)
    strat.start({"w": torch.zeros(N)}, hospitals(6))
    out = strat.aggregate_round(1, {"w": torch.zeros(N)}, zero_updates(6)[:3], instructed=6)
    assert out.aborted and "fewer than t = 4" in out.aborted
    assert torch.equal(out.state["w"], torch.zeros(N))
    assert ddp.epsilon() == 0.0 and not ddp.rounds  # nothing revealed, nothing charged
    # with t = 3 chosen up front, 3 reports carry exactly the assumed z C
    ddp3 = DistributedGaussian(clip_norm=1.0, noise_multiplier=1.0, seed=3)
    strat3 = SecureAggregation(fl.FedAvg(weighted=False), transform=ddp3, threshold=3,
                               clip=8.0, bits=40)
    strat3.start({"w": torch.zeros(N)}, hospitals(6))
    ups = zero_updates(6)[:3]
    out3 = strat3.aggregate_round(1, {"w": torch.zeros(N)}, ups, instructed=6)
    noise = out3.state["w"].double() * 3 - clear_sum(ups, [1.0] * 3)
    lo, hi = interval(1.0)
    assert lo <= float(noise.std()) <= hi


def test_distributed_dp_over_the_clear_sum_needs_its_minimum() -> None:
    from fedlearn.aggregators import DistributedDP, Plain

    strat = fl.FedAvg(weighted=False)
    strat.aggregator = DistributedDP(Plain(), clip_norm=1.0, noise_multiplier=2.0, seed=1,
                                     min_contributors=5)
    strat.start({"w": torch.zeros(N)}, hospitals(6))
    assert strat.aggregate_round(1, {"w": torch.zeros(N)}, zero_updates(4), instructed=6).aborted
    ups = zero_updates(5)
    out = strat.aggregate_round(2, {"w": torch.zeros(N)}, ups, instructed=6)
    noise = out.state["w"].double() * 5 - clear_sum(ups, [1.0] * 5)
    lo, hi = interval(2.0)
    assert lo <= float(noise.std()) <= hi
