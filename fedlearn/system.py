"""Heterogeneous compute: hospitals that are slow, busy or offline.

Synchronous federated learning waits for every sampled client, so one hospital on an old
workstation sets the pace of the whole federation. Real deployments therefore
(Bonawitz et al., 2019; Li et al., 2020, *FedProx*):

* give slow sites a smaller **local-step budget** (a slow hospital does fewer steps);
* set a **deadline** per round and drop the **stragglers** that miss it (what FedAvg does),
  or accept the *partial work* they finished by then (what FedProx proposes);
* tolerate **dropouts**: a site that goes offline this round simply does not report.

:class:`SystemModel` simulates all three in *simulated seconds* (local steps divided by the
client's speed), so experiments are reproducible and independent of the machine running
them. Pass it to :func:`fedlearn.run` as ``system=``; the round aggregates whoever reported
and :meth:`fedlearn.History.participation` shows who that was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .client import Client, TrainConfig
from .strategy import ClientInstruction
from .utils import derive_seed

__all__ = ["RoundPlan", "SystemModel", "planned_steps", "random_speeds"]


def planned_steps(config: TrainConfig, num_examples: int) -> int:
    """Minibatch steps ``config`` asks of a client holding ``num_examples`` examples.

    ``steps`` when set, else ``epochs * ceil(n / B)`` (one step per epoch for full batch),
    which is exactly the number of steps :func:`fedlearn.local_train` takes.
    """
    if config.steps is not None:
        return config.steps
    per_epoch = 1 if config.batch_size is None else math.ceil(num_examples / config.batch_size)
    return config.epochs * per_epoch


def random_speeds(cids: Sequence[int], sigma: float = 1.0, seed: int = 0) -> dict[int, float]:
    """Log-normal client speeds (steps per simulated second), median 1.

    Device speeds in deployed federations are heavy-tailed: most sites are similar and a
    few are many times slower, which a log-normal with ``sigma`` around 1 imitates.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    rng = np.random.default_rng(seed)
    return {int(c): float(s) for c, s in zip(cids, rng.lognormal(0.0, sigma, len(cids)),
                                             strict=True)}


@dataclass(frozen=True)
class RoundPlan:
    """What the system lets happen in one round.

    Attributes:
        instructions: the clients that will report, with their (possibly shortened) configs.
        dropped: sampled clients that went offline (random dropout).
        stragglers: sampled clients too slow for the deadline and left out.
        truncated: clients that report only the steps finished by the deadline.
        steps: local steps each reporting client will run.
        seconds: simulated time until the server can aggregate.
    """

    instructions: dict[int, ClientInstruction]
    dropped: tuple[int, ...]
    stragglers: tuple[int, ...]
    truncated: tuple[int, ...]
    steps: dict[int, int]
    seconds: float


class SystemModel:
    """Per-client speeds and step budgets, a round deadline and random dropouts.

    Args:
        speeds: local steps per simulated second, by client id (a mapping, or a sequence
            indexed by client id); missing clients run at speed 1.
        step_budgets: the most local steps a client may run per round (a slow or busy
            hospital does fewer steps than the server asked for); a budget of 0 means the
            client never reports (it is listed as a straggler).
        deadline: simulated seconds per round; a client needing longer is a straggler.
            ``None`` waits for everyone (the round lasts as long as the slowest client).
        partial_work: stragglers report the steps they finished by the deadline instead of
            being dropped (Li et al., 2020); a client that finishes no step is still dropped.
        dropout: probability that a sampled client is offline this round.
        seed: seeds the dropouts; client ``k``'s draw in round ``r`` depends only on
            ``(seed, r, k)``, not on which other clients were sampled.
    """

    def __init__(self, speeds: Mapping[int, float] | Sequence[float] | None = None, *,
                 step_budgets: Mapping[int, int] | None = None, deadline: float | None = None,
                 partial_work: bool = False, dropout: float = 0.0, seed: int = 0) -> None:
        if isinstance(speeds, Mapping):
            self.speeds = {int(k): float(v) for k, v in speeds.items()}
        elif speeds is not None:
            self.speeds = {i: float(v) for i, v in enumerate(speeds)}
        else:
            self.speeds = {}
        if any(not (v > 0 and math.isfinite(v)) for v in self.speeds.values()):
            raise ValueError(f"speeds must be finite and > 0, got {self.speeds}")
        self.step_budgets = {int(k): int(v) for k, v in (step_budgets or {}).items()}
        if any(v < 0 for v in self.step_budgets.values()):
            raise ValueError(f"step budgets must be >= 0, got {self.step_budgets}")
        if deadline is not None and not deadline > 0:
            raise ValueError(f"deadline must be > 0 or None, got {deadline}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.deadline = deadline
        self.partial_work = partial_work
        self.dropout = dropout
        self.seed = seed

    def speed(self, cid: int) -> float:
        """Steps per simulated second of client ``cid``."""
        return self.speeds.get(cid, 1.0)

    def _is_offline(self, rnd: int, cid: int) -> bool:
        if self.dropout == 0.0:
            return False
        rng = np.random.default_rng(derive_seed(self.seed, rnd, cid))
        return bool(rng.random() < self.dropout)

    def plan_round(self, rnd: int, clients: Sequence[Client],
                   instructions: Mapping[int, ClientInstruction]) -> RoundPlan:
        """Decide who reports in round ``rnd`` and how many steps each one runs."""
        kept: dict[int, ClientInstruction] = {}
        dropped: list[int] = []
        stragglers: list[int] = []
        truncated: list[int] = []
        steps: dict[int, int] = {}
        finish: list[float] = []
        for c in clients:
            if c.cid not in instructions:
                continue
            if self._is_offline(rnd, c.cid):
                dropped.append(c.cid)
                continue
            ins = instructions[c.cid]
            want = planned_steps(ins.config, c.num_train)
            k = min(want, self.step_budgets.get(c.cid, want))
            if k < 1:  # no step possible: nothing to report
                stragglers.append(c.cid)
                continue
            seconds = k / self.speed(c.cid)
            if self.deadline is not None and seconds > self.deadline:
                done = math.floor(self.deadline * self.speed(c.cid))
                if not self.partial_work or done < 1:
                    stragglers.append(c.cid)
                    continue
                truncated.append(c.cid)
                k, seconds = done, done / self.speed(c.cid)
            if k != want:
                ins = replace(ins, config=replace(ins.config, steps=k))
            kept[c.cid] = ins
            steps[c.cid] = k
            finish.append(seconds)
        waited = max(finish, default=0.0)
        if self.deadline is not None and (stragglers or truncated):
            waited = self.deadline  # the server only knows they are late when time is up
        return RoundPlan(instructions=kept, dropped=tuple(dropped), stragglers=tuple(stragglers),
                         truncated=tuple(truncated), steps=steps, seconds=float(waited))

    def __repr__(self) -> str:
        return (f"SystemModel(speeds={self.speeds}, step_budgets={self.step_budgets}, "
                f"deadline={self.deadline}, partial_work={self.partial_work}, "
                f"dropout={self.dropout}, seed={self.seed})")
