"""Self-checks for notebook 05, *Differential privacy for hospitals*.

Every checker recomputes the answer independently of the notebook: the Gaussian mechanism's
formula, a fresh set of random updates for the clipped noisy mean, and for the budget
question Opacus' RDP of one round, composed round by round by hand. Messages name the
likely mistake (forgetting the sensitivity, dividing by the actual instead of the expected
number of hospitals, counting one round too many, ...).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from opacus.accountants.analysis import rdp as rdp_analysis

from ..privacy.accounting import ALPHAS
from . import correct

__all__ = ["check_gaussian_sigma", "check_dp_mean", "check_rounds_within_budget"]

DPMean = Callable[[Sequence[dict[str, torch.Tensor]], float, float, float, torch.Generator],
                  dict[str, torch.Tensor]]


def check_gaussian_sigma(sigma: float, epsilon: float, delta: float, sensitivity: float) -> None:
    """The classic Gaussian mechanism: ``sigma = sensitivity * sqrt(2 ln(1.25/delta)) / eps``."""
    sigma = float(sigma)
    base = math.sqrt(2 * math.log(1.25 / delta)) / epsilon
    want = sensitivity * base
    if sensitivity != 1 and math.isclose(sigma, base, rel_tol=1e-3):
        raise AssertionError("you left out the sensitivity: the noise is measured in units of "
                             f"how much one patient can change the answer ({sensitivity})")
    if math.isclose(sigma, sensitivity * math.sqrt(2 * math.log(1 / delta)) / epsilon,
                    rel_tol=1e-3):
        raise AssertionError("close: the constant inside the log is 1.25/delta, not 1/delta")
    assert math.isclose(sigma, want, rel_tol=1e-3), (
        f"got sigma = {sigma:.4g}, expected {want:.4g}: sigma = sensitivity * "
        "sqrt(2 ln(1.25 / delta)) / epsilon")
    correct(f"sigma = {want:.3f}: every released count is off by about that much, by design")


def _reference_dp_mean(updates: Sequence[dict[str, torch.Tensor]], clip: float,
                       expected_clients: float) -> dict[str, torch.Tensor]:
    total = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in updates[0].items()}
    for u in updates:
        norm = math.sqrt(sum(float((v.double() ** 2).sum()) for v in u.values()))
        f = min(1.0, clip / (norm + 1e-12))
        for k in total:
            total[k] += f * u[k].double()
    return {k: v / expected_clients for k, v in total.items()}


def check_dp_mean(dp_mean: DPMean, seed: int = 0) -> None:
    """``dp_mean(updates, clip, noise_multiplier, expected_clients, generator)``.

    Must return ``(sum_k clip(update_k) + N(0, (z C)^2)) / expected_clients`` key by key.
    Checked without noise (exact), then with noise over many draws (its std must be
    ``z C / expected_clients``).
    """
    g = torch.Generator().manual_seed(seed)
    updates = [{"w": 3 * torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)}
               for _ in range(5)]
    updates[0] = {k: 0.01 * v for k, v in updates[0].items()}  # one update below the clip norm
    clip, m = 1.0, 8.0  # expected 8 hospitals, 5 happened to be sampled
    out = dp_mean(updates, clip, 0.0, m, torch.Generator().manual_seed(1))
    ref = _reference_dp_mean(updates, clip, m)
    assert set(out) == set(ref), f"return one tensor per key {sorted(ref)}, got {sorted(out)}"
    for k in ref:
        got = out[k].double()
        if torch.allclose(got, ref[k] * m / len(updates), atol=1e-5):
            raise AssertionError("you divided by the number of updates received; divide by the "
                                 "EXPECTED number of hospitals: the actual count depends on "
                                 "who took part, so it would leak")
        unclipped = sum(u[k].double() for u in updates) / m
        if torch.allclose(got, unclipped, atol=1e-5):
            raise AssertionError("the updates were not clipped: scale each update (all its "
                                 "tensors together) to L2 norm at most `clip` first")
        assert torch.allclose(got, ref[k], atol=1e-5), (
            f"with noise_multiplier=0 the result for {k!r} should be the clipped sum divided "
            "by expected_clients; clip by the norm of the WHOLE update, not tensor by tensor")
    z = 2.0
    draws = torch.stack([
        torch.cat([(dp_mean(updates, clip, z, m, torch.Generator().manual_seed(100 + i))[k]
                    .double() - ref[k]).flatten() for k in ref])
        for i in range(300)])
    std = float(draws.std())
    want = z * clip / m
    assert abs(std - want) < 0.1 * want, (
        f"noise std on the mean is {std:.4f}, expected z*C/m = {want:.4f}: add N(0, (z*C)^2) to "
        "the SUM, then divide by expected_clients")
    assert float(draws.std(dim=1).mean()) > 0.5 * want, \
        "every entry needs its own noise draw (torch.normal with size=tensor.shape)"
    correct(f"clipped sum + N(0, (zC)^2), divided by m: noise std on the mean {std:.4f} "
            f"~ zC/m = {want:.4f}")


def check_rounds_within_budget(answer: int, noise_multiplier: float, client_rate: float,
                               epsilon: float, delta: float) -> None:
    """The largest number of DP-FedAvg rounds whose epsilon stays within ``epsilon``."""
    # RDP composes additively: one round's RDP vector (from Opacus), times the round count.
    one_round = np.asarray(rdp_analysis.compute_rdp(
        q=client_rate, noise_multiplier=noise_multiplier, steps=1, orders=ALPHAS))
    rounds = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eps, _ = rdp_analysis.get_privacy_spent(orders=ALPHAS, rdp=one_round * (rounds + 1),
                                                    delta=delta)
        if eps > epsilon:
            break
        rounds += 1
        if rounds > 100_000:
            raise AssertionError("this budget allows more than 100,000 rounds; pick a smaller one")
    answer = int(answer)
    if answer == rounds + 1:
        raise AssertionError(f"{answer} rounds would spend more than epsilon = {epsilon}: the "
                             "last round you counted is the one that crosses the budget")
    assert answer == rounds, (
        f"got {answer}, expected {rounds}; step an RDPAccountant once per round (sample_rate = "
        "client_rate) and stop before get_epsilon(delta) exceeds the budget")
    correct(f"{rounds} rounds fit in epsilon = {epsilon} at delta = {delta:g}; round "
            f"{rounds + 1} would cross it")
