"""Cyclic weight transfer (Chang et al., 2018): the model visits one hospital per round.

Before federated averaging, the first multi-institution deep-learning studies passed *one*
model from hospital to hospital: each trains it for a while on its own patients and hands it
on. FLamby's ``Cyclic`` strategy defines a round exactly so: one hospital runs
``num_updates`` local steps; the order is a fresh random permutation of the hospitals at the
start of every cycle (``deterministic=True`` keeps the listed order). Five rounds over six
hospitals therefore train on five of them.

As a :class:`~fedlearn.Strategy`: :meth:`configure_round` instructs only the next hospital of
the cycle, and the "aggregate" of its single update is that update, so the next round starts
from the model it produced. ``fl.run``'s loop is unchanged.

``single_update = True`` marks that each round's "sum" is one hospital's update. Secure
aggregation or differential privacy *of the sum* would then protect nothing (the sum *is* the
hospital's update), so a secure or DP aggregator must refuse a strategy carrying this flag
(the aggregator layer of issue 12 checks it).

Note on FLamby: at the pinned commit (edacf54), FLamby's ``Cyclic`` gives every client its
own deep copy of the model and never copies weights from one to the next, and its benchmark
scores the copy of client 0; its published Cyclic numbers are therefore those of client 0's
model after at most one round of local training, not of a model passed around the cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..aggregate import apply_delta
from ..client import Client, TrainConfig
from ..strategy import ClientInstruction, Strategy
from ..update import ClientUpdate, validate_updates
from ..utils import StateDict

__all__ = ["Cyclic"]


class Cyclic(Strategy):
    """One hospital per round, in cycles over all hospitals (module docstring).

    Args:
        config: the local training each visited hospital runs (FLamby: 100 SGD steps).
        deterministic: cycle in the clients' listed order instead of reshuffling.
        seed: seed of the per-cycle permutations (FLamby uses the run's seed).
    """

    name = "Cyclic"
    single_update = True

    def __init__(self, config: TrainConfig | None = None, *, deterministic: bool = False,
                 seed: int = 0) -> None:
        self.config = config if config is not None else TrainConfig()
        self.deterministic = deterministic
        self.seed = seed
        self._cids: list[int] = []
        self._cycle: list[int] = []
        self._rng = np.random.default_rng(seed)
        self.visits: list[int] = []

    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        self._cids = [c.cid for c in clients]
        self._cycle = []
        self._rng = np.random.default_rng(self.seed)
        self.visits = []

    def _new_cycle(self) -> list[int]:
        k = len(self._cids)
        order = np.arange(k) if self.deterministic else self._rng.permutation(k)
        return [self._cids[i] for i in order]

    def next_client(self, available: Sequence[int]) -> int:
        """The next hospital of the cycle that is available this round (others are skipped)."""
        if not set(available) & set(self._cids):
            raise ValueError(f"none of the sampled clients {list(available)} was registered "
                             f"by initialize(); registered: {self._cids}")
        while True:
            if not self._cycle:
                self._cycle = self._new_cycle()
            cid = self._cycle.pop(0)
            if cid in available:
                return cid

    def configure_round(self, rnd: int, clients: Sequence[Client]) -> dict[int, ClientInstruction]:
        cid = self.next_client([c.cid for c in clients])
        self.visits.append(cid)
        return {cid: ClientInstruction(self.config)}

    def combine(self, rnd: int, updates: Sequence[ClientUpdate]) -> StateDict:
        if len(updates) != 1:
            raise ValueError(f"Cyclic expects exactly one update per round, got {len(updates)}")
        validate_updates(list(updates))
        return {k: v.clone() for k, v in updates[0].delta.items()}

    def apply(self, rnd: int, global_state: StateDict, sums: Any) -> StateDict:
        """Server step of the aggregator API (issue 12): add the one hospital's delta.

        The "mean" of a single update is that update, so the next round starts from the model
        the visited hospital produced.
        """
        if len(sums.included) != 1:
            raise ValueError(f"Cyclic expects exactly one update per round, got "
                             f"{len(sums.included)}")
        return apply_delta(global_state, self.mean_delta(sums, global_state))

    def __repr__(self) -> str:
        return (f"Cyclic(config={self.config}, deterministic={self.deterministic}, "
                f"seed={self.seed})")
