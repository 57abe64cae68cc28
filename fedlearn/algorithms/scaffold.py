"""SCAFFOLD (Karimireddy et al., 2020): control variates that cancel client drift.

With many local steps on non-IID data, client ``i`` follows its own gradient ``g_i`` and
FedAvg converges to a point that is not the minimiser of ``F = sum_i p_i F_i`` (client drift).
SCAFFOLD corrects every local step with two control variates, estimates of the gradients:

    y <- y - lr * (g_i(y) - c_i + c),

where ``c_i`` estimates client ``i``'s gradient and ``c = sum_i p_i c_i`` the global one, so the
corrected direction estimates ``grad F`` instead of ``grad F_i``. After ``K`` local steps the
client refreshes its variate with the average gradient it actually followed ("option II"):

    c_i+ = c_i - c + (x - y) / (K * lr),

and sends the server both ``y - x`` and ``c_i+ - c_i``: twice FedAvg's upload (the server also
sends ``c`` with the weights, twice the download). The server keeps ``c = sum_i p_i c_i`` up to
date by adding ``sum_i p_i (c_i+ - c_i)`` over the clients in the round's sums; this equals
the paper's ``c += |S|/N * mean(delta c_i)`` when weights are uniform. Both vectors are
*summed* quantities, so secure aggregation and DP cover the control variates too.

Option II assumes plain SGD steps of size ``lr`` (no momentum); weight decay is fine.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..aggregators.base import Contribution, Sums
from ..client import Client, LocalHook, TrainConfig
from ..strategy import FedAvg
from ..update import ClientUpdate
from ..utils import StateDict, float_keys, state_nbytes

__all__ = ["ScaffoldHook", "Scaffold"]


class ScaffoldHook(LocalHook):
    """Client side of SCAFFOLD for one client in one round.

    Adds ``c - c_i`` to every parameter's gradient, then computes the new ``c_i`` and leaves
    it with the strategy, which commits it only if the server accepts the update (a
    straggler's control variate must not change, or ``c = sum p_i c_i`` would break).
    """

    def __init__(self, strategy: Scaffold, cid: int, lr: float) -> None:
        self.strategy = strategy
        self.cid = cid
        self.lr = lr
        self._x: dict[str, torch.Tensor] = {}
        self._corr: dict[str, torch.Tensor] = {}

    def on_start(self, model: nn.Module, global_state: StateDict) -> None:
        self.strategy._ensure_controls(model)
        c, ci = self.strategy.c_global, self.strategy.client_control(self.cid)
        self._x = {n: global_state[n].detach().clone() for n in c}
        self._corr = {n: c[n] - ci[n] for n in c}

    def after_backward(self, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            if n not in self._corr:
                continue
            if p.grad is None:
                p.grad = self._corr[n].clone()
            else:
                p.grad.add_(self._corr[n])

    def on_end(self, model: nn.Module, num_steps: int) -> None:
        c, ci = self.strategy.c_global, self.strategy.client_control(self.cid)
        if num_steps == 0:
            self.strategy._pending[self.cid] = {n: v.clone() for n, v in ci.items()}
            return
        params = dict(model.named_parameters())
        scale = 1.0 / (num_steps * self.lr)
        self.strategy._pending[self.cid] = {
            n: ci[n] - c[n] + scale * (self._x[n] - params[n].detach()) for n in c}


class Scaffold(FedAvg):
    """SCAFFOLD with option-II control variates and server learning rate ``server_lr``.

    Control variates cover the model's trainable parameters; they are created (as zeros) in
    :meth:`setup` (or the first time a client trains). Each hospital's contribution carries
    two vectors, the model delta and its control-variate change ``c_i+ - c_i``, so under any
    aggregator (secure sums, DP noise) both are protected alike; the server adds
    ``sum_k w_k (c_k+ - c_k) / W`` to ``c`` and a hospital's new ``c_i`` is committed only if
    its contribution is in the sums (a straggler's, or an aborted round's, is discarded, or
    ``c = sum_i p_i c_i`` would break). ``client_controls`` lives on the hospitals in a real
    deployment; the simulation keeps it here.
    """

    name = "SCAFFOLD"

    def __init__(self, config: TrainConfig | None = None, *, server_lr: float = 1.0,
                 weighted: bool = True) -> None:
        super().__init__(config, weighted=weighted, server_lr=server_lr)
        if self.config.optimizer != "sgd" or self.config.momentum != 0:
            raise ValueError("SCAFFOLD's control-variate update assumes plain SGD local steps "
                             "(optimizer='sgd', momentum=0)")
        self.c_global: StateDict = {}
        self.client_controls: dict[int, StateDict] = {}
        self._pending: dict[int, StateDict] = {}
        self._total = 1.0

    def setup(self, model: nn.Module) -> None:
        super().setup(model)
        self.c_global = {}
        self._ensure_controls(model)

    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        self.client_controls, self._pending = {}, {}
        self.c_global = {k: torch.zeros_like(v) for k, v in self.c_global.items()}
        self._total = float(sum(self.client_weight(c) for c in clients))

    def _ensure_controls(self, model: nn.Module) -> None:
        if not self.c_global:
            self.c_global = {n: torch.zeros_like(p, dtype=torch.float32)
                             for n, p in model.named_parameters() if p.requires_grad}

    def client_control(self, cid: int) -> StateDict:
        """Client ``cid``'s control variate ``c_i`` (zeros until it first reports)."""
        if cid not in self.client_controls:
            self.client_controls[cid] = {n: torch.zeros_like(v) for n, v in self.c_global.items()}
        return self.client_controls[cid]

    def local_hooks(self, rnd: int, client: Client) -> tuple[LocalHook, ...]:
        return (ScaffoldHook(self, client.cid, self.config.lr),)

    def contribution(self, rnd: int, update: ClientUpdate) -> Contribution:
        """The delta and the control-variate change ``c_i+ - c_i``, with the same weight."""
        out = super().contribution(rnd, update)
        old = self.client_control(update.cid)
        new = self._pending.get(update.cid, old)
        out.vectors["control"] = {n: new[n] - old[n] for n in self.c_global}
        out.nbytes = out.raw_nbytes()
        return out

    def summed_template(self, global_state: StateDict) -> dict[str, StateDict]:
        out = super().summed_template(global_state)
        out["control"] = {n: torch.zeros_like(v) for n, v in self.c_global.items()}
        return out

    def download_nbytes(self, global_state: StateDict) -> int:
        """Weights plus the server control variate ``c``."""
        return (state_nbytes({k: global_state[k] for k in float_keys(global_state)})
                + state_nbytes(self.c_global))

    def apply(self, rnd: int, global_state: StateDict, sums: Sums) -> StateDict:
        new_state = super().apply(rnd, global_state, sums)
        dc = sums.vectors.get("control", {})
        for n in self.c_global:
            if n in dc:
                self.c_global[n] = self.c_global[n] + (dc[n] / self._total).to(torch.float32)
        for cid in sums.included:
            if cid in self._pending:
                self.client_controls[cid] = self._pending[cid]
        self._pending.clear()  # stragglers' tentative variates are discarded
        return new_state

    def __repr__(self) -> str:
        return (f"Scaffold(config={self.config}, server_lr={self.server_lr}, "
                f"weighted={self.weighted})")
