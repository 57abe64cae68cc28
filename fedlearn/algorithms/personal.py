"""Personalised federated learning: the common part, and local fine-tuning after FedAvg.

FedAvg minimises one objective, the size-weighted mean of the hospitals' losses, and gives
every hospital the same model. Personalised methods give hospital ``k`` its own model
``theta_k``, coupled to the shared one in different ways:

* :class:`FineTune` - train FedAvg, then each hospital takes a few local steps from it;
* :class:`~fedlearn.algorithms.personal_layers.FedPer` /
  :class:`~fedlearn.algorithms.personal_layers.FedRep` /
  :class:`~fedlearn.algorithms.personal_layers.FendaFL` - some layers are shared, the rest
  (the *head*, or a local feature extractor) never leave the hospital;
* :class:`~fedlearn.algorithms.personal_ditto.Ditto` - a personal model pulled towards the
  global one by ``lambda/2 ||v_k - w||^2``;
* :class:`~fedlearn.algorithms.personal_apfl.APFL` - a mixture ``alpha v_k + (1-alpha) w``.

Two rules hold for all of them, and the tests check both:

1. **Personal state lives with the hospital.** It is kept in ``client.personal[name]`` (the
   :class:`~fedlearn.Client` is the hospital), never on the server's strategy object. The
   strategy keeps only references to the clients so that the simulation can *ask* a hospital
   for the model it uses (:meth:`Strategy.personal_state`), exactly as a deployment would ask
   the hospital to evaluate.
2. **What is personal is not sent.** Personal entries are left out of the contribution (not
   sent as zeros), so no aggregator sums, masks, noises or counts them in the bytes.

Everything here is a :class:`~fedlearn.strategy.FedAvg` plus hooks, so every aggregator of
:mod:`fedlearn.aggregators` (secure aggregation, central/distributed DP, compression) composes
with it unchanged: the global model's updates are what they protect.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from torch import nn

from ..client import Client, LocalHook, TrainConfig, local_train
from ..errors import ConfigError
from ..strategy import FedAvg
from ..utils import StateDict, clone_state, derive_seed

__all__ = ["PersonalStrategy", "FineTune", "AfterRoundHook", "split_keys", "check_coupling"]


def split_keys(model: nn.Module, prefixes: Sequence[str], *, what: str = "head"
               ) -> frozenset[str]:
    """State-dict keys of ``model`` whose names start with one of ``prefixes``.

    An empty ``prefixes`` is an empty split (FedPer with no head is FedAvg). A non-empty one
    must match at least one parameter and must leave at least one parameter shared;
    otherwise the error lists the model's parameter names so the right prefix can be chosen.
    """
    if isinstance(prefixes, str):
        raise ConfigError(f"{what} must be a sequence of name prefixes, got the string "
                          f"{prefixes!r}; write {what}=({prefixes!r},)")
    prefixes = tuple(prefixes)
    if not prefixes:
        return frozenset()
    params = [n for n, _ in model.named_parameters()]
    keys = frozenset(k for k in model.state_dict() if k.startswith(prefixes))
    chosen = [n for n in params if n in keys]
    if not chosen:
        raise ConfigError(f"{what}={prefixes} matches no parameter of the model; its "
                          f"parameters are {params}; pass prefixes of these names, e.g. "
                          f"{what}=({params[-1].rsplit('.', 1)[0] + '.'!r},)")
    if len(chosen) == len(params):
        raise ConfigError(f"{what}={prefixes} matches every parameter of the model ({params}): "
                          "nothing would be shared, which is local training; choose prefixes "
                          "of the personal layers only")
    return keys


def check_coupling(name: str, value: float, low: float, high: float, fix: str) -> float:
    """A finite real in ``[low, high]``, or a ConfigError naming ``name``, the value and ``fix``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(float(value)) and low <= float(value) <= high
    if not ok:
        span = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise ConfigError(f"{name} must be a finite number {span}, got {value!r}; {fix}")
    return float(value)


