"""FedProx (Li et al., 2020): FedAvg plus a proximal term that keeps local models close.

Each client minimises its loss plus ``mu/2 * ||w - w_global||^2`` instead of its loss alone.
The gradient of the extra term, ``mu * (w - w_global)``, pulls every local step back towards
the model the round started from, so clients with very different data (or very many local
steps) cannot drift far apart. ``mu = 0`` is FedAvg exactly; larger ``mu`` trades local
progress for stability.
"""

from __future__ import annotations

import torch
from torch import nn

from ..client import Client, LocalHook, TrainConfig
from ..strategy import FedAvg
from ..utils import StateDict

__all__ = ["ProximalHook", "FedProx"]


class ProximalHook(LocalHook):
    """Adds ``mu/2 * sum_p ||p - p_global||^2`` over the model's trainable parameters.

    Buffers (BatchNorm running statistics) are not optimised, so they get no proximal term.
    """

    def __init__(self, mu: float) -> None:
        if mu < 0:
            raise ValueError(f"mu must be >= 0, got {mu}")
        self.mu = mu
        self._anchor: list[tuple[torch.nn.Parameter, torch.Tensor]] = []

    def on_start(self, model: nn.Module, global_state: StateDict) -> None:
        self._anchor = [(p, global_state[name].detach().clone())
                        for name, p in model.named_parameters() if p.requires_grad]

    def extra_loss(self, model: nn.Module) -> torch.Tensor | None:
        if not self._anchor:
            return None
        sq = sum(((p - w0) ** 2).sum() for p, w0 in self._anchor)
        return 0.5 * self.mu * sq  # type: ignore[return-value]


class FedProx(FedAvg):
    """FedAvg whose clients add the proximal term ``mu/2 ||w - w_global||^2``.

    Li et al. tune ``mu`` in {0.001, 0.01, 0.1, 1}; FLamby uses 0.01 on Fed-Heart-Disease.
    """

    name = "FedProx"

    def __init__(self, config: TrainConfig | None = None, *, mu: float = 0.01,
                 weighted: bool = True, server_lr: float = 1.0) -> None:
        super().__init__(config, weighted=weighted, server_lr=server_lr)
        if mu < 0:
            raise ValueError(f"mu must be >= 0, got {mu}")
        self.mu = mu

    def local_hooks(self, rnd: int, client: Client) -> tuple[LocalHook, ...]:
        return (ProximalHook(self.mu),)

    def __repr__(self) -> str:
        return (f"FedProx(config={self.config}, mu={self.mu}, weighted={self.weighted}, "
                f"server_lr={self.server_lr})")
