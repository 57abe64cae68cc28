"""Strategies: what the server asks of clients, and how it combines their answers.

A :class:`Strategy` has two hooks, as in Flower:

* :meth:`Strategy.configure_round` - the instruction each sampled client gets
  (a :class:`~fedlearn.client.TrainConfig` and optional local hooks);
* :meth:`Strategy.aggregate` - the new global weights from the returned updates, which by
  default is ``server_update(state, combine(updates))``.

A new algorithm overrides one of these: FedProx adds a local hook, FedOpt overrides
``server_update``, robust rules override ``combine``. The maths lives in
:mod:`fedlearn.aggregate`; this module only orchestrates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .aggregate import apply_delta, fedavg_delta
from .client import Client, LocalHook, TrainConfig
from .update import ClientUpdate
from .utils import StateDict

__all__ = ["ClientInstruction", "Strategy", "StrategyWrapper", "FedAvg", "FedSGD"]


@dataclass(frozen=True)
class ClientInstruction:
    """The server's message to one client for one round."""

    config: TrainConfig
    hooks: tuple[LocalHook, ...] = field(default_factory=tuple)


class Strategy:
    """Base class: subclasses override :meth:`configure_round`, :meth:`combine` or
    :meth:`server_update`."""

    name: str = "strategy"

    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        """Called once before round 1 (e.g. to allocate server state such as momentum)."""

    def configure_round(self, rnd: int, clients: Sequence[Client]) -> dict[int, ClientInstruction]:
        """Instructions for the clients sampled this round, keyed by client id."""
        raise NotImplementedError

    def combine(self, rnd: int, updates: Sequence[ClientUpdate]) -> StateDict:
        """One aggregate delta from the clients' deltas."""
        raise NotImplementedError

    def stop_reason(self, rnd: int) -> str | None:
        """Why the run must stop before round ``rnd`` (e.g. a privacy budget), or None."""
        return None

    def server_update(self, rnd: int, global_state: StateDict, delta: StateDict) -> StateDict:
        """Apply the aggregate delta to the global weights (plain addition by default)."""
        return apply_delta(global_state, delta)

    def aggregate(self, rnd: int, global_state: StateDict,
                  updates: Sequence[ClientUpdate]) -> StateDict:
        """New global weights from this round's updates."""
        return self.server_update(rnd, global_state, self.combine(rnd, updates))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class StrategyWrapper(Strategy):
    """A strategy around another one, ``inner``: every hook it does not override is inner's.

    Wrappers add one concern (compression, a privacy budget) without knowing what they wrap.
    Forwarding ``aggregate`` keeps an inner strategy's own aggregation (SCAFFOLD overrides
    it), and forwarding unknown attributes keeps the optional hooks ``fl.run`` looks up
    (``process_update``, ``personal_state``, ``download_nbytes``) working under any stack of
    wrappers: FedBN's personal layers survive being wrapped.
    """

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner

    def __getattr__(self, attr: str) -> Any:
        # only called when normal lookup fails; "inner" itself must not recurse (unpickling)
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        self.inner.initialize(global_state, clients)

    def configure_round(self, rnd: int, clients: Sequence[Client]) -> dict[int, ClientInstruction]:
        return self.inner.configure_round(rnd, clients)

    def combine(self, rnd: int, updates: Sequence[ClientUpdate]) -> StateDict:
        return self.inner.combine(rnd, updates)

    def server_update(self, rnd: int, global_state: StateDict, delta: StateDict) -> StateDict:
        return self.inner.server_update(rnd, global_state, delta)

    def aggregate(self, rnd: int, global_state: StateDict,
                  updates: Sequence[ClientUpdate]) -> StateDict:
        return self.inner.aggregate(rnd, global_state, updates)

    def stop_reason(self, rnd: int) -> str | None:
        return self.inner.stop_reason(rnd)

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
        if not server_lr > 0:
            raise ValueError(f"server_lr must be > 0, got {server_lr}")
        self.config = config if config is not None else TrainConfig()
        self.weighted = weighted
        self.server_lr = server_lr

    def local_hooks(self, rnd: int, client: Client) -> tuple[LocalHook, ...]:
        """Hooks a client runs this round; none for FedAvg (FedProx, SCAFFOLD add theirs)."""
        return ()

    def configure_round(self, rnd: int, clients: Sequence[Client]) -> dict[int, ClientInstruction]:
        return {c.cid: ClientInstruction(self.config, self.local_hooks(rnd, c)) for c in clients}

    def combine(self, rnd: int, updates: Sequence[ClientUpdate]) -> StateDict:
        return fedavg_delta(updates, weighted=self.weighted)

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