class AfterRoundHook(LocalHook):
    """One hospital's hook for one round of a strategy that trains a personal model *after*
    the round's local steps (Ditto, APFL): it keeps the global model the hospital received,
    which the personal step is coupled to. Subclasses define ``on_end``."""

    def __init__(self, strategy: PersonalStrategy, client: Client, rnd: int) -> None:
        self.strategy = strategy
        self.client = client
        self.rnd = rnd
        self._global: StateDict = {}

    def on_start(self, model: nn.Module, global_state: StateDict) -> None:
        self._global = clone_state(global_state)


class PersonalStrategy(FedAvg):
    """FedAvg whose hospitals each keep a model of their own in ``client.personal[name]``.

    Subclasses say what a hospital keeps (hooks during training, or :meth:`personalise` at
    evaluation). ``seed`` seeds every personal training step (derived per round and hospital).
    """

    name = "personal"

    def __init__(self, config: TrainConfig | None = None, *, weighted: bool = True,
                 server_lr: float = 1.0, seed: int = 0) -> None:
        super().__init__(config, weighted=weighted, server_lr=server_lr)
        self.seed = int(seed)
        self._clients: dict[int, Client] = {}
        self._scratch: nn.Module | None = None

    # the strategy keeps the clients (to ask them), a scratch model (compute), no state
    def setup(self, model: nn.Module) -> None:
        super().setup(model)
        self._scratch = copy.deepcopy(model)

    def initialize(self, global_state: StateDict, clients: Sequence[Client]) -> None:
        self._clients = {c.cid: c for c in clients}
        for c in clients:  # a new run starts every hospital afresh
            c.personal.pop(self.name, None)

    def kept(self, client: Client) -> Any:
        """What hospital ``client`` keeps for this algorithm (None before it first trained)."""
        return client.personal.get(self.name)

    def keep(self, client: Client, value: Any) -> None:
        client.personal[self.name] = value

    def personal_state(self, cid: int, global_state: StateDict) -> StateDict:
        """The model hospital ``cid`` uses, computed at the hospital from what it keeps."""
        client = self._clients.get(cid)
        return global_state if client is None else self.personalise(client, global_state)

    def personalise(self, client: Client, global_state: StateDict) -> StateDict:
        """Hospital ``client``'s own model given the current global one (override)."""
        return global_state

    def _scratch_model(self) -> nn.Module:
        if self._scratch is None:
            raise ConfigError(f"{type(self).__name__} has no model yet: call strategy.start("
                              "global_state, clients, model) first (fl.run does)")
        return self._scratch


class FineTune(PersonalStrategy):
    """FedAvg, then ``steps`` local SGD steps at each hospital from the global model.

    Training is FedAvg's exactly (the same contributions, so it composes with every
    aggregator); only the model a hospital *uses* differs: the current global model
    fine-tuned on its own training data with ``finetune`` (default: ``config`` with
    ``steps=steps``). ``steps=0`` is FedAvg. Fine-tuning is recomputed from the current
    global model whenever a hospital is asked for its model (seeded, so repeatable).
    """

    name = "FineTune"

    def __init__(self, config: TrainConfig | None = None, *, steps: int = 10,
                 finetune: TrainConfig | None = None, weighted: bool = True,
                 server_lr: float = 1.0, seed: int = 0) -> None:
        super().__init__(config, weighted=weighted, server_lr=server_lr, seed=seed)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ConfigError(f"steps must be an integer >= 0 (local fine-tuning steps), got "
                              f"{steps!r}; steps=0 is FedAvg")
        base = finetune if finetune is not None else self.config
        self.steps = steps
        self.finetune = replace(base, steps=steps)

    def personalise(self, client: Client, global_state: StateDict) -> StateDict:
        if self.steps == 0:
            return global_state
        model = self._scratch_model()
        local_train(model, global_state, client.train, self.finetune,
                    seed=derive_seed(self.seed, client.cid), cid=client.cid,
                    loss_fn=client.loss_fn)
        state = clone_state(model.state_dict())
        self.keep(client, state)  # the fine-tuned model stays at the hospital
        return state

    def __repr__(self) -> str:
        return f"FineTune(config={self.config}, steps={self.steps}, weighted={self.weighted})"
