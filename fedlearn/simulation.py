"""The simulation loop: many hospitals, one process.

Each round the server samples a fraction C of the clients, sends them the global weights
and an instruction, each client trains on its own data and returns an update, and the
strategy aggregates. Every ``eval_every`` rounds the global model is scored on every
hospital's test set and on their union (the pooled test set), because a model that is
good on average can still fail one hospital.

Nothing here is specific to an algorithm; that is the strategy's job. A strategy may
optionally define three extra methods, which ``run`` calls when present:

* ``process_update(rnd, client, update) -> ClientUpdate``: what actually goes on the wire
  (compression, SCAFFOLD's extra control-variate upload, FedBN keeping BN layers home);
* ``personal_state(cid, global_state) -> StateDict``: the model client ``cid`` really uses
  (FedBN's local BN layers), so each hospital is evaluated with its personalised model;
* ``download_nbytes(global_state) -> int``: bytes sent to each client per round when the
  server sends more than the weights (SCAFFOLD's server control variate).

A :class:`~fedlearn.system.SystemModel` passed as ``system=`` makes hospitals slow, drop
out or miss a deadline; the round then aggregates whoever reported.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .client import Client, predict_proba
from .engine import Engine, resolve_engine
from .history import History
from .metrics import classification_metrics
from .strategy import Strategy
from .update import validate_updates
from .utils import StateDict, as_generator, clone_state, float_keys, state_nbytes

if TYPE_CHECKING:
    from .system import SystemModel

__all__ = ["run", "sample_clients", "evaluate_clients", "evaluate_personalized"]


def sample_clients(clients: Sequence[Client], fraction: float, rng: np.random.Generator,
                   min_clients: int = 1) -> list[Client]:
    """McMahan et al.'s client sampling: m = max(round(C*K), min_clients) without replacement.

    The result keeps the clients' original order, so aggregation order (and hence
    float rounding) does not depend on the draw.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = len(clients)
    m = min(k, max(int(round(fraction * k)), min_clients))
    if m == k:
        return list(clients)
    chosen = np.sort(rng.choice(k, size=m, replace=False))
    return [clients[i] for i in chosen]


