"""A privacy budget the run itself enforces.

An ethics board approves a study at, say, ``(epsilon, delta) = (1, 1e-5)``. That number must
bound the *whole* run, not each round, and nobody should have to remember to check it. A
:class:`BudgetGuard` wraps the strategy and asks a *ledger* (anything that can say what
epsilon would be after ``k`` more rounds) two questions:

* before round 1, if the number of planned rounds is known: would they fit? If not, the run
  refuses to start (:class:`BudgetExceededError`) and says how many rounds would fit;
* before every round: would this round push epsilon over the target? If so the run stops
  *before* it, through :meth:`Strategy.stop_reason`, and ``History.stopped`` says why.

Ledgers: a :class:`~fedlearn.privacy.client_dp.DPFedAvg` (client-level DP) is its own, and
so is the DP layer of any aggregator (``SecureAggregation(..., transform=DistributedGaussian)``
is guarded through its distributed-DP layer); for sample-level DP, :class:`HospitalLedgers`
reports the worst hospital, assuming every hospital
takes part in the next round (the guard cannot know who will be sampled, so it is cautious).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..client import Client, TrainConfig
from ..strategy import Strategy, StrategyWrapper
from ..utils import StateDict
from .dpsgd import DPClient

__all__ = ["PrivacyBudget", "BudgetExceededError", "PrivacyLedger", "HospitalLedgers",
           "rounds_within_budget", "BudgetGuard"]


@dataclass(frozen=True)
class PrivacyBudget:
    """A target ``(epsilon, delta)`` for the whole run."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")


class BudgetExceededError(RuntimeError):
    """The planned run would spend more privacy than its budget allows."""


@runtime_checkable
class PrivacyLedger(Protocol):
    """Anything that can forecast its epsilon ``extra_rounds`` rounds from now."""

    def epsilon_after(self, extra_rounds: int, delta: float | None = None) -> float: ...


class HospitalLedgers:
    """The worst epsilon over DP hospitals (sample-level DP), for a given local ``config``."""

    def __init__(self, clients: Sequence[Client], config: TrainConfig) -> None:
        dp = [c for c in clients if isinstance(c, DPClient)]
        if len(dp) != len(clients):
            raise TypeError("HospitalLedgers needs DPClient hospitals (see dp_clients_from)")
        if not dp:
            raise ValueError("no hospitals")
        self.clients = dp
        self.config = config

    def epsilon_after(self, extra_rounds: int, delta: float | None = None) -> float:
        return max(c.epsilon_after(extra_rounds, self.config, delta) for c in self.clients)

    def per_hospital(self, delta: float | None = None) -> dict[str, float]:
        """Epsilon spent so far by each hospital, by name."""
        return {c.name: c.epsilon(delta) for c in self.clients}


def rounds_within_budget(ledger: PrivacyLedger, budget: PrivacyBudget, limit: int = 100_000) -> int:
    """The largest number of further rounds whose epsilon stays within ``budget`` (<= limit).

    Epsilon grows with every round, so a doubling-then-bisection search needs only about
    ``2 log2(answer)`` forecasts.
    """
    def fits(k: int) -> bool:
        return ledger.epsilon_after(k, budget.delta) <= budget.epsilon

    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _own_ledger(strategy: Strategy) -> PrivacyLedger:
    """The strategy itself (DP-FedAvg), or the one DP layer of its aggregator (distributed
    DP under secure aggregation): every DP mechanism forecasts through its accountant."""
    if isinstance(strategy, PrivacyLedger):
        return strategy
    layers = [a for a in strategy.aggregator.layers() if getattr(a, "is_dp", False)]
    if len(layers) == 1:
        return layers[0]  # type: ignore[return-value]
    raise TypeError(f"{type(strategy).__name__} has {len(layers)} DP aggregator layers, so no "
                    "single privacy ledger: pass ledger=HospitalLedgers(clients, config) for "
                    "DP-SGD hospitals, or ledger= the mechanism to guard")


class BudgetGuard(StrategyWrapper):
    """Wrap a strategy so the run refuses to start or stops before exceeding ``budget``.

    Args:
        inner: the strategy that does the work (a ``DPFedAvg``, or ``FedAvg`` over DPClients).
        budget: the target ``(epsilon, delta)``.
        ledger: what to ask for forecasts; defaults to ``inner`` when it is a ledger, else to
            the one DP layer of its aggregator.
        planned_rounds: the ``rounds`` you will pass to ``fl.run``; if given, a plan that
            does not fit is refused in :meth:`initialize`, before any training.
    """

    def __init__(self, inner: Strategy, budget: PrivacyBudget,
                 ledger: PrivacyLedger | None = None, planned_rounds: int | None = None) -> None:
        if ledger is None:
            ledger = _own_ledger(inner)
        if planned_rounds is not None and planned_rounds < 0:
            raise ValueError(f"planned_rounds must be >= 0, got {planned_rounds}")
        super().__init__(inner)
        self.budget = budget
        self.ledger = ledger
        self.planned_rounds = planned_rounds
        self.name = getattr(inner, "name", type(inner).__name__)

    def spent(self) -> float:
        """Epsilon spent so far (at the budget's delta)."""
        return self.ledger.epsilon_after(0, self.budget.delta)

    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        self.inner.initialize(global_state, clients)
        if self.planned_rounds:
            eps = self.ledger.epsilon_after(self.planned_rounds, self.budget.delta)
            if eps > self.budget.epsilon:
                fit = rounds_within_budget(self.ledger, self.budget, self.planned_rounds)
                raise BudgetExceededError(
                    f"refusing to start: {self.planned_rounds} rounds would spend "
                    f"epsilon = {eps:.3g} > {self.budget.epsilon:g} (delta = "
                    f"{self.budget.delta:g}); only {fit} round(s) fit this budget. Plan fewer "
                    "rounds, add noise, or sample fewer patients/hospitals per round.")

    def stop_reason(self, rnd: int) -> str | None:
        reason = self.inner.stop_reason(rnd)
        if reason is not None:
            return reason
        nxt = self.ledger.epsilon_after(1, self.budget.delta)
        if nxt > self.budget.epsilon:
            return (f"privacy budget: round {rnd} would raise epsilon from {self.spent():.3g} "
                    f"to {nxt:.3g} > {self.budget.epsilon:g} (delta = {self.budget.delta:g})")
        return None

    def __repr__(self) -> str:
        return f"BudgetGuard(inner={self.inner!r}, budget={self.budget})"
