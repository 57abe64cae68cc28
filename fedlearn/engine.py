"""Engines: who runs the local training of one round's sampled clients.

:func:`fedlearn.run` owns the round (sampling, instructions, aggregation, evaluation, history);
an *engine* owns only the middle of it: given the global weights and each sampled client's
instruction, return the clients' :class:`~fedlearn.ClientUpdate` objects. Because every engine
returns the same updates, the strategy and its aggregator cannot tell which engine ran.

* :class:`SequentialEngine` (the default, ``engine="sequential"``): one client after another,
  each calling :meth:`Client.fit` - the loop every learner reads first, and the only engine
  that runs arbitrary :class:`~fedlearn.LocalHook` objects, Opacus clients and BatchNorm;
* :class:`~fedlearn.vectorized.VectorizedEngine` (``engine="vectorized"``): all sampled
  clients at once, as one batched computation over their stacked weights (``torch.func``).
  Much faster for many small clients; it refuses, with a message, what it cannot run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from torch import nn

from .client import Client
from .update import ClientUpdate
from .utils import StateDict, derive_seed

if TYPE_CHECKING:
    from .strategy import ClientInstruction, Strategy

__all__ = ["Engine", "SequentialEngine", "EngineUnsupportedError", "resolve_engine",
           "ENGINE_NAMES"]

ProcessUpdate = Callable[[int, Client, ClientUpdate], ClientUpdate]
ENGINE_NAMES = ("sequential", "vectorized")


class EngineUnsupportedError(ValueError):
    """The chosen engine cannot run this model, client, hook or strategy (use ``sequential``)."""


class Engine(Protocol):
    """What :func:`fedlearn.run` needs from an engine."""

    name: str

    def prepare(self, model: nn.Module, clients: Sequence[Client], strategy: Strategy) -> None:
        """Called once before round 1; raise :class:`EngineUnsupportedError` if it cannot run."""

    def fit_round(self, worker: nn.Module, clients: Sequence[Client],
                  instructions: Mapping[int, ClientInstruction], global_state: StateDict, *,
                  rnd: int, seed: int, process: ProcessUpdate | None = None,
                  ) -> list[ClientUpdate]:
        """Train every client of ``clients`` that has an instruction; their updates in order.

        Client ``k`` shuffles with ``derive_seed(seed, rnd, k)``; ``process`` (the strategy's
        optional ``process_update``) is applied to each update before it is returned.
        """


class SequentialEngine:
    """Clients one after another in one worker model: exactly ``Client.fit`` per client."""

    name = "sequential"

    def prepare(self, model: nn.Module, clients: Sequence[Client], strategy: Strategy) -> None:
        """Nothing to check: the sequential engine runs anything ``Client.fit`` runs."""

    def fit_round(self, worker: nn.Module, clients: Sequence[Client],
                  instructions: Mapping[int, ClientInstruction], global_state: StateDict, *,
                  rnd: int, seed: int, process: ProcessUpdate | None = None,
                  ) -> list[ClientUpdate]:
        updates = []
        for c in clients:
            if c.cid not in instructions:
                continue
            ins = instructions[c.cid]
            u = c.fit(worker, global_state, ins.config, seed=derive_seed(seed, rnd, c.cid),
                      hooks=ins.hooks)
            updates.append(process(rnd, c, u) if process is not None else u)
        return updates

    def __repr__(self) -> str:
        return "SequentialEngine()"


def resolve_engine(engine: str | Engine) -> Engine:
    """An engine from its name (``"sequential"``, ``"vectorized"``) or an engine object."""
    if isinstance(engine, str):
        if engine == "sequential":
            return SequentialEngine()
        if engine in ("vectorized", "vectorised"):
            from .vectorized import VectorizedEngine

            return VectorizedEngine()
        raise ValueError(f"engine must be one of {ENGINE_NAMES} or an engine object, "
                         f"got {engine!r}")
    if not callable(getattr(engine, "fit_round", None)):
        raise TypeError(f"engine must be one of {ENGINE_NAMES} or an object with prepare() and "
                        f"fit_round() methods, got {type(engine).__name__}")
    return engine