def evaluate_clients(model: nn.Module, clients: Sequence[Client],
                     threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """Metrics of ``model`` on each client's test set and on the pooled test set.

    Clients sharing one test set object (e.g. the official MedMNIST test split) are
    scored once, as ``pooled``, rather than once per client.
    """
    unique: dict[int, tuple[str, torch.Tensor, torch.Tensor]] = {}
    for c in clients:
        if c.test is None:
            continue
        unique.setdefault(id(c.test), (c.name, c.test.tensors[0], c.test.tensors[1]))
    if not unique:
        return {}
    results: dict[str, dict[str, float]] = {}
    ys, ps = [], []
    for name, x, y in unique.values():
        p = predict_proba(model, x)
        ys.append(y)
        ps.append(p)
        if len(unique) > 1:
            results[name] = classification_metrics(y, p, threshold)
    results["pooled"] = classification_metrics(torch.cat(ys), torch.cat(ps), threshold)
    return results


def evaluate_personalized(model: nn.Module, clients: Sequence[Client],
                          state_of: Callable[[Client], StateDict],
                          threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """Score each client's test set with *its own* model ``state_of(client)``.

    Personalised methods (FedBN) give every hospital a different model, so there is no
    single global model to score; ``pooled`` is computed from the union of every client's
    predictions made by that client's model. ``model`` is used as scratch space.
    """
    results: dict[str, dict[str, float]] = {}
    ys, ps = [], []
    for c in clients:
        if c.test is None:
            continue
        model.load_state_dict(state_of(c))
        x, y = c.test.tensors[0], c.test.tensors[1]
        p = predict_proba(model, x)
        ys.append(y)
        ps.append(p)
        results[c.name] = classification_metrics(y, p, threshold)
    if not ys:
        return {}
    results["pooled"] = classification_metrics(torch.cat(ys), torch.cat(ps), threshold)
    return results


def run(model: nn.Module, clients: Sequence[Client], strategy: Strategy, rounds: int, *,
        fraction: float = 1.0, min_clients: int = 1, eval_every: int = 1, seed: int = 0,
        progress: bool = True, threshold: float = 0.5,
        callback: Callable[[int, nn.Module, History], None] | None = None,
        system: SystemModel | None = None, engine: str | Engine = "sequential") -> History:
    """Simulate ``rounds`` rounds of federated training and return the :class:`History`.

    ``model`` holds the initial global weights and, when ``run`` returns, the final ones.
    Round 0 is evaluated before any training so that curves start at the initial model.
    Randomness: client sampling draws from ``seed``; client ``k``'s minibatch order in
    round ``r`` from ``derive_seed(seed, r, k)``, so a client's training does not depend on
    which other clients were sampled.

    ``system`` (a :class:`~fedlearn.system.SystemModel`) simulates heterogeneous compute:
    sampled clients may drop out, miss the deadline or run fewer local steps. The round
    aggregates whoever reported (a round where nobody did leaves the model unchanged), and
    each row of ``history.rounds`` also records ``sampled``, ``dropped``, ``stragglers``,
    ``truncated`` and the simulated round duration ``sim_seconds``.

    ``engine`` runs each round's local training: ``"sequential"`` (clients one after another,
    anything ``Client.fit`` runs) or ``"vectorized"`` (all sampled clients at once with
    ``torch.func``; plain SGD/Adam and FedProx only, see :mod:`fedlearn.vectorized`).
    """
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    if not clients:
        raise ValueError("no clients")
    ids = [c.cid for c in clients]
    if len(set(ids)) != len(ids):
        raise ValueError(f"client ids must be unique, got {ids}")
    rng = as_generator(seed)
    history = History(strategy=getattr(strategy, "name", type(strategy).__name__))
    global_state = clone_state(model.state_dict())
    worker = copy.deepcopy(model)
    down_bytes = state_nbytes({k: global_state[k] for k in float_keys(global_state)})
    strategy.initialize(global_state, clients)
    engine = resolve_engine(engine)
    engine.prepare(model, clients, strategy)
    process_update = getattr(strategy, "process_update", None)
    personal_state = getattr(strategy, "personal_state", None)
    download_nbytes = getattr(strategy, "download_nbytes", None)

    def _evaluate(rnd: int) -> dict[str, dict[str, float]]:
        if personal_state is not None:
            res = evaluate_personalized(model, clients,
                                        lambda c: personal_state(c.cid, global_state), threshold)
        else:
            model.load_state_dict(global_state)
            res = evaluate_clients(model, clients, threshold)
        model.load_state_dict(global_state)
        for name, m in res.items():
            history.log_eval(rnd, name, m)
        return res

    if eval_every:
        _evaluate(0)
    bar = tqdm(range(1, rounds + 1), desc=history.strategy, disable=not progress, leave=False)
    for rnd in bar:
        reason = strategy.stop_reason(rnd)
        if reason is not None:
            history.stopped = f"stopped before round {rnd}: {reason}"
            break
        t0 = time.perf_counter()
        sampled = sample_clients(clients, fraction, rng, min_clients)
        instructions = strategy.configure_round(rnd, sampled)
        plan = system.plan_round(rnd, sampled, instructions) if system is not None else None
        if plan is not None:
            instructions = plan.instructions
        updates = engine.fit_round(worker, sampled, instructions, global_state, rnd=rnd,
                                   seed=seed, process=process_update)
        per_client_down = (download_nbytes(global_state) if download_nbytes is not None
                           else down_bytes)
        if updates or plan is None:  # without a system model an empty round is an error
            validate_updates(updates, {k: global_state[k] for k in float_keys(global_state)})
            global_state = strategy.aggregate(rnd, global_state, updates)
        n = sum(u.num_examples for u in updates)
        row = dict(
            round=rnd, participants=[u.cid for u in updates], num_examples=n,
            train_loss=float(sum(u.metrics.get("train_loss", float("nan")) * u.num_examples
                                 for u in updates) / max(n, 1)),
            bytes_down=per_client_down * (len(updates) if plan is None else len(sampled)),
            bytes_up=int(sum(u.nbytes or 0 for u in updates)),
            seconds=time.perf_counter() - t0)
        if plan is not None:
            row.update(sampled=[c.cid for c in sampled], dropped=list(plan.dropped),
                       stragglers=list(plan.stragglers), truncated=list(plan.truncated),
                       sim_seconds=plan.seconds)
        history.log_round(**row)
        if eval_every and rnd % eval_every == 0:
            res = _evaluate(rnd)
            if "pooled" in res:
                bar.set_postfix(acc=f"{res['pooled']['accuracy']:.3f}")
        if callback is not None:
            model.load_state_dict(global_state)
            callback(rnd, model, history)
    last = history.rounds[-1]["round"] if history.rounds else 0
    if eval_every and last and last % eval_every:
        _evaluate(last)  # always score the final model
    model.load_state_dict(global_state)
    history.final_state = clone_state(global_state)
    return history
