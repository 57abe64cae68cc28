"""Ditto (Li et al., ICML 2021): a personal model pulled towards the global one.

Each hospital ``k`` solves, beside the usual FedAvg step on the global model ``w``,

    min_v  F_k(v) + lambda/2 ||v - w||^2

for a personal model ``v_k`` that never leaves it. ``lambda = 0`` is local training;
``lambda -> infinity`` pins ``v_k`` to ``w`` (the global model). Only ``w``'s updates are sent,
so every aggregator protects exactly what FedAvg's would.

Stability. A gradient step on the penalty multiplies ``v - w`` by ``1 - eta*lambda``, which
diverges once ``eta*lambda > 2`` (and oscillates above 1). We take the *proximal* step
instead: after each SGD step on ``F_k``,

    v <- (v + eta*lambda*w) / (1 + eta*lambda),

the exact minimiser of ``lambda/2 ||u - w||^2 + 1/(2 eta) ||u - v||^2``. It shrinks ``v - w`` by
``1/(1 + eta*lambda)``, stable for every ``lambda >= 0`` (proximal gradient descent). With Adam
the same shrink is applied with ``eta`` = the learning rate (then only a stable heuristic).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..client import Client, LocalHook, TrainConfig, local_train
from ..utils import StateDict, clone_state, derive_seed
from .personal import AfterRoundHook, PersonalStrategy, check_coupling

__all__ = ["Ditto", "ProxToward", "DittoHook"]


class ProxToward(LocalHook):
    """After every optimiser step, the proximal step of ``lam/2 ||v - anchor||^2`` (see above)."""

    def __init__(self, lam: float, lr: float, anchor: StateDict) -> None:
        self.c = lam * lr
        self.anchor = anchor

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        if self.c == 0:
            return
        shrink = 1.0 / (1.0 + self.c)
        for name, p in model.named_parameters():
            p.mul_(shrink).add_(self.anchor[name].to(p.dtype), alpha=self.c * shrink)


class DittoHook(AfterRoundHook):
    """Remembers the received global model; after local training, updates ``v_k`` at the
    hospital (its own SGD with the proximal step towards that global model)."""

    def on_end(self, model: nn.Module, num_steps: int) -> None:
        s = self.strategy
        v0 = s.kept(self.client) or self._global  # Ditto starts v_k at the first global model
        scratch = s._scratch_model()
        cfg = s.personal
        local_train(scratch, v0, self.client.train, cfg,
                    seed=derive_seed(s.seed, self.rnd, self.client.cid, 1),
                    hooks=(ProxToward(s.lam, cfg.lr, self._global),), cid=self.client.cid,
                    loss_fn=self.client.loss_fn)
        s.keep(self.client, clone_state(scratch.state_dict()))


class Ditto(PersonalStrategy):
    """FedAvg for the global model plus a personal model per hospital (module docstring).

    Args:
        config: the local training of the global model (what FedAvg sends).
        lam: the coupling lambda >= 0 (0: local models; large: the global model).
        personal: the personal model's local training each round (default ``config``).
    """

    name = "Ditto"

    def __init__(self, config: TrainConfig | None = None, *, lam: float = 0.1,
                 personal: TrainConfig | None = None, weighted: bool = True,
                 server_lr: float = 1.0, seed: int = 0) -> None:
        super().__init__(config, weighted=weighted, server_lr=server_lr, seed=seed)
        self.lam = check_coupling("lam", lam, 0.0, float("inf"),
                                  "lam=0 trains local models, larger values pull each "
                                  "personal model towards the global one")
        self.personal = replace(personal if personal is not None else self.config)

    def local_hooks(self, rnd: int, client: Client) -> tuple[LocalHook, ...]:
        return (DittoHook(self, client, rnd),)

    def personalise(self, client: Client, global_state: StateDict) -> StateDict:
        own = self.kept(client)
        return own if own else global_state

    def __repr__(self) -> str:
        return f"Ditto(config={self.config}, lam={self.lam}, personal={self.personal})"
