"""APFL (Deng et al., 2020): each hospital uses a mixture of its own and the global model.

Hospital ``k`` keeps a personal model ``v_k`` and uses the parameter mixture

    vbar_k = alpha_k v_k + (1 - alpha_k) w.

``w`` is trained by FedAvg (only its updates are sent). ``v_k`` is trained at the hospital on
the loss of the *mixture*, ``F_k(vbar_k)``, with ``w`` held fixed: its gradient is
``alpha_k * grad F_k(vbar_k)``. ``alpha`` is fixed, or learned per hospital by gradient descent on
the same loss (``d/d alpha F_k(vbar) = <grad F_k(vbar), v_k - w>``, clipped to [0, 1]).

``alpha = 0`` is FedAvg (the mixture is ``w``); ``alpha = 1`` is local training of ``v_k``.
Simplification of the paper's algorithm: ``v_k`` (and ``alpha_k``) take their steps after the
round's local steps on ``w``, against the ``w`` the hospital received, not interleaved with them.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn
from torch.func import functional_call

from ..client import Client, LocalHook, TrainConfig, _batches, cross_entropy_loss
from ..utils import StateDict, derive_seed, torch_generator
from .personal import AfterRoundHook, PersonalStrategy, check_coupling

__all__ = ["APFL", "APFLHook", "mix"]


def mix(v: StateDict, w: StateDict, alpha: float) -> StateDict:
    """``alpha v + (1 - alpha) w`` on floating entries (others, e.g. counters, from ``w``)."""
    return {k: (alpha * v[k] + (1 - alpha) * w[k]) if w[k].is_floating_point() else w[k]
            for k in w}


class APFLHook(AfterRoundHook):
    """Remembers the received ``w``; after local training, updates ``v_k`` and ``alpha_k``."""

    def on_end(self, model: nn.Module, num_steps: int) -> None:
        s = self.strategy
        kept = s.kept(self.client)
        v0, alpha = (kept["v"], kept["alpha"]) if kept else (self._global, s.alpha)
        v, alpha = s._personal_steps(self.client, v0, self._global, alpha,
                                     seed=derive_seed(s.seed, self.rnd, self.client.cid, 2))
        s.keep(self.client, {"v": v, "alpha": alpha})


class APFL(PersonalStrategy):
    """FedAvg for ``w`` plus a personal ``v_k`` used as ``alpha v_k + (1-alpha) w``.

    Args:
        config: the local training of ``w`` (what is sent).
        alpha: the (initial) mixing weight in [0, 1].
        learn_alpha: learn ``alpha_k`` per hospital (step ``alpha_lr``), else keep it fixed.
        personal: the local training of ``v_k`` each round (plain SGD with its ``lr``,
            ``batch_size`` and ``steps``/``epochs``; default ``config``).
    """

    name = "APFL"

    def __init__(self, config: TrainConfig | None = None, *, alpha: float = 0.5,
                 learn_alpha: bool = False, alpha_lr: float = 0.01,
                 personal: TrainConfig | None = None, weighted: bool = True,
                 server_lr: float = 1.0, seed: int = 0) -> None:
        super().__init__(config, weighted=weighted, server_lr=server_lr, seed=seed)
        self.alpha = check_coupling("alpha", alpha, 0.0, 1.0,
                                    "alpha=0 is FedAvg, alpha=1 local training")
        self.learn_alpha = bool(learn_alpha)
        self.alpha_lr = check_coupling("alpha_lr", alpha_lr, 0.0, math.inf,
                                       "e.g. alpha_lr=0.01")
        self.personal = replace(personal if personal is not None else self.config)

    def local_hooks(self, rnd: int, client: Client) -> tuple[LocalHook, ...]:
        return (APFLHook(self, client, rnd),)

    def personalise(self, client: Client, global_state: StateDict) -> StateDict:
        kept = self.kept(client)
        if not kept:
            return global_state
        return mix(kept["v"], global_state, kept["alpha"])

    def _personal_steps(self, client: Client, v0: StateDict, w: StateDict, alpha: float,
                        seed: int) -> tuple[StateDict, float]:
        """SGD on ``F_k(alpha v + (1-alpha) w)`` over ``v`` (and ``alpha``), ``w`` fixed."""
        model = self._scratch_model()
        cfg = self.personal
        loss_fn = client.loss_fn or cross_entropy_loss(cfg.class_weights)
        names = [n for n, _ in model.named_parameters()]
        v = {n: v0[n].detach().clone().requires_grad_(True) for n in names}
        wp = {n: w[n].detach() for n in names}
        buffers = {k: t for k, t in w.items() if k not in v}
        a = torch.tensor(float(alpha), requires_grad=self.learn_alpha)
        x, y = client.train.tensors[0], client.train.tensors[1]
        gen = torch_generator(seed)
        steps, epoch = 0, 0
        total = cfg.steps
        model.train()
        while (total is None and epoch < cfg.epochs) or (total is not None and steps < total):
            for idx in _batches(len(x), cfg.batch_size, gen):
                if total is not None and steps >= total:
                    break
                mixed = {n: a * v[n] + (1 - a) * wp[n] for n in names}
                loss = loss_fn(functional_call(model, {**mixed, **buffers}, (x[idx],)), y[idx])
                inputs = [v[n] for n in names] + ([a] if self.learn_alpha else [])
                grads = torch.autograd.grad(loss, inputs, allow_unused=True)
                with torch.no_grad():
                    for n, g in zip(names, grads, strict=False):
                        if g is not None:
                            v[n] -= cfg.lr * g
                    if self.learn_alpha and grads[-1] is not None:
                        a.copy_((a - self.alpha_lr * grads[-1]).clamp(0.0, 1.0))
                steps += 1
            epoch += 1
        out = {k: t.detach().clone() for k, t in v0.items()}
        out.update({n: v[n].detach().clone() for n in names})
        return out, float(a.detach())

    def __repr__(self) -> str:
        return (f"APFL(config={self.config}, alpha={self.alpha}, "
                f"learn_alpha={self.learn_alpha})")
