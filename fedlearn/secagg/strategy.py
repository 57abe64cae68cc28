"""``SecureAggregation(strategy)``: any weighted-mean strategy, aggregated under masks.

The wrapper keeps the inner strategy's local training (``configure_round``) and server step
(``server_update``) and replaces only the aggregation, which is a weighted mean of deltas for
FedAvg, FedProx or FedOpt. For a weighted mean the server needs two sums, never the terms:

    delta = sum_k n_k delta_k / sum_k n_k,

so each client encodes the vector ``[n_k * clip(delta_k), n_k]`` into Z_(2^bits) (the weight is
one more, exact, integer coordinate), the protocol of :mod:`.protocol` returns the sums of both
over the clients whose masked input arrived, and the server divides. The result equals plain
FedAvg over those clients up to :meth:`SecureAggregation.quantization_bound` per coordinate,
provided no delta entry exceeds ``clip`` (the fraction that did is logged).

**Client-side transforms (distributed DP).** A server that only sees the sum cannot clip or
add noise to individual updates, so with secure aggregation differential privacy must happen
*on the clients, before masking*: each adds a share of the noise and the sum carries the
total ("distributed DP", Kairouz, Liu and Steinke 2021). The hook for that is ``transform``: any
callable ``transform(update, ctx) -> update`` (see :class:`ClientTransform`), applied to each
client's update in ``process_update``, i.e. on the client, before quantisation and masking.
It receives a :class:`RoundContext` telling it how many clients take part and the threshold
``t`` (the fewest whose noise can end up in the sum).
:class:`~fedlearn.secagg.ddp.DistributedGaussian` is the Gaussian mechanism written this way;
a DP wrapper from :mod:`fedlearn.privacy` plugs in the same way by providing such a callable.

In this simulation ``combine`` does run the clients' side of the protocol too (all parties
live in one process), but the :class:`~.protocol.SecAggServer` object it creates only ever
receives masked vectors, which the tests check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..client import Client
from ..strategy import ClientInstruction, Strategy
from ..update import ClientUpdate
from ..utils import StateDict, derive_seed, flatten_state, unflatten_state
from .costs import client_bytes
from .errors import SecAggAbort
from .quantize import FixedPoint
from .simulate import Dropouts, run_secure_sum

__all__ = ["RoundContext", "ClientTransform", "SecureAggregation"]


@dataclass(frozen=True)
class RoundContext:
    """What a client-side transform may know about the round.

    Attributes:
        rnd: round number.
        num_clients: clients asked to take part (the most whose contributions can be summed).
        threshold: ``t``; if the round succeeds at least ``t`` contributions are in the sum.
    """

    rnd: int
    num_clients: int
    threshold: int


class ClientTransform(Protocol):
    """A change a client makes to its update *before* masking (clipping, DP noise, ...)."""

    def __call__(self, update: ClientUpdate, ctx: RoundContext) -> ClientUpdate: ...


class SecureAggregation(Strategy):
    """Wrap ``inner`` so the server only ever learns the (weighted) sum of the updates.

    Args:
        inner: a strategy whose aggregation is a (weighted) mean of deltas, e.g. ``FedAvg``.
        clip: bound on every delta entry (the fixed-point range); entries beyond are clipped.
        bits: the ring Z_(2^bits) (32 by default).
        threshold: ``t`` as a count (int >= 2), or as a fraction of the round's clients
            (float in (0, 1]; ``t = max(2, ceil(fraction * n))``).
        weighted: weight by ``num_examples``; defaults to the inner strategy's ``weighted``.
        max_weight: public bound on ``num_examples`` (default: the largest training set).
        transform: client-side transform applied before masking (e.g. distributed DP).
        dropout_rate: probability that a client goes offline after sending its masked input
            (its input still counts; the protocol recovers), to show dropout recovery.
        seed: seeds the protocol's keys and the simulated dropouts; ``None`` uses OS
            randomness for the cryptography.
    """

    def __init__(self, inner: Strategy, *, clip: float = 1.0, bits: int = 32,
                 threshold: int | float = 2 / 3, weighted: bool | None = None,
                 max_weight: int | None = None, transform: ClientTransform | None = None,
                 dropout_rate: float = 0.0, seed: int | None = 0) -> None:
        if isinstance(threshold, float) and not 0 < threshold <= 1:
            raise ValueError(f"a fractional threshold must be in (0, 1], got {threshold}")
        if isinstance(threshold, int) and threshold < 2:
            raise ValueError(f"threshold must be >= 2, got {threshold}")
        if not 0 <= dropout_rate < 1:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
        self.inner = inner
        self.clip = float(clip)
        self.bits = bits
        self.threshold = threshold
        self.weighted = bool(getattr(inner, "weighted", True)) if weighted is None else weighted
        if transform is not None and self.weighted and getattr(transform, "requires_unweighted",
                                                               False):
            raise ValueError(f"{type(transform).__name__} calibrates noise for an unweighted sum:"
                             " pass weighted=False")
        self.max_weight = max_weight
        self.transform = transform
        self.dropout_rate = dropout_rate
        self.seed = seed
        self.name = f"SecAgg-{getattr(inner, 'name', type(inner).__name__)}"
        self.log: list[dict[str, object]] = []
        self._num_clients = 0

    # ------------------------------------------------------------------ helpers
    def threshold_for(self, n: int) -> int:
        """``t`` for a round with ``n`` clients."""
        if isinstance(self.threshold, int):
            return self.threshold
        return max(2, math.ceil(self.threshold * n))

    def codec(self, n: int) -> FixedPoint:
        """The fixed-point code for a round of ``n`` clients (values ``n_k * delta``)."""
        w = (self.max_weight or 1) if self.weighted else 1
        return FixedPoint(clip=self.clip * w, num_summands=n, bits=self.bits)

    def quantization_bound(self, n_summed: int, weight_sum: float, n: int) -> float:
        """Worst-case |secure mean - plain mean| per coordinate (for unclipped deltas)."""
        return self.codec(n).error_bound(n_summed) / weight_sum

    # ------------------------------------------------------------------ strategy hooks
    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        if self.max_weight is None:
            self.max_weight = max(c.num_train for c in clients)
        self.inner.initialize(global_state, clients)

    def configure_round(self, rnd: int, clients: Sequence[Client]) -> dict[int, ClientInstruction]:
        instructions = self.inner.configure_round(rnd, clients)
        self._num_clients = len(instructions)
        return instructions

    def process_update(self, rnd: int, client: Client, update: ClientUpdate) -> ClientUpdate:
        """Client side: the inner strategy's processing, then ``transform`` (before masking)."""
        inner_process: Callable | None = getattr(self.inner, "process_update", None)
        if inner_process is not None:
            update = inner_process(rnd, client, update)
        n = max(self._num_clients, 2)
        if self.transform is not None:
            update = self.transform(update, RoundContext(rnd, n, self.threshold_for(n)))
        d = sum(v.numel() for v in update.delta.values()) + 1
        up = sum(v for k, v in client_bytes(n, d, self.bits).items() if k.endswith("(up)"))
        update.nbytes = up
        return update

    def combine(self, rnd: int, updates: Sequence[ClientUpdate]) -> StateDict:
        n = len(updates)
        template = updates[0].delta
        zero = {k: torch.zeros_like(v) for k, v in template.items()}
        t = self.threshold_for(n)
        if n < t:
            self.log.append({"round": rnd, "clients": n, "threshold": t,
                             "aborted": f"{n} client(s) reported, fewer than t = {t}"})
            return zero  # the round is lost; the global model stays as it was
        codec = self.codec(n)
        inputs, clipped = {}, 0.0
        for u in updates:
            w = int(u.num_examples) if self.weighted else 1
            if self.weighted and w > (self.max_weight or 0):
                raise ValueError(f"client {u.cid} has {w} examples, above max_weight "
                                 f"{self.max_weight}")
            vec = flatten_state(u.delta).double().numpy()
            clipped += float(np.mean(np.abs(vec) > self.clip)) / n
            words = codec.encode(np.clip(vec, -self.clip, self.clip) * w)
            inputs[u.cid] = np.concatenate([words, np.array([w], dtype=words.dtype)])
        drops = Dropouts()
        if self.dropout_rate > 0:
            rng = np.random.default_rng(derive_seed(self.seed or 0, rnd, 7))
            drops = Dropouts(before_unmask=frozenset(
                u.cid for u in updates if rng.random() < self.dropout_rate))
        row: dict[str, object] = {"round": rnd, "clients": n, "threshold": t,
                                  "dropped_after_input": sorted(drops.before_unmask),
                                  "clipped_fraction": clipped}
        try:
            res = run_secure_sum(inputs, t, self.bits, dropouts=drops, round_id=rnd,
                                 seed=None if self.seed is None else derive_seed(self.seed, rnd))
        except SecAggAbort as exc:
            row["aborted"] = str(exc)
            self.log.append(row)
            return zero  # the round is lost; the global model stays as it was
        weight_sum = int(res.total[-1])
        mean = codec.decode(res.total[:-1]) / weight_sum
        row.update(included=res.included, weight_sum=weight_sum,
                   bound=codec.error_bound(len(res.included)) / weight_sum,
                   bytes_per_client=float(np.mean([res.bytes_sent[c] + res.bytes_received[c]
                                                    for c in res.included])),
                   seconds=sum(res.client_seconds.values()) + res.server_seconds)
        self.log.append(row)
        return unflatten_state(torch.from_numpy(mean), template)

    def server_update(self, rnd: int, global_state: StateDict, delta: StateDict) -> StateDict:
        return self.inner.server_update(rnd, global_state, delta)

    def stop_reason(self, rnd: int) -> str | None:
        return self.inner.stop_reason(rnd)

    def __repr__(self) -> str:
        return (f"SecureAggregation(inner={self.inner!r}, clip={self.clip}, bits={self.bits}, "
                f"threshold={self.threshold}, weighted={self.weighted})")
