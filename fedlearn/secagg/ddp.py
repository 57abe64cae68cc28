"""Distributed differential privacy: each hospital adds its share of the noise before masking.

Central DP-FedAvg (:class:`fedlearn.privacy.client_dp.DPFedAvg`) lets the *server* clip each
update and add Gaussian noise of std ``z C`` to the sum. Under secure aggregation the server
never sees an individual update, so clipping and noise move to the hospitals: hospital ``k``
clips its contribution to L2 norm ``C`` and adds ``N(0, sigma_k^2)`` with

    sigma_k = z C / sqrt(t),

where ``t`` is the protocol's threshold, fixed from the hospitals *instructed* this round (the
protocol uses the same ``t``; fewer reports abort the round and reveal nothing). If ``s >= t``
hospitals end up in the sum, the summed noise has std ``z C sqrt(s / t) >= z C``: at least the
central mechanism's noise, whoever drops out. Removing or adding one hospital changes the
clipped sum by at most ``C``, so each revealed round is a Gaussian mechanism with noise
multiplier ``z`` on the sum, and no single update the server could inspect exists.

What the noise is: continuous Gaussian noise, then rounding onto the ring's fixed-point grid.
The rounding is post-processing of the noised floats, but the decoded sum is not exactly the
analysed mechanism's output, and real deployments use noise that lives in the ring (discrete
Gaussian or Skellam: Kairouz, Liu and Steinke 2021; Agarwal et al. 2021). fedlearn does not.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..aggregators.base import Contribution
from ..aggregators.dp import DistributedDP
from ..update import ClientUpdate
from .strategy import RoundContext

if TYPE_CHECKING:
    from ..privacy.accountant import Accountant

__all__ = ["DistributedGaussian"]


class DistributedGaussian(DistributedDP):
    """Hospital-side clipping + Gaussian noise share: pass it as ``SecureAggregation(transform=)``.

    Args:
        clip_norm: ``C``, the L2 bound on each hospital's contribution.
        noise_multiplier: ``z``, noise std on the sum in units of ``C``.
        sample_rate: probability that a hospital takes part in a round, for the accountant
            (1.0 when every hospital is asked every round).
        seed: seeds each hospital's noise (``derive_seed(seed, round, cid)``).
        buffers: ``"refuse"`` (default) or ``"release"`` BatchNorm statistics un-noised.
        delta: the delta at which :meth:`epsilon` reports.
        accountant: an :class:`~fedlearn.privacy.Accountant` (or ``"rdp"`` / ``"prv"``); every
            revealed round is one Gaussian step of it, so a
            :class:`~fedlearn.privacy.BudgetGuard` can guard a distributed-DP run.
    """

    def __init__(self, clip_norm: float, noise_multiplier: float, *, sample_rate: float = 1.0,
                 seed: int = 0, buffers: str = "refuse", delta: float = 1e-5,
                 accountant: Accountant | str | None = None) -> None:
        super().__init__(None, clip_norm=clip_norm, noise_multiplier=noise_multiplier,
                         sample_rate=sample_rate, seed=seed, buffers=buffers,  # type: ignore
                         delta=delta, accountant=accountant)

    def client_std(self, ctx: RoundContext) -> float:
        """``z C / sqrt(t)``: one hospital's noise std."""
        return self.noise_multiplier * self.clip_norm / math.sqrt(ctx.threshold)

    def __call__(self, update: ClientUpdate, ctx: RoundContext) -> ClientUpdate:
        """One hospital's step on its update (clip, add its share), outside any protocol.

        Nothing is released by this call, so nothing is accounted: the accountant steps when
        a round's sum is revealed.
        """
        c = Contribution(update.cid, {"delta": update.delta}, weight=1.0)
        out = self.noise_share(c, ctx.rnd, self.client_std(ctx))
        return update.with_delta(out.vectors["delta"])

    def __repr__(self) -> str:
        return (f"DistributedGaussian(clip_norm={self.clip_norm}, "
                f"noise_multiplier={self.noise_multiplier}, sample_rate={self.sample_rate})")
