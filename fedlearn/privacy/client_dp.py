"""Client-level differential privacy: DP-FedAvg (McMahan, Ramage, Talwar and Zhang, 2018).

Here the protected unit is a whole *hospital*: the sequence of global models barely changes
whether or not any one hospital took part at all. Each round

1. the server samples every hospital independently with probability ``q`` (Poisson sampling,
   which the accountant's privacy amplification assumes);
2. the aggregator (:class:`~fedlearn.aggregators.CentralDP`) clips every vector the algorithm
   asks to be summed, jointly, to L2 norm ``C`` (a hospital's influence on the sums is now at
   most ``C``, the sensitivity, or ``w_max * C`` with weights), adds Gaussian noise of std
   ``z * C`` to the *sums* and divides by the *expected* weight ``q W`` (McMahan et al.'s
   fixed-denominator estimator: dividing by the actual count would make the denominator
   itself depend on who took part);
3. the wrapped strategy's own server step runs on that noisy mean (plain FedAvg, server
   momentum, Adam, SCAFFOLD's control update, ...): anything done after the noise is
   post-processing and costs no privacy.

The server sees every clipped update and the exact sum: it must be trusted; only the models
it releases are DP. Without a trusted server, use distributed DP under secure aggregation
(:class:`~fedlearn.secagg.DistributedGaussian`). BatchNorm running statistics are never
noised: a strategy that sends them is refused unless ``buffers="release"`` (FedBN keeps them
home). Each round is one subsampled Gaussian step, so Opacus' RDP accountant tracks epsilon.
Optional adaptive clipping (Andrew, Thakkar, McMahan and Ramaswamy 2021) moves ``C`` towards a
quantile of the update norms using a second, noised, centred count; its privacy cost is
folded into the same noise multiplier ``z``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..aggregators.base import CompositionError
from ..aggregators.dp import AdaptiveClipping, CentralDP, clip_vectors
from ..client import Client
from ..strategy import ClientInstruction, Strategy, StrategyWrapper
from ..utils import StateDict, derive_seed
from .accountant import Accountant

__all__ = ["clip_update", "AdaptiveClipping", "DPFedAvg"]


def clip_update(delta: StateDict, clip_norm: float) -> tuple[StateDict, float]:
    """Scale ``delta`` to L2 norm at most ``clip_norm``; also return its original norm.

    The factor is ``min(1, C / (norm + 1e-6))``, the same as Opacus' per-sample clipping, so
    the clipped norm stays at or below ``C`` up to float32 rounding of the scaled entries.
    """
    if not clip_norm > 0:
        raise ValueError(f"clip_norm must be > 0, got {clip_norm}")
    clipped, norm = clip_vectors({"delta": dict(delta)}, clip_norm)
    return clipped["delta"], norm


class DPFedAvg(StrategyWrapper):
    """Wrap any strategy with client-level DP (clip, noise, Poisson client sampling).

    The wrapped strategy decides the local training, what is summed and the server step;
    this wrapper samples the hospitals and gives the strategy a
    :class:`~fedlearn.aggregators.CentralDP` aggregator. Call :func:`fedlearn.run` with
    ``fraction=1.0``: this wrapper samples the hospitals itself.

    Args:
        inner: e.g. ``FedAvg(TrainConfig(...), weighted=False)``.
        noise_multiplier: ``z``; noise std on the sums is ``z * C`` (``z * C * w_max`` weighted).
        clip_norm: initial ``C``.
        client_rate: ``q``, each hospital's probability of taking part in a round.
        weighted: must agree with ``inner.weighted`` if given: hospital ``k`` is weighted by
            its (public) size ``n_k`` when the inner strategy is weighted, else by 1. With
            ``q = 1``, ``z = 0`` and a huge ``C`` this is exactly the inner strategy.
        adaptive: optional :class:`AdaptiveClipping`.
        delta: the delta at which :meth:`epsilon` reports.
        seed: seeds client sampling and noise.
        buffers: ``"refuse"`` (default) or ``"release"`` BatchNorm statistics un-noised.
        accountant: an :class:`~fedlearn.privacy.Accountant` (or its back-end ``"rdp"`` /
            ``"prv"``) that every round reports to.

    Named recipes: :meth:`fixed` (a given noise and clip), :meth:`adaptive` (the clip follows
    a quantile of the update norms) and :meth:`for_budget` (the noise that spends a target
    ``(epsilon, delta)`` over a planned number of rounds).
    """

    def __init__(self, inner: Strategy, *, noise_multiplier: float, clip_norm: float,
                 client_rate: float = 1.0, weighted: bool | None = None,
                 adaptive: AdaptiveClipping | None = None, delta: float = 1e-5,
                 seed: int = 0, buffers: str = "refuse",
                 accountant: Accountant | str | None = None) -> None:
        super().__init__(inner)
        self.check_weighted(weighted)
        if not 0 < client_rate <= 1:
            raise ValueError(f"client_rate must be in (0, 1], got {client_rate}")
        self.dp = CentralDP(None, noise_multiplier=noise_multiplier, clip_norm=clip_norm,
                            sample_rate=client_rate, adaptive=adaptive, delta=delta,
                            seed=seed, buffers=buffers,  # type: ignore[arg-type]
                            accountant=accountant)
        self.client_rate = float(client_rate)
        self.seed = seed
        if any(a.hides_individual for a in inner.aggregator.layers()):
            raise CompositionError(
                "central DP clips each hospital's update on the server, which secure "
                "aggregation hides from it: use SecureAggregation(inner, "
                "transform=DistributedGaussian(...)) (distributed DP) instead")
        self.aggregator = inner.aggregator.with_leaf(self.dp)
        self.name = f"DP-{getattr(inner, 'name', type(inner).__name__)}"
        self._cids: set[int] = set()

    # ------------------------------------------------------------------ named recipes
    @classmethod
    def fixed(cls, inner: Strategy, *, noise_multiplier: float, clip_norm: float,
              client_rate: float = 1.0, delta: float = 1e-5, seed: int = 0,
              **kwargs: object) -> DPFedAvg:
        """McMahan et al. (2018) as published: a fixed noise multiplier and clip norm.

        Choose ``clip_norm`` on public or synthetic data: setting it from the hospitals'
        observed update norms is itself a release no epsilon covers.
        """
        return cls(inner, noise_multiplier=noise_multiplier, clip_norm=clip_norm,
                   client_rate=client_rate, delta=delta, seed=seed, **kwargs)  # type: ignore

    @classmethod
    def adaptive(cls, inner: Strategy, *, noise_multiplier: float, initial_clip: float = 0.1,
                 target_quantile: float = 0.5, clip_lr: float = 0.2,
                 count_noise: float | None = None, client_rate: float = 1.0,
                 delta: float = 1e-5, seed: int = 0, **kwargs: object) -> DPFedAvg:
        """Andrew et al. (2021): the clip norm follows the ``target_quantile`` of the update
        norms, from a noised centred count whose cost is folded into ``noise_multiplier``.

        Needs many hospitals per round: with ``m`` of them the count's noise is ``m / 20`` by
        default, so a handful of hospitals gets almost no information from it.
        """
        return cls(inner, noise_multiplier=noise_multiplier, clip_norm=initial_clip,
                   client_rate=client_rate, delta=delta, seed=seed,
                   adaptive=AdaptiveClipping(target_quantile, clip_lr, count_noise),
                   **kwargs)  # type: ignore[arg-type]

    @classmethod
    def for_budget(cls, inner: Strategy, *, epsilon: float, delta: float, rounds: int,
                   clip_norm: float = 1.0, client_rate: float = 1.0, seed: int = 0,
                   weighted: bool = False, **kwargs: object) -> DPFedAvg:
        """The noise that spends exactly ``(epsilon, delta)`` over ``rounds`` rounds at
        ``client_rate`` (Opacus' calibration), with a fixed ``clip_norm``.

        The sum is unweighted by default (``weighted=False``: weighting by size multiplies the
        sensitivity by the largest hospital's share); the inner strategy is copied with that
        setting, so its own hooks are kept.
        """
        import copy as _copy
        import math

        from .accounting import calibrate_noise

        if not (epsilon > 0 and math.isfinite(epsilon)):
            raise ValueError(f"epsilon must be a finite number > 0, got {epsilon}; for a run "
                             "without DP use the strategy itself")
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        z = calibrate_noise(epsilon, delta, client_rate, rounds)
        strategy = inner
        if inner.weighted != weighted:
            strategy = _copy.copy(inner)
            try:
                strategy.weighted = weighted
            except AttributeError:  # a wrapper follows its inner strategy
                raise ValueError(f"{type(inner).__name__} is weighted={inner.weighted}; build "
                                 f"its inner strategy with weighted={weighted}") from None
        return cls(strategy, noise_multiplier=z, clip_norm=clip_norm, client_rate=client_rate,
                   delta=delta, seed=seed, **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ the DP layer
    @property
    def noise_multiplier(self) -> float:
        return self.dp.noise_multiplier

    @property
    def clip_norm(self) -> float:
        """The current clip norm (it moves under adaptive clipping)."""
        return self.dp.clip_norm

    @property
    def delta(self) -> float:
        return self.dp.delta

    @property
    def adaptive_clipping(self) -> AdaptiveClipping | None:
        """The adaptive-clipping rule, if any (:meth:`adaptive` is the recipe that sets it)."""
        return self.dp.adaptive

    @property
    def accountant(self) -> Accountant:
        return self.dp.accountant

    @property
    def expected_clients(self) -> float:
        """``q W``: the fixed denominator of the estimator."""
        return self.dp.expected_weight

    @property
    def update_noise_multiplier(self) -> float:
        """Noise multiplier on the update sum: ``z`` itself, or less with adaptive clipping."""
        return self.dp.update_noise_multiplier

    # ------------------------------------------------------------------ strategy hooks
    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        self._cids = {c.cid for c in clients}
        self.inner.initialize(global_state, clients)

    def configure_round(self, rnd: int, clients: Sequence[Client]) -> dict[int, ClientInstruction]:
        """Poisson-sample the hospitals; only the sampled ones train (possibly none)."""
        if {c.cid for c in clients} != self._cids:
            raise ValueError("DPFedAvg samples hospitals itself (its accounting assumes Poisson "
                             "sampling): call fl.run(..., fraction=1.0)")
        rng = np.random.default_rng(derive_seed(self.seed, rnd, 0))
        draws = rng.random(len(clients))
        chosen = [c for c, u in zip(clients, draws, strict=True) if u < self.client_rate]
        return self.inner.configure_round(rnd, chosen) if chosen else {}

    # ------------------------------------------------------------------ privacy ledger
    def epsilon(self, delta: float | None = None) -> float:
        """Client-level epsilon spent by the rounds so far."""
        return self.dp.epsilon(delta)

    def epsilon_after(self, extra_rounds: int, delta: float | None = None) -> float:
        """Epsilon if ``extra_rounds`` more rounds were run (nothing is spent)."""
        return self.dp.epsilon_after(extra_rounds, delta)

    def __repr__(self) -> str:
        return (f"DPFedAvg(inner={self.inner!r}, noise_multiplier={self.noise_multiplier}, "
                f"clip_norm={self.clip_norm}, client_rate={self.client_rate}, "
                f"weighted={self.weighted}, adaptive={self.dp.adaptive})")
