"""Strategies: what the server asks of hospitals, what it needs summed, and what it does next.

A round of any federated algorithm has the same shape, and :class:`Strategy` declares every
step of it as a method with a do-nothing default (as Flower's ``Strategy`` does), so a
wrapper can forward all of them and none can be lost:

1. :meth:`~Strategy.configure_round` - the instruction each sampled hospital gets (a
   :class:`~fedlearn.client.TrainConfig` and optional local hooks);
2. hospitals train; :meth:`~Strategy.process_update` is the algorithm's own step on the
   hospital's side (identity by default);
3. :meth:`~Strategy.contribution` - *what* the server needs summed from each hospital: named
   vectors (the delta; SCAFFOLD adds its control-variate change), a weight, exact counts;
4. the strategy's :attr:`~Strategy.aggregator` computes *how*: in the clear, under secure
   aggregation, with DP noise, compressed (:mod:`fedlearn.aggregators`);
5. :meth:`~Strategy.apply` - the server step on the sums (a mean, then ``server_update``:
   plain, momentum, Adam, ...); an aborted round applies nothing;
6. :meth:`~Strategy.personal_state` - the model each hospital really uses (FedBN's own
   layers), :meth:`~Strategy.download_nbytes` - what the server sends each hospital.

A new algorithm overrides one of these: FedProx adds a local hook, FedOpt overrides
``server_update``, SCAFFOLD adds a vector to ``contribution`` and a line to ``apply``, FedBN
keeps keys out of ``contribution``. It never needs to know whether its sums were secure or
noised, and an aggregator never knows which algorithm it serves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .aggregate import apply_delta
from .aggregators.base import (
    AggregateResult,
    Aggregator,
    Contribution,
    Plain,
    RoundInfo,
    RunInfo,
    Sums,
)
from .client import Client, LocalHook, TrainConfig
from .update import ClientUpdate, InvalidUpdateError, validate_updates
from .utils import StateDict, float_keys, state_nbytes

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ClientInstruction", "RoundOutcome", "Strategy", "StrategyWrapper", "FedAvg",
           "FedSGD"]

_PLAIN = Plain()  # stateless: one instance serves every strategy that sums in the clear


@dataclass(frozen=True)
class ClientInstruction:
    """The server's message to one client for one round."""

    config: TrainConfig
    hooks: tuple[LocalHook, ...] = field(default_factory=tuple)


@dataclass
class RoundOutcome:
    """What one round of aggregation produced.

    Attributes:
        state: the new global weights (the old ones, unchanged, if the round aborted).
        measurements: what the aggregator layers measured, one dict per layer name.
        included: the hospitals whose contributions are in the sums.
        aborted: why no sums were revealed (too few hospitals, nobody reported), or None.
        bytes_up: bytes the contributions cost on the uplink.
    """

    state: StateDict
    measurements: dict[str, Any]
    included: tuple[int, ...]
    aborted: str | None
    bytes_up: int


