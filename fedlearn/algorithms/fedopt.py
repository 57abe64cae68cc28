"""Server optimisers: FedAvgM (Hsu et al., 2019) and FedAdam / FedYogi / FedAdagrad
(Reddi et al., 2021, *Adaptive Federated Optimization*).

FedAvg's server step ``x <- x + mean_i(delta_i)`` is one step of SGD with learning rate 1 on
the *pseudo-gradient* ``-Delta = -mean_i(delta_i)``. Nothing forces the server to use plain
SGD: it can keep momentum across rounds (FedAvgM) or adapt a learning rate per coordinate
(FedOpt), which helps when client updates are noisy or badly scaled, as on non-IID data.

Reddi et al.'s Algorithm 2, with ``Delta_t`` the averaged client delta:

    m_t = beta1 m_{t-1} + (1 - beta1) Delta_t
    v_t = beta2 v_{t-1} + (1 - beta2) Delta_t^2                           (Adam)
    v_t = v_{t-1} - (1 - beta2) Delta_t^2 sign(v_{t-1} - Delta_t^2)       (Yogi)
    v_t = v_{t-1} + Delta_t^2                                             (Adagrad)
    x_{t+1} = x_t + eta m_t / (sqrt(v_t) + tau)

``tau`` ("adaptivity") bounds the per-coordinate step by ``eta * |m| / tau``; Reddi et al.
tune it with the other hyperparameters (we default to their 1e-3). Like Flower and FLamby we
start ``v`` at 0. Their algorithm has no bias correction; ``bias_correction=True`` adds
Adam's (Kingma & Ba, 2015), which makes FedAdam exactly ``torch.optim.Adam`` applied to the
pseudo-gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..client import Client, TrainConfig
from ..strategy import FedAvg
from ..utils import StateDict

__all__ = ["FedAvgM", "FedOpt", "FedAdam", "FedYogi", "FedAdagrad"]


def _server_step(global_state: StateDict, delta: StateDict, server_lr: float,
                 step: Callable[[str, torch.Tensor], torch.Tensor]) -> StateDict:
    """``x + server_lr * step(k, Delta_k)`` for every entry with a delta; the rest copied.

    ``Delta_k`` is given to ``step`` in float64 (the optimisers keep their state there) and
    the step is applied in the weights' dtype, as :func:`fedlearn.apply_delta` does.
    """
    out: StateDict = {}
    for k, x in global_state.items():
        if k not in delta:
            out[k] = x.clone()
            continue
        out[k] = x + server_lr * step(k, delta[k].double()).to(x.dtype)
    return out


class FedAvgM(FedAvg):
    """FedAvg with server momentum: ``v <- beta v + Delta;  x <- x + server_lr * v``.

    Momentum averages pseudo-gradients over rounds, damping the round-to-round oscillation
    that non-IID client sampling causes. ``momentum = 0`` is FedAvg exactly (bit for bit: the
    velocity is kept in float64 and applied in the weights' dtype, as ``apply_delta`` does).
    """

    name = "FedAvgM"

    def __init__(self, config: TrainConfig | None = None, *, server_lr: float = 1.0,
                 momentum: float = 0.9, nesterov: bool = False, weighted: bool = True) -> None:
        super().__init__(config, weighted=weighted, server_lr=server_lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity: StateDict = {}

    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        self.velocity = {}

    def server_update(self, rnd: int, global_state: StateDict, delta: StateDict) -> StateDict:
        def step(k: str, d: torch.Tensor) -> torch.Tensor:
            v = self.momentum * self.velocity[k] + d if k in self.velocity else d.clone()
            self.velocity[k] = v
            return d + self.momentum * v if self.nesterov else v

        return _server_step(global_state, delta, self.server_lr, step)

    def __repr__(self) -> str:
        return (f"FedAvgM(config={self.config}, server_lr={self.server_lr}, "
                f"momentum={self.momentum}, nesterov={self.nesterov})")


class FedOpt(FedAvg):
    """Base class of the adaptive server optimisers; subclasses define ``v``'s update.

    Moments are kept in float64; the step is applied like :func:`fedlearn.apply_delta`.
    """

    name = "FedOpt"

    def __init__(self, config: TrainConfig | None = None, *, server_lr: float = 1e-2,
                 beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3,
                 bias_correction: bool = False, weighted: bool = True) -> None:
        super().__init__(config, weighted=weighted, server_lr=server_lr)
        if not 0.0 <= beta1 < 1.0 or not 0.0 <= beta2 < 1.0:
            raise ValueError(f"betas must be in [0, 1), got beta1={beta1}, beta2={beta2}")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.beta1, self.beta2, self.tau = beta1, beta2, tau
        self.bias_correction = bias_correction
        self.m: StateDict = {}
        self.v: StateDict = {}
        self.t = 0

    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        self.m, self.v, self.t = {}, {}, 0

    def second_moment(self, v: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        """New ``v`` from the old one and the squared pseudo-gradient ``d2``."""
        raise NotImplementedError

    def server_update(self, rnd: int, global_state: StateDict, delta: StateDict) -> StateDict:
        self.t += 1

        def step(k: str, d: torch.Tensor) -> torch.Tensor:
            m_old = self.m.get(k, torch.zeros_like(d))
            v_old = self.v.get(k, torch.zeros_like(d))
            m = self.beta1 * m_old + (1.0 - self.beta1) * d
            v = self.second_moment(v_old, d * d)
            self.m[k], self.v[k] = m, v
            if self.bias_correction:
                m = m / (1.0 - self.beta1 ** self.t)
                v = v / (1.0 - self.beta2 ** self.t)
            return m / (v.sqrt() + self.tau)

        return _server_step(global_state, delta, self.server_lr, step)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(config={self.config}, server_lr={self.server_lr}, "
                f"beta1={self.beta1}, beta2={self.beta2}, tau={self.tau})")


class FedAdam(FedOpt):
    """Adam on the server: ``v`` is an exponential average of squared pseudo-gradients."""

    name = "FedAdam"

    def second_moment(self, v: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        return self.beta2 * v + (1.0 - self.beta2) * d2


class FedYogi(FedOpt):
    """Yogi on the server: ``v`` moves towards ``Delta^2`` by a fixed fraction of ``Delta^2``.

    Unlike Adam, ``v`` changes additively, so one huge pseudo-gradient cannot make it forget
    its history within a few rounds (Zaheer et al., 2018).
    """

    name = "FedYogi"

    def second_moment(self, v: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        return v - (1.0 - self.beta2) * d2 * torch.sign(v - d2)


class FedAdagrad(FedOpt):
    """Adagrad on the server: ``v`` sums every squared pseudo-gradient (steps only shrink)."""

    name = "FedAdagrad"

    def second_moment(self, v: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
        return v + d2
