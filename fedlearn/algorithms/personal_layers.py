"""Shared layers and personal layers: FedPer, FedRep and FENDA-FL.

The model is split by parameter-name prefixes into a shared *body* and a personal *head*:

* **FedPer** (Arivazhagan et al., 2019): every hospital trains the whole model each round, but
  only the body is averaged; each hospital keeps its own head. With no head it is FedAvg.
* **FedRep** (Collins et al., 2021): the same split with a schedule: ``head_steps`` local
  steps on the head with the body frozen, then the body's steps with the head frozen. The
  head adapts to the shared representation before the representation moves.
* **FENDA-FL** (Tian et al., 2024): a *global* and a *local* feature extractor side by side,
  their features concatenated into a head. The global extractor is shared; the local one and
  the head never leave the hospital. It is FedPer on a :class:`FendaNet`.

Head entries are personal keys: they are left out of every contribution (never sent, not even
as zeros) and out of the download (the server's copy of the head never changes, so it is not
sent either). Each hospital's head is kept in ``client.personal[name]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from ..client import Client, LocalHook, TrainConfig
from ..errors import ConfigError
from ..strategy import ClientInstruction
from ..utils import StateDict, clone_state, float_keys, state_nbytes
from .personal import PersonalStrategy, split_keys

__all__ = ["FedPer", "FedRep", "FendaFL", "FendaNet", "HeadHook"]


class HeadHook(LocalHook):
    """Loads the hospital's own head before training and keeps it afterwards.

    With ``head_steps`` set (FedRep), the first ``head_steps`` steps update the head only and
    the rest the body only: the frozen part's gradients are set to None, which every torch
    optimiser skips (no momentum, no weight decay move it).
    """

    def __init__(self, strategy: FedPer, client: Client, head_steps: int | None = None) -> None:
        self.strategy = strategy
        self.client = client
        self.head_steps = head_steps
        self._step = 0

    def on_start(self, model: nn.Module, global_state: StateDict) -> None:
        own = self.strategy.kept(self.client)
        if own:
            with torch.no_grad():
                model.load_state_dict(own, strict=False)
        self._step = 0

    def after_backward(self, model: nn.Module) -> None:
        if self.head_steps is None:
            return
        head = self.strategy.personal_keys()
        train_head = self._step < self.head_steps
        for name, p in model.named_parameters():
            if (name in head) != train_head:
                p.grad = None
        self._step += 1

    def on_end(self, model: nn.Module, num_steps: int) -> None:
        state = model.state_dict()
        self.strategy.keep(self.client, clone_state(
            {k: state[k] for k in self.strategy.personal_keys()}))


class FedPer(PersonalStrategy):
    """FedAvg of the body; the head (``head`` name prefixes) stays at each hospital.

    ``head=()`` shares everything: FedAvg exactly. A prefix that matches no parameter, or
    prefixes that match all of them, raise a ConfigError listing the parameter names (when
    the run starts, since the names come from the model).
    """

    name = "FedPer"

    def __init__(self, config: TrainConfig | None = None, *, head: Sequence[str] = (),
                 weighted: bool = True, server_lr: float = 1.0, seed: int = 0) -> None:
        super().__init__(config, weighted=weighted, server_lr=server_lr, seed=seed)
        if isinstance(head, str):
            raise ConfigError(f"head must be a sequence of name prefixes, got the string "
                              f"{head!r}; write head=({head!r},)")
        self.head = tuple(head)
        self.head_keys: frozenset[str] = frozenset()

    def setup(self, model: nn.Module) -> None:
        super().setup(model)
        self.head_keys = split_keys(model, self.head, what="head")

    def personal_keys(self) -> frozenset[str]:
        return self.head_keys

    def local_hooks(self, rnd: int, client: Client) -> tuple[LocalHook, ...]:
        return (HeadHook(self, client),) if self.head_keys else ()

    def personalise(self, client: Client, global_state: StateDict) -> StateDict:
        own = self.kept(client)
        return {**global_state, **own} if own else global_state

    def download_nbytes(self, global_state: StateDict) -> int:
        """The body only: the server never changes (so never sends) the head."""
        return state_nbytes({k: global_state[k] for k in float_keys(global_state)
                             if k not in self.head_keys})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(config={self.config}, head={self.head})"


class FedRep(FedPer):
    """FedPer with FedRep's schedule: ``head_steps`` on the head, then the body's steps.

    The body gets ``config``'s budget (``config.steps``, or ``config.epochs`` epochs of the
    hospital's data), after ``head_steps`` steps on the head alone. Only the body is sent.
    """

    name = "FedRep"

    def __init__(self, config: TrainConfig | None = None, *, head: Sequence[str],
                 head_steps: int = 10, weighted: bool = True, server_lr: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__(config, head=head, weighted=weighted, server_lr=server_lr, seed=seed)
        if not self.head:
            raise ConfigError("FedRep needs a head: head=() would freeze nothing and send "
                              "everything; pass the head's name prefixes, e.g. head=('net.2.',)")
        if isinstance(head_steps, bool) or not isinstance(head_steps, int) or head_steps < 0:
            raise ConfigError(f"head_steps must be an integer >= 0, got {head_steps!r}")
        self.head_steps = head_steps

    def _body_steps(self, client: Client) -> int:
        cfg = self.config
        if cfg.steps is not None:
            return cfg.steps
        b = client.num_train if cfg.batch_size is None else cfg.batch_size
        return cfg.epochs * math.ceil(client.num_train / b)

    def configure_round(self, rnd: int, clients: Sequence[Client]) -> dict[int, ClientInstruction]:
        out = {}
        for c in clients:
            cfg = replace(self.config, steps=self.head_steps + self._body_steps(c))
            out[c.cid] = ClientInstruction(cfg, (HeadHook(self, c, self.head_steps),))
        return out


class FendaNet(nn.Module):
    """FENDA-FL's model: global and local feature extractors, features concatenated, a head.

    Parameter names start with ``global_extractor.``, ``local_extractor.`` and ``head.``.
    """

    def __init__(self, in_features: int, hidden: int = 16, num_classes: int = 2,
                 seed: int = 0) -> None:
        super().__init__()
        gen = torch.random.fork_rng()
        with gen:
            torch.manual_seed(seed)
            self.global_extractor = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
            self.local_extractor = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
            self.head = nn.Linear(2 * hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.head(torch.cat([self.global_extractor(x), self.local_extractor(x)], dim=1))


class FendaFL(FedPer):
    """FENDA-FL: FedPer on a :class:`FendaNet`, the local extractor and head personal."""

    name = "FENDA-FL"

    def __init__(self, config: TrainConfig | None = None, *,
                 personal: Sequence[str] = ("local_extractor.", "head."),
                 weighted: bool = True, server_lr: float = 1.0, seed: int = 0) -> None:
        super().__init__(config, head=personal, weighted=weighted, server_lr=server_lr,
                         seed=seed)
