"""FedNova (Wang et al., 2020): normalised averaging when clients run different step counts.

If client ``i`` runs ``tau_i`` local SGD steps, its delta is roughly ``-lr * tau_i * grad F_i``.
FedAvg averages deltas with weights ``p_i`` and so effectively weights client ``i``'s gradient
by ``p_i * tau_i``: a fast hospital that runs more steps pulls the model towards its own
optimum, and FedAvg converges to the minimiser of the *wrong* objective
``sum_i p_i tau_i F_i / sum_i p_i tau_i`` (objective inconsistency).

FedNova divides each delta by the number of (momentum-weighted) steps behind it, averages
these normalised updates ``d_i = delta_i / a_i`` with the true weights ``p_i``, and rescales by
an effective step count ``tau_eff = sum_i p_i a_i``:

    x <- x + tau_eff * sum_i p_i d_i.

For plain SGD ``a_i = tau_i``; with SGD momentum ``rho`` a step moves ``1/(1-rho)`` times
further once momentum builds up, and

    a_i = (tau_i - rho (1 - rho^tau_i) / (1 - rho)) / (1 - rho).

When every client runs the same number of steps, ``a_i = a`` and FedNova *is* FedAvg.
"""

from __future__ import annotations

import torch

from ..aggregators.base import Contribution, Sums
from ..client import TrainConfig
from ..strategy import FedAvg
from ..update import ClientUpdate, InvalidUpdateError
from ..utils import StateDict

__all__ = ["FedNova", "normalizing_steps"]


def normalizing_steps(num_steps: int, momentum: float = 0.0) -> float:
    """``a_i``: how many plain-gradient steps ``num_steps`` SGD steps amount to.

    ``sum_{t<tau} sum_{s<=t} rho^s``: step ``t`` of heavy-ball SGD applies the gradients of
    the last ``t`` steps with weights ``rho^s``.
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if momentum == 0.0:
        return float(num_steps)
    rho = momentum
    return (num_steps - rho * (1.0 - rho ** num_steps) / (1.0 - rho)) / (1.0 - rho)


class FedNova(FedAvg):
    """FedAvg with normalised averaging (Wang et al., 2020), for plain or momentum SGD.

    The step count of each update is read from ``update.metrics['num_steps']``, which
    :func:`fedlearn.local_train` always reports, so a :class:`~fedlearn.system.SystemModel`
    that gives hospitals different budgets is handled automatically. The server needs two
    sums, ``sum_k p_k d_k`` and ``sum_k p_k a_k``: any aggregator can compute them (the step
    counts are exact and public by design: the server set the budgets).
    """

    name = "FedNova"

    def __init__(self, config: TrainConfig | None = None, *, weighted: bool = True,
                 server_lr: float = 1.0) -> None:
        super().__init__(config, weighted=weighted, server_lr=server_lr)
        if self.config.optimizer != "sgd":
            raise ValueError("FedNova's normalisation is derived for SGD local steps "
                             f"(optimizer='sgd'), got optimizer={self.config.optimizer!r}")
        # with momentum a_k is not an integer: secure aggregation cannot sum it exactly
        self.integer_counts = self.config.momentum == 0

    def contribution(self, rnd: int, update: ClientUpdate) -> Contribution:
        """``d_k = delta_k / a_k`` with weight ``p_k`` and the count ``a_k`` (summed as p_k a_k).

        A hospital that ran no step contributes nothing (weight 0).
        """
        out = super().contribution(rnd, update)
        steps = int(update.metrics.get("num_steps", 0))
        a = normalizing_steps(steps, self.config.momentum)
        if a == 0:
            zero = {k: torch.zeros_like(v) for k, v in out.vectors["delta"].items()}
            return Contribution(update.cid, {"delta": zero}, weight=0.0, counts={"steps": 0.0})
        normalized = {k: v / a for k, v in out.vectors["delta"].items()}
        return Contribution(update.cid, {"delta": normalized}, weight=out.weight,
                            counts={"steps": a})

    def mean_delta(self, sums: Sums, like: StateDict | None = None) -> StateDict:
        """``tau_eff * sum_k p_k d_k / sum_k p_k`` with ``tau_eff = sum_k p_k a_k / sum_k p_k``."""
        if sums.weight <= 0:
            raise InvalidUpdateError("no client ran a local step this round")
        tau_eff = sums.counts["steps"] / sums.weight
        return {k: tau_eff * v for k, v in sums.mean("delta", like).items()}
