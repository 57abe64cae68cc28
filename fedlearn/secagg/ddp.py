"""Distributed differential privacy: each hospital adds its share of the noise before masking.

Central DP-FedAvg (:class:`fedlearn.privacy.client_dp.DPFedAvg`) lets the *server* clip each
update and add Gaussian noise of std ``z C`` to the sum. Under secure aggregation the server
never sees an individual update, so clipping and noise move to the clients: client ``k`` clips
its delta to L2 norm ``C`` and adds ``N(0, sigma_k^2)`` with

    sigma_k = z C / sqrt(t),

where ``t`` is the protocol's threshold. If ``s >= t`` clients end up in the sum, the summed
noise has std ``z C sqrt(s / t) >= z C``: at least the central mechanism's noise, whoever drops
out (an adversary who makes clients drop cannot thin the noise below that). Removing or adding
one hospital changes the clipped sum by at most ``C``, so each round is a Gaussian mechanism
with noise multiplier ``z`` on the *sum*, and no single update the server could inspect exists
in the first place. Noise is added before quantisation; the fixed-point clipping that follows
is post-processing. (Real deployments use discrete Gaussian noise in the ring, Kairouz, Liu and
Steinke 2021; continuous noise then rounding is the textbook version.)
"""

from __future__ import annotations

import math

import torch

from ..privacy.accounting import rdp_epsilon
from ..privacy.client_dp import clip_update
from ..update import ClientUpdate
from ..utils import derive_seed, torch_generator
from .strategy import RoundContext

__all__ = ["DistributedGaussian"]


class DistributedGaussian:
    """Client-side clipping + Gaussian noise share, as a :class:`~.strategy.ClientTransform`.

    Args:
        clip_norm: ``C``, the L2 bound on each client's delta.
        noise_multiplier: ``z``, noise std on the sum in units of ``C``.
        sample_rate: probability that a hospital takes part in a round, for the accountant
            (1.0 when every hospital is asked every round).
        seed: seeds each client's noise (``derive_seed(seed, round, cid)``).
    """

    requires_unweighted = True  # the noise is calibrated for sum_k delta_k, not sum_k n_k delta_k

    def __init__(self, clip_norm: float, noise_multiplier: float, *, sample_rate: float = 1.0,
                 seed: int = 0) -> None:
        if not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0, got {clip_norm}")
        if not noise_multiplier >= 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.clip_norm = float(clip_norm)
        self.noise_multiplier = float(noise_multiplier)
        self.sample_rate = float(sample_rate)
        self.seed = seed
        self.rounds: set[int] = set()

    def client_std(self, ctx: RoundContext) -> float:
        """``z C / sqrt(t)``: one client's noise std."""
        return self.noise_multiplier * self.clip_norm / math.sqrt(ctx.threshold)

    def __call__(self, update: ClientUpdate, ctx: RoundContext) -> ClientUpdate:
        clipped, norm = clip_update(update.delta, self.clip_norm)
        std = self.client_std(ctx)
        gen = torch_generator(derive_seed(self.seed, ctx.rnd, update.cid))
        noisy = {k: v + std * torch.randn(v.shape, generator=gen, dtype=v.dtype)
                 for k, v in clipped.items()} if std > 0 else clipped
        self.rounds.add(ctx.rnd)
        out = update.with_delta(noisy)
        out.metrics = {**update.metrics, "update_norm": norm}
        return out

    def epsilon(self, delta: float = 1e-5) -> float:
        """Client-level epsilon after the rounds seen so far (RDP accountant, via Opacus)."""
        return rdp_epsilon(self.noise_multiplier, self.sample_rate, len(self.rounds), delta)

    def __repr__(self) -> str:
        return (f"DistributedGaussian(clip_norm={self.clip_norm}, "
                f"noise_multiplier={self.noise_multiplier}, sample_rate={self.sample_rate})")
