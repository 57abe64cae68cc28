"""``SecureAggregation(strategy)``: any algorithm, its sums computed under masks.

The wrapper changes one thing: the strategy's aggregator gets a
:class:`~fedlearn.aggregators.Secure` leaf, so every quantity the algorithm asks to be summed
(FedAvg's weighted deltas, SCAFFOLD's control-variate changes, FedNova's normalised deltas and
step counts, FedBN's shared layers) is summed under Bonawitz et al.'s masks, and the server
only ever learns the sums. Local training, the server step (plain, momentum, Adam) and
personal layers are the inner strategy's, untouched: ``SecureAggregation(Scaffold(...))`` is
SCAFFOLD, with secure sums.

**Client-side transforms (distributed DP).** A server that only sees the sum cannot clip or
noise individual updates, so differential privacy must happen on the hospitals, before
masking: ``transform=DistributedGaussian(C, z)`` (a
:class:`~fedlearn.aggregators.DistributedDP` layer) clips each hospital's contribution and
adds its noise share, sized for the protocol's threshold ``t``.

In this simulation the clients' side of the protocol runs in the same process, but the
:class:`~.protocol.SecAggServer` object only ever receives masked vectors, which the tests
check.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..aggregators.dp import DistributedDP
from ..aggregators.secure import Secure
from ..strategy import Strategy, StrategyWrapper

__all__ = ["RoundContext", "SecureAggregation"]


@dataclass(frozen=True)
class RoundContext:
    """What a hospital's client-side step may know about the round.

    Attributes:
        rnd: round number.
        num_clients: hospitals asked to take part (the most whose contributions can be summed).
        threshold: ``t``; if the round succeeds at least ``t`` contributions are in the sum.
    """

    rnd: int
    num_clients: int
    threshold: int


class SecureAggregation(StrategyWrapper):
    """Wrap ``inner`` so the server only ever learns the (weighted) sums it needs.

    Args:
        inner: any strategy whose rule is a sum (FedAvg, FedProx, SCAFFOLD, FedOpt, FedBN,
            FedNova with plain SGD, ...). A rule that must see individual updates (a median)
            or that aggregates one hospital per round (Cyclic) is refused, with the reason.
        clip: bound on every float entry (the fixed-point range); entries beyond are clipped.
        bits: the ring Z_(2^bits) (32 by default).
        threshold: ``t`` as a count (int >= 2), or as a fraction of the instructed hospitals
            (float in (0, 1]; ``t = max(2, ceil(fraction * n))``).
        weighted: must agree with ``inner.weighted`` if given (set it on the inner strategy).
        max_weight: public bound on ``num_examples`` (default: the largest training set).
        transform: a :class:`~fedlearn.secagg.DistributedGaussian` (distributed DP), run on
            each hospital before masking.
        dropout_rate: probability that a hospital goes offline after sending its masked
            input (its input still counts; the protocol recovers), to show dropout recovery.
        seed: seeds the protocol's keys and the simulated dropouts; ``None`` uses OS
            randomness for the cryptography.
    """

    def __init__(self, inner: Strategy, *, clip: float = 1.0, bits: int = 32,
                 threshold: int | float = 2 / 3, weighted: bool | None = None,
                 max_weight: int | None = None, transform: DistributedDP | None = None,
                 dropout_rate: float = 0.0, seed: int | None = 0) -> None:
        super().__init__(inner)
        self.check_weighted(weighted)
        self.secure = Secure(clip=clip, bits=bits, threshold=threshold, max_weight=max_weight,
                             dropout_rate=dropout_rate, seed=seed)
        leaf: Secure | DistributedDP = self.secure
        if transform is not None:
            if not isinstance(transform, DistributedDP):
                raise TypeError(f"transform must be a DistributedGaussian (a DistributedDP "
                                f"aggregator layer), got {type(transform).__name__}")
            transform.inner = self.secure
            transform.check_inner()
            leaf = transform
        self.transform = transform
        self.aggregator = inner.aggregator.with_leaf(leaf)
        self.name = f"SecAgg-{getattr(inner, 'name', type(inner).__name__)}"

    # ------------------------------------------------------------------ the secure layer
    @property
    def clip(self) -> float:
        return self.secure.clip

    @property
    def bits(self) -> int:
        return self.secure.bits

    @property
    def threshold(self) -> int | float:
        return self.secure.threshold

    def threshold_for(self, n: int) -> int:
        """``t`` for a round with ``n`` instructed hospitals."""
        return self.secure.threshold_for(n)

    def quantization_bound(self, n_summed: int, weight_sum: float, n: int) -> float:
        """Worst-case |secure mean - plain mean| per coordinate (for unclipped deltas)."""
        return self.secure.bound(n_summed, weight_sum, n)

    def __repr__(self) -> str:
        return (f"SecureAggregation(inner={self.inner!r}, clip={self.clip}, bits={self.bits}, "
                f"threshold={self.threshold}, weighted={self.weighted})")
