"""Client-level differential privacy: DP-FedAvg (McMahan, Ramage, Talwar and Zhang, 2018).

Here the protected unit is a whole *hospital*: the sequence of global models barely changes
whether or not any one hospital took part at all. Each round the server

1. samples every hospital independently with probability ``q`` (Poisson sampling, which the
   accountant's privacy amplification assumes);
2. clips each returned update to L2 norm ``C`` (a hospital's influence on the sum is now at
   most ``C``, the sensitivity, or ``w_max * C`` with weights);
3. adds Gaussian noise of std ``z * C`` to the *sum* and divides by the *expected* number of
   hospitals ``m = q K`` (McMahan et al.'s fixed-denominator estimator: dividing by the actual
   count would make the denominator itself depend on who took part). On the mean this is
   noise of std ``z * C / m``;
4. hands the noisy mean to the wrapped strategy's ``server_update`` (plain FedAvg, server
   momentum, Adam, ...): anything done after the noise is post-processing and costs no
   privacy.

Each round is one subsampled Gaussian step, so Opacus' :class:`RDPAccountant` tracks the
epsilon. Optional adaptive clipping (Andrew, Thakkar, McMahan and Ramaswamy 2021) moves ``C``
towards a quantile of the update norms using a second, noised count; its privacy cost is
folded into the same noise multiplier ``z``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from opacus.accountants import RDPAccountant

from ..client import Client
from ..strategy import ClientInstruction, Strategy
from ..update import ClientUpdate
from ..utils import StateDict, derive_seed, state_norm, torch_generator
from .accounting import accountant_after, accountant_epsilon

__all__ = ["clip_update", "AdaptiveClipping", "DPFedAvg"]


def clip_update(delta: StateDict, clip_norm: float) -> tuple[StateDict, float]:
    """Scale ``delta`` to L2 norm at most ``clip_norm``; also return its original norm.

    The factor is ``min(1, C / (norm + 1e-6))``, the same as Opacus' per-sample clipping, so
    the clipped norm stays at or below ``C`` up to float32 rounding of the scaled entries.
    """
    if not clip_norm > 0:
        raise ValueError(f"clip_norm must be > 0, got {clip_norm}")
    norm = state_norm(delta)
    factor = min(1.0, clip_norm / (norm + 1e-6))
    if factor == 1.0:
        return {k: v.detach().clone() for k, v in delta.items()}, norm
    return {k: (v.detach().double() * factor).to(v.dtype) for k, v in delta.items()}, norm


@dataclass(frozen=True)
class AdaptiveClipping:
    """Andrew et al. (2021): track the ``target_quantile`` of update norms privately.

    After each round ``C <- C * exp(-lr * (b - target_quantile))`` where ``b`` is the noised
    fraction of sampled hospitals whose update norm was at most ``C``. The count is released
    with Gaussian noise of std ``count_noise``; the paper's default is ``m / 20``.
    """

    target_quantile: float = 0.5
    lr: float = 0.2
    count_noise: float | None = None  # None: expected clients / 20

    def __post_init__(self) -> None:
        if not 0 <= self.target_quantile <= 1:
            raise ValueError(f"target_quantile must be in [0, 1], got {self.target_quantile}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.count_noise is not None and not self.count_noise > 0:
            raise ValueError(f"count_noise must be > 0, got {self.count_noise}")


class DPFedAvg(Strategy):
    """Wrap any strategy with client-level DP (clip, noise, Poisson client sampling).

    The wrapped strategy decides the local training (``configure_round``) and the server
    step (``server_update``); the aggregation is replaced by the DP sum, because that sum is
    what the guarantee is about. Call :func:`fedlearn.run` with ``fraction=1.0``: this
    wrapper samples the hospitals itself.

    Args:
        inner: e.g. ``FedAvg(TrainConfig(...))``.
        noise_multiplier: ``z``; noise std on the sum is ``z * C`` (``z * C * w_max`` weighted).
        clip_norm: initial ``C``.
        client_rate: ``q``, each hospital's probability of taking part in a round.
        weighted: weight hospital ``k`` by its (public) size ``n_k`` instead of 1. With
            ``q = 1``, ``z = 0`` and a huge ``C`` this is exactly weighted FedAvg.
        adaptive: optional :class:`AdaptiveClipping`.
        delta: the delta at which :meth:`epsilon` reports.
        seed: seeds client sampling and noise.
    """

    def __init__(self, inner: Strategy, *, noise_multiplier: float, clip_norm: float,
                 client_rate: float = 1.0, weighted: bool = False,
                 adaptive: AdaptiveClipping | None = None, delta: float = 1e-5,
                 seed: int = 0) -> None:
        if not noise_multiplier >= 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
        if not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0, got {clip_norm}")
        if not 0 < client_rate <= 1:
            raise ValueError(f"client_rate must be in (0, 1], got {client_rate}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        self.inner = inner
        self.noise_multiplier = float(noise_multiplier)
        self.clip_norm = float(clip_norm)
        self.client_rate = float(client_rate)
        self.weighted = weighted
        self.adaptive = adaptive
        self.delta = delta
        self.seed = seed
        self.name = f"DP-{getattr(inner, 'name', type(inner).__name__)}"
        self.accountant = RDPAccountant()
        self.log: list[dict[str, float]] = []  # one row per round: clip norm, epsilon, ...
        self._weights: dict[int, float] = {}
        self._selected: set[int] = set()

    # ------------------------------------------------------------------ noise bookkeeping
    @property
    def expected_clients(self) -> float:
        """``m = q K`` (or ``q W`` with weights): the fixed denominator of the estimator."""
        return self.client_rate * sum(self._weights.values())

    @property
    def update_noise_multiplier(self) -> float:
        """Noise multiplier on the update sum: ``z`` itself, or less with adaptive clipping.

        Andrew et al. (2021, Sec. 3): releasing the update sum with multiplier ``z_delta``
        and the count (sensitivity 1/2 once centred) with std ``sigma_b`` is as private as a
        single Gaussian query with ``z = (z_delta^-2 + (2 sigma_b)^-2)^-1/2``; solve for
        ``z_delta`` so that the total matches the ``z`` the accountant is told about.
        """
        if self.adaptive is None or self.noise_multiplier == 0:
            return self.noise_multiplier
        sb = self._count_noise()
        if 2 * sb <= self.noise_multiplier:
            raise ValueError(f"count_noise {sb:.3g} too small for noise_multiplier "
                             f"{self.noise_multiplier}: need 2*count_noise > z")
        return (self.noise_multiplier ** -2 - (2 * sb) ** -2) ** -0.5

    def _count_noise(self) -> float:
        assert self.adaptive is not None
        if self.adaptive.count_noise is not None:
            return self.adaptive.count_noise
        return self.client_rate * len(self._weights) / 20

    # ------------------------------------------------------------------ strategy hooks
    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        self._weights = {c.cid: float(c.num_train) if self.weighted else 1.0 for c in clients}
        self.inner.initialize(global_state, clients)

    def configure_round(self, rnd: int, clients: Sequence[Client]) -> dict[int, ClientInstruction]:
        """Poisson-sample the hospitals; only the sampled ones train."""
        if {c.cid for c in clients} != set(self._weights):
            raise ValueError("DPFedAvg samples hospitals itself (its accounting assumes Poisson "
                             "sampling): call fl.run(..., fraction=1.0)")
        rng = np.random.default_rng(derive_seed(self.seed, rnd, 0))
        draws = rng.random(len(clients))
        chosen = [c for c, u in zip(clients, draws, strict=True) if u < self.client_rate]
        self._selected = {c.cid for c in chosen}
        instructions = self.inner.configure_round(rnd, chosen) if chosen else {}
        if not instructions:
            # Nobody was sampled: the mechanism still releases noise. fl.run needs at least
            # one update, so the first hospital runs ZERO steps (touching no data); its
            # all-zero update is then left out of the sum in combine().
            first = clients[0]
            base = self.inner.configure_round(rnd, [first])[first.cid]
            instructions = {first.cid: ClientInstruction(replace(base.config, steps=0), ())}
        return instructions

    def combine(self, rnd: int, updates: Sequence[ClientUpdate]) -> StateDict:
        """``(sum_k w_k clip(delta_k) + N(0, (z C w_max)^2)) / (q W)`` and one accountant step."""
        chosen = [u for u in updates if u.cid in self._selected]
        template = updates[0].delta
        c = self.clip_norm
        w_max = max(self._weights.values())
        acc = {k: torch.zeros(v.shape, dtype=torch.float64) for k, v in template.items()}
        unclipped = 0
        norms = []
        for u in chosen:
            clipped, norm = clip_update(u.delta, c)
            norms.append(norm)
            unclipped += int(norm <= c)
            w = self._weights[u.cid]
            for k in acc:
                acc[k] += w * clipped[k].double()
        std = self.update_noise_multiplier * c * w_max
        gen = torch_generator(derive_seed(self.seed, rnd, 1))
        denom = self.expected_clients
        out: StateDict = {}
        for k, ref in template.items():
            noisy = acc[k]
            if std > 0:
                noisy = noisy + torch.normal(0.0, std, size=ref.shape, generator=gen,
                                             dtype=torch.float64)
            out[k] = (noisy / denom).to(ref.dtype)
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.client_rate)
        row = {"round": float(rnd), "clip_norm": c, "participants": float(len(chosen)),
               "mean_norm": float(np.mean(norms)) if norms else math.nan,
               "epsilon": self.epsilon()}
        if self.adaptive is not None:
            noisy_count = unclipped
            if self.noise_multiplier > 0:
                noisy_count += float(torch.normal(0.0, self._count_noise(), size=(1,),
                                                  generator=gen, dtype=torch.float64))
            frac = noisy_count / (self.client_rate * len(self._weights))
            gap = frac - self.adaptive.target_quantile
            self.clip_norm = c * math.exp(-self.adaptive.lr * gap)
            row["unclipped_fraction"] = float(frac)
        self.log.append(row)
        return out

    def server_update(self, rnd: int, global_state: StateDict, delta: StateDict) -> StateDict:
        return self.inner.server_update(rnd, global_state, delta)

    def stop_reason(self, rnd: int) -> str | None:
        return self.inner.stop_reason(rnd)

    # ------------------------------------------------------------------ privacy ledger
    def epsilon(self, delta: float | None = None) -> float:
        """Client-level epsilon spent by the rounds so far."""
        return accountant_epsilon(self.accountant, self.delta if delta is None else delta)

    def epsilon_after(self, extra_rounds: int, delta: float | None = None) -> float:
        """Epsilon if ``extra_rounds`` more rounds were run (nothing is spent)."""
        acc = accountant_after(self.accountant, self.noise_multiplier, self.client_rate,
                               extra_rounds)
        return accountant_epsilon(acc, self.delta if delta is None else delta)

    def __repr__(self) -> str:
        return (f"DPFedAvg(inner={self.inner!r}, noise_multiplier={self.noise_multiplier}, "
                f"clip_norm={self.clip_norm}, client_rate={self.client_rate}, "
                f"weighted={self.weighted}, adaptive={self.adaptive})")
