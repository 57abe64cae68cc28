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

from collections.abc import Sequence

from ..aggregate import weighted_mean
from ..client import TrainConfig
from ..strategy import FedAvg
from ..update import ClientUpdate, InvalidUpdateError, validate_updates
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
    that gives hospitals different budgets is handled automatically.
    """

    name = "FedNova"

    def __init__(self, config: TrainConfig | None = None, *, weighted: bool = True,
                 server_lr: float = 1.0) -> None:
        super().__init__(config, weighted=weighted, server_lr=server_lr)
        if self.config.optimizer != "sgd":
            raise ValueError("FedNova's normalisation is derived for SGD local steps "
                             f"(optimizer='sgd'), got optimizer={self.config.optimizer!r}")

    def combine(self, rnd: int, updates: Sequence[ClientUpdate]) -> StateDict:
        validate_updates(list(updates))
        active = [u for u in updates if u.metrics.get("num_steps", 0) > 0]
        if not active:
            raise InvalidUpdateError("no client ran a local step this round")
        p = [float(u.num_examples) if self.weighted else 1.0 for u in active]
        total = sum(p)
        a = [normalizing_steps(int(u.metrics["num_steps"]), self.config.momentum)
             for u in active]
        tau_eff = sum(pi * ai for pi, ai in zip(p, a, strict=True)) / total
        normalized = [{k: v / ai for k, v in u.delta.items()} for u, ai in
                      zip(active, a, strict=True)]
        mean = weighted_mean(normalized, p)
        return {k: tau_eff * v for k, v in mean.items()}