class Strategy:
    """Base class of every federated algorithm (see the module docstring for the hooks)."""

    name: str = "strategy"
    #: weight hospitals by their size ``n_k`` (True) or count each once (False)
    weighted: bool = True
    #: a round aggregates ONE hospital's update (Cyclic): refused under secure aggregation/DP
    single_update: bool = False
    #: the counts in :meth:`contribution` are integers (secure aggregation sums them exactly)
    integer_counts: bool = True
    _aggregator: Aggregator | None = None

    # ------------------------------------------------------------------ aggregator
    @property
    def aggregator(self) -> Aggregator:
        """How this strategy's sums are computed (:class:`~fedlearn.aggregators.Plain` default)."""
        return self._aggregator if self._aggregator is not None else _PLAIN

    @aggregator.setter
    def aggregator(self, agg: Aggregator) -> None:
        agg.check(self)
        self._aggregator = agg

    # ------------------------------------------------------------------ the run
    def setup(self, model: nn.Module) -> None:
        """Called by ``fl.run`` once, before :meth:`initialize`, with the initial model."""
        self.float_buffers = frozenset(k for k, b in model.named_buffers()
                                       if torch.is_floating_point(b))

    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        """Called once before round 1 (e.g. to allocate server state such as momentum)."""

    def start(self, global_state: StateDict, clients: Sequence[Client],
              model: nn.Module | None = None) -> None:
        """Everything before round 1: :meth:`setup`, :meth:`initialize`, the aggregator's setup.

        ``fl.run`` calls this; call it yourself before using :meth:`combine` directly.
        """
        if model is not None:
            self.setup(model)
        self.initialize(global_state, clients)
        agg = self.aggregator
        agg.check(self)
        buffers = getattr(self, "float_buffers", frozenset()) - self.personal_keys()
        agg.setup(RunInfo(weights={c.cid: self.client_weight(c) for c in clients},
                          buffer_keys=frozenset(buffers), strategy=self.name))

    def configure_round(self, rnd: int, clients: Sequence[Client]) -> dict[int, ClientInstruction]:
        """Instructions for the clients sampled this round, keyed by client id."""
        raise NotImplementedError

    def process_update(self, rnd: int, client: Client, update: ClientUpdate) -> ClientUpdate:
        """The algorithm's step on the hospital after training (identity by default)."""
        return update

    def stop_reason(self, rnd: int) -> str | None:
        """Why the run must stop before round ``rnd`` (e.g. a privacy budget), or None."""
        return None

    # ------------------------------------------------------------------ what is summed
    def client_weight(self, client: Client) -> float:
        """A hospital's public weight: its size ``n_k``, or 1 when unweighted.

        A remote hospital whose size the server does not know yet (a Flower deployment, where
        only a plain sum is allowed) gets ``nan``: no aggregator that needs it accepts it.
        """
        if not self.weighted:
            return 1.0
        n = getattr(client, "num_train", None)
        return float(n) if n is not None else math.nan

    def personal_keys(self) -> frozenset[str]:
        """Model entries that never leave the hospital (FedBN's BatchNorm layers)."""
        return frozenset()

    def contribution(self, rnd: int, update: ClientUpdate) -> Contribution:
        """What this hospital asks to be summed: its delta (minus personal keys), weighted."""
        personal = self.personal_keys()
        delta = {k: v for k, v in update.delta.items() if k not in personal}
        weight = float(update.num_examples) if self.weighted else 1.0
        return Contribution(update.cid, {"delta": delta}, weight=weight)

    def summed_template(self, global_state: StateDict) -> dict[str, StateDict]:
        """Zero tensors of every summed vector (what a round nobody reports to would sum)."""
        personal = self.personal_keys()
        return {"delta": {k: torch.zeros_like(global_state[k]) for k in float_keys(global_state)
                          if k not in personal}}

    def apply(self, rnd: int, global_state: StateDict, sums: Sums) -> StateDict:
        """The server step on the sums: ``server_update`` on the mean delta by default."""
        return self.server_update(rnd, global_state, self.mean_delta(sums, global_state))

    def server_update(self, rnd: int, global_state: StateDict, delta: StateDict) -> StateDict:
        """Apply an aggregate delta to the global weights (plain addition by default)."""
        return apply_delta(global_state, delta)

    def personal_state(self, cid: int, global_state: StateDict) -> StateDict:
        """The model hospital ``cid`` really uses (the global one by default)."""
        return global_state

    def has_personal_state(self) -> bool:
        """Whether :meth:`personal_state` can differ from the global model."""
        return type(self).personal_state is not Strategy.personal_state

    def download_nbytes(self, global_state: StateDict) -> int:
        """Bytes sent to each hospital per round (the floating-point weights by default)."""
        return state_nbytes({k: global_state[k] for k in float_keys(global_state)})

    # ------------------------------------------------------------------ one round
    def _sums(self, rnd: int, global_state: StateDict | None, updates: Sequence[ClientUpdate],
              instructed: int | None) -> tuple[AggregateResult, int]:
        updates = list(updates)
        if updates:
            validate_updates(updates)
        template = self.summed_template(global_state) if global_state is not None else {}
        if global_state is None and updates:
            template = {n: {k: torch.zeros_like(v) for k, v in vec.items()}
                        for n, vec in self.contribution(rnd, updates[0]).vectors.items()}
        info = RoundInfo(rnd, instructed if instructed is not None else len(updates), template)
        agg = self.aggregator
        contributions = [agg.prepare(self.contribution(rnd, u), info) for u in updates]
        return agg.aggregate(contributions, info), sum(int(c.nbytes or 0) for c in contributions)

    def aggregate_round(self, rnd: int, global_state: StateDict,
                        updates: Sequence[ClientUpdate], *, instructed: int | None = None
                        ) -> RoundOutcome:
        """New global weights from this round's updates, with what the aggregator measured.

        ``instructed`` is how many hospitals were asked to train (default: as many as
        reported); secure aggregation fixes its threshold from it. A round whose sums are
        not revealed (too few reports) leaves the model as it was: no server step at all,
        so neither momentum nor Adam moments move.

        Raises:
            InvalidUpdateError: an update is malformed, or the server step produced a
                non-finite weight (e.g. an overflow), naming the round and the entry.
        """
        res, nbytes = self._sums(rnd, global_state, updates, instructed)
        if res.sums is not None and res.sums.denominator <= 0:
            res.sums, res.aborted = None, ("the weights sum to zero: no hospital trained on "
                                           "any example (num_examples = 0, or no local step)")
        if res.sums is None:
            return RoundOutcome(global_state, res.measurements, (), res.aborted, nbytes)
        new_state = self.apply(rnd, global_state, res.sums)
        for k, v in new_state.items():
            if torch.is_floating_point(v) and not torch.isfinite(v).all():
                raise InvalidUpdateError(
                    f"round {rnd}: the server step made {int((~torch.isfinite(v)).sum())} "
                    f"value(s) of entry {k!r} non-finite (an overflow: the updates or the "
                    "server learning rate are far too large); the global model was not changed")
        return RoundOutcome(new_state, res.measurements, res.sums.included, None, nbytes)

    def aggregate(self, rnd: int, global_state: StateDict,
                  updates: Sequence[ClientUpdate]) -> StateDict:
        """New global weights from this round's updates (:meth:`aggregate_round`'s state)."""
        return self.aggregate_round(rnd, global_state, updates).state

    def mean_delta(self, sums: Sums, like: StateDict | None = None) -> StateDict:
        """The aggregate delta the server step applies, from the sums."""
        return sums.mean("delta", like)

    def combine(self, rnd: int, updates: Sequence[ClientUpdate]) -> StateDict:
        """The aggregate delta of ``updates`` through this strategy's aggregator (no server
        step, no state change beyond the aggregator's own, e.g. an accountant step).

        Zeros if the round aborted. Call :meth:`start` first when the aggregator needs it.
        """
        if not updates:
            raise InvalidUpdateError("no client updates to combine")
        res, _ = self._sums(rnd, None, updates, None)
        if res.sums is None:
            return {k: torch.zeros_like(v) for k, v in updates[0].delta.items()}
        like = updates[0].delta
        return self.mean_delta(res.sums, like)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class StrategyWrapper(Strategy):
    """A strategy around another one, ``inner``: every hook it does not override is inner's.

    Wrappers add one concern (a privacy budget, an aggregator) without knowing what they wrap.
    Every hook of :class:`Strategy` is forwarded explicitly, so SCAFFOLD's control variates and
    FedBN's personal layers survive any stack of wrappers; attributes that are not hooks
    (``config``, ``mu``, ...) are looked up on ``inner``.
    """

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner

    def check_weighted(self, weighted: bool | None) -> None:
        """Refuse a ``weighted=`` argument that contradicts the inner strategy's.

        A wrapper sums what the inner strategy asks for, weights included, so the weighting
        is set in one place only.
        """
        if weighted is not None and bool(weighted) != bool(self.inner.weighted):
            raise ValueError(f"weighted={weighted} disagrees with the inner strategy's "
                             f"weighted={self.inner.weighted}: {type(self).__name__} sums what "
                             f"the inner strategy asks for; set it on the inner strategy, e.g. "
                             f"FedAvg(config, weighted={weighted})")

    def __getattr__(self, attr: str) -> Any:
        # only called when normal lookup fails; "inner" itself must not recurse (unpickling)
        if attr in ("inner", "_aggregator") or attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    @property
    def weighted(self) -> bool:  # type: ignore[override]
        return self.inner.weighted

    @property
    def single_update(self) -> bool:  # type: ignore[override]
        return self.inner.single_update

    @property
    def integer_counts(self) -> bool:  # type: ignore[override]
        return self.inner.integer_counts

    @property
    def aggregator(self) -> Aggregator:  # type: ignore[override]
        """The inner strategy's aggregator unless this wrapper sets its own."""
        return self._aggregator if self._aggregator is not None else self.inner.aggregator

    @aggregator.setter
    def aggregator(self, agg: Aggregator) -> None:
        agg.check(self)
        self._aggregator = agg

    def setup(self, model: nn.Module) -> None:
        self.inner.setup(model)

    @property
    def float_buffers(self) -> frozenset[str]:
        return getattr(self.inner, "float_buffers", frozenset())

    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        self.inner.initialize(global_state, clients)

    def configure_round(self, rnd: int, clients: Sequence[Client]) -> dict[int, ClientInstruction]:
        return self.inner.configure_round(rnd, clients)

    def process_update(self, rnd: int, client: Client, update: ClientUpdate) -> ClientUpdate:
        return self.inner.process_update(rnd, client, update)

    def stop_reason(self, rnd: int) -> str | None:
        return self.inner.stop_reason(rnd)

    def client_weight(self, client: Client) -> float:
        return self.inner.client_weight(client)

    def personal_keys(self) -> frozenset[str]:
        return self.inner.personal_keys()

    def contribution(self, rnd: int, update: ClientUpdate) -> Contribution:
        return self.inner.contribution(rnd, update)

    def summed_template(self, global_state: StateDict) -> dict[str, StateDict]:
        return self.inner.summed_template(global_state)

    def apply(self, rnd: int, global_state: StateDict, sums: Sums) -> StateDict:
        return self.inner.apply(rnd, global_state, sums)

    def server_update(self, rnd: int, global_state: StateDict, delta: StateDict) -> StateDict:
        return self.inner.server_update(rnd, global_state, delta)

    def mean_delta(self, sums: Sums, like: StateDict | None = None) -> StateDict:
        return self.inner.mean_delta(sums, like)

    def personal_state(self, cid: int, global_state: StateDict) -> StateDict:
        return self.inner.personal_state(cid, global_state)

    def has_personal_state(self) -> bool:
        return self.inner.has_personal_state()

    def download_nbytes(self, global_state: StateDict) -> int:
        return self.inner.download_nbytes(global_state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(inner={self.inner!r})"


class FedAvg(Strategy):
    """Federated Averaging (McMahan et al., 2017).

    Every sampled client runs ``config`` locally; the server adds ``server_lr`` times the
    sample-weighted mean of the deltas. With ``server_lr=1`` the new global model is exactly
    the weighted average of the local models. ``weighted=False`` averages with 1/K, which
    is biased towards small hospitals (kept to *show* that bias).
    """

    name = "FedAvg"

    def __init__(self, config: TrainConfig | None = None, *, weighted: bool = True,
                 server_lr: float = 1.0) -> None:
        if not (isinstance(server_lr, int | float) and math.isfinite(server_lr)
                and server_lr > 0):
            raise ValueError(f"server_lr must be a finite number > 0, got {server_lr!r}")
        self.config = config if config is not None else TrainConfig()
        self.weighted = weighted
        self.server_lr = server_lr

    def local_hooks(self, rnd: int, client: Client) -> tuple[LocalHook, ...]:
        """Hooks a client runs this round; none for FedAvg (FedProx, SCAFFOLD add theirs)."""
        return ()

    def configure_round(self, rnd: int, clients: Sequence[Client]) -> dict[int, ClientInstruction]:
        return {c.cid: ClientInstruction(self.config, self.local_hooks(rnd, c)) for c in clients}

    def apply(self, rnd: int, global_state: StateDict, sums: Sums) -> StateDict:
        """``server_update`` on the mean delta."""
        return self.server_update(rnd, global_state, self.mean_delta(sums, global_state))

    def server_update(self, rnd: int, global_state: StateDict, delta: StateDict) -> StateDict:
        return apply_delta(global_state, delta, self.server_lr)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(config={self.config}, weighted={self.weighted}, "
                f"server_lr={self.server_lr})")


class FedSGD(FedAvg):
    """Federated SGD: each client takes ONE full-batch gradient step of size ``lr``.

    The weighted average of the deltas -lr * grad F_k(w) is -lr * grad F(w), i.e. exactly
    one step of gradient descent on the pooled data: a large-batch GD step in which the
    hospitals compute the pieces of the gradient.
    """

    name = "FedSGD"

    def __init__(self, lr: float = 0.1, *, weighted: bool = True,
                 class_weights: tuple[float, ...] | None = None) -> None:
        super().__init__(TrainConfig(steps=1, batch_size=None, lr=lr,
                                     class_weights=class_weights), weighted=weighted)
