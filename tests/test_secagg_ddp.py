"""Distributed Gaussian noise: clip on the client, noise share z C / sqrt(t)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

import fedlearn as fl
from fedlearn.secagg import DistributedGaussian, RoundContext, SecureAggregation


def update(cid: int = 0, scale: float = 3.0) -> fl.ClientUpdate:
    g = torch.Generator().manual_seed(cid)
    delta = {"w": scale * torch.randn(20_000, generator=g) / math.sqrt(20_000),
             "b": torch.zeros(3)}
    return fl.ClientUpdate(cid=cid, delta=delta, num_examples=10)


def test_clips_and_adds_the_calibrated_noise_share() -> None:
    dp = DistributedGaussian(clip_norm=1.0, noise_multiplier=2.0, seed=0)
    ctx = RoundContext(rnd=1, num_clients=10, threshold=4)
    u = update()
    noiseless = DistributedGaussian(clip_norm=1.0, noise_multiplier=0.0)(u, ctx)
    assert noiseless.norm == pytest.approx(1.0, rel=1e-4)
    assert "update_norm" not in noiseless.metrics  # the un-noised norm never leaves
    out = dp(u, ctx)
    noise = out.delta["w"] - noiseless.delta["w"]
    assert float(noise.std()) == pytest.approx(2.0 / math.sqrt(4), rel=0.03)
    assert dp.client_std(ctx) == pytest.approx(1.0)
    assert torch.equal(dp(u, ctx).delta["w"], out.delta["w"])  # reproducible per (round, cid)
    assert not torch.equal(dp(update(1), ctx).delta["b"], out.delta["b"])


def test_summed_noise_reaches_the_central_level_when_t_clients_remain() -> None:
    t = 5
    dp = DistributedGaussian(clip_norm=1.0, noise_multiplier=1.5, seed=3)
    ctx = RoundContext(rnd=2, num_clients=8, threshold=t)
    zero = {"w": torch.zeros(20_000)}
    total = sum(dp(fl.ClientUpdate(cid=c, delta=zero, num_examples=1), ctx).delta["w"]
                for c in range(t))
    assert float(total.std()) == pytest.approx(1.5, rel=0.03)  # z * C on the sum


def test_epsilon_counts_revealed_rounds_only() -> None:
    # the client-side step releases nothing; a round is charged when its sum is revealed
    dp = DistributedGaussian(clip_norm=1.0, noise_multiplier=1.0)
    assert dp.epsilon() == 0.0
    u = update()
    dp(u, RoundContext(1, 5, 3))
    assert dp.epsilon() == 0.0
    clients = [fl.Client(cid=i, train=TensorDataset(torch.randn(10, 5), torch.zeros(10).long()))
               for i in range(3)]
    strat = SecureAggregation(fl.FedAvg(fl.TrainConfig(steps=1), weighted=False), transform=dp,
                              threshold=2)
    fl.run(fl.make_model("logreg", in_features=5, seed=0), clients, strat, rounds=2,
           eval_every=0, progress=False)
    e2 = dp.epsilon()
    assert dp.rounds == {1, 2} and e2 > 0
    assert e2 == pytest.approx(dp.epsilon_after(0))
    assert dp.epsilon_after(1) > e2  # BudgetGuard can forecast it


def test_argument_checks() -> None:
    with pytest.raises(ValueError):
        DistributedGaussian(0.0, 1.0)
    with pytest.raises(ValueError):
        DistributedGaussian(1.0, -1.0)
    with pytest.raises(ValueError):
        DistributedGaussian(1.0, 1.0, sample_rate=0.0)
