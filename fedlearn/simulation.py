"""The simulation loop: many hospitals, one process.

Each round the server samples a fraction C of the clients, sends them the global weights
and an instruction, each client trains on its own data and returns an update, and the
strategy aggregates. Every ``eval_every`` rounds the global model is scored on every
hospital's test set and on their union (the pooled test set), because a model that is
good on average can still fail one hospital.

Nothing here is specific to an algorithm; that is the strategy's job. ``run`` calls only the
hooks every :class:`~fedlearn.strategy.Strategy` declares (``configure_round``,
``process_update``, ``aggregate_round``, ``personal_state``, ``download_nbytes``,
``stop_reason``), never an optional one looked up by name, so no wrapper can lose a hook.
What the strategy's aggregator measured each round (secure aggregation's threshold and who
was included, DP's clip norm and epsilon, ...) is kept in ``history.measurements``; a round
whose sums were not revealed is recorded as ``aborted`` and leaves the model unchanged.

A :class:`~fedlearn.system.SystemModel` passed as ``system=`` makes hospitals slow, drop
out or miss a deadline; the round then aggregates whoever reported.

Evaluation is classification metrics by default. ``evaluate=`` plugs in another score: a
callable ``(outputs, y) -> dict[str, float]`` given the model's raw outputs (eval mode, no
gradient) and the labels of one test set, e.g. the C-index of a Cox risk score
(:func:`fedlearn.survival.survival_metrics`). It receives outputs rather than the model so
that the pooled score of personalised models is computed from the union of their outputs.
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
from .history import History, round_train_loss
from .metrics import classification_metrics
from .run_ledger import RunLedger
from .strategy import Strategy
from .update import validate_updates
from .utils import StateDict, as_generator, clone_state, float_keys
from .validation import validate_run

if TYPE_CHECKING:
    from .system import SystemModel

__all__ = ["run", "sample_clients", "evaluate_clients", "evaluate_personalized"]

Evaluate = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]


@torch.no_grad()
def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Raw model outputs in eval mode, for a pluggable ``evaluate``."""
    was_training = model.training
    model.eval()
    out = model(x)
    model.train(was_training)
    return out


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
                     threshold: float = 0.5,
                     evaluate: Evaluate | None = None) -> dict[str, dict[str, float]]:
    """Metrics of ``model`` on each client's test set and on the pooled test set.

    Clients sharing one test set object (e.g. the official MedMNIST test split) are
    scored once, as ``pooled``, rather than once per client. ``evaluate`` replaces the
    classification metrics (module docstring).
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
        p = predict_proba(model, x) if evaluate is None else _outputs(model, x)
        ys.append(y)
        ps.append(p)
        if len(unique) > 1:
            results[name] = (classification_metrics(y, p, threshold) if evaluate is None
                             else evaluate(p, y))
    y_all, p_all = torch.cat(ys), torch.cat(ps)
    results["pooled"] = (classification_metrics(y_all, p_all, threshold) if evaluate is None
                         else evaluate(p_all, y_all))
    return results


def evaluate_personalized(model: nn.Module, clients: Sequence[Client],
                          state_of: Callable[[Client], StateDict],
                          threshold: float = 0.5,
                          evaluate: Evaluate | None = None) -> dict[str, dict[str, float]]:
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
        p = predict_proba(model, x) if evaluate is None else _outputs(model, x)
        ys.append(y)
        ps.append(p)
        results[c.name] = (classification_metrics(y, p, threshold) if evaluate is None
                           else evaluate(p, y))
    if not ys:
        return {}
    y_all, p_all = torch.cat(ys), torch.cat(ps)
    results["pooled"] = (classification_metrics(y_all, p_all, threshold) if evaluate is None
                         else evaluate(p_all, y_all))
    return results


def run(model: nn.Module, clients: Sequence[Client], strategy: Strategy, rounds: int, *,
        fraction: float = 1.0, min_clients: int = 1, eval_every: int = 1, seed: int = 0,
        progress: bool = True, threshold: float = 0.5,
        callback: Callable[[int, nn.Module, History], None] | None = None,
        system: SystemModel | None = None, evaluate: Evaluate | None = None,
        engine: str | Engine = "sequential",
        release_unaccounted: Sequence[str] = ()) -> History:
    """Simulate ``rounds`` rounds of federated training and return the :class:`History`.

    ``model`` holds the initial global weights and, when ``run`` returns, the final ones.
    Round 0 is evaluated before any training so that curves start at the initial model.
    Randomness: client sampling draws from ``seed``; client ``k``'s minibatch order in
    round ``r`` from ``derive_seed(seed, r, k)``, so a client's training does not depend on
    which other clients were sampled.

    ``system`` (a :class:`~fedlearn.system.SystemModel`) simulates heterogeneous compute:
    sampled clients may drop out, miss the deadline or run fewer local steps. The round
    aggregates whoever reported (a round where nobody did, or whose secure sum aborted, leaves
    the model unchanged and is marked ``aborted``; if every round aborts, ``history.stopped``
    says why), and
    each row of ``history.rounds`` also records ``sampled``, ``dropped``, ``stragglers``,
    ``truncated`` and the simulated round duration ``sim_seconds``.

    ``evaluate`` (``(outputs, y) -> dict[str, float]``) replaces the classification metrics
    on every test set; ``None`` keeps them.

    ``engine`` runs each round's local training: ``"sequential"`` (clients one after another,
    anything ``Client.fit`` runs) or ``"vectorized"`` (all sampled clients at once with
    ``torch.func``; plain SGD/Adam and FedProx only, see :mod:`fedlearn.vectorized`).

    Every number that leaves a hospital or the server is listed in ``history.ledger`` with
    who sees it, its protection and its epsilon (:mod:`fedlearn.ledger`), and
    ``history.privacy_summary()`` totals it per hospital. A DP run (a DP aggregator, or
    DP-SGD hospitals) releases only what is accounted or public: no training loss, no test
    metrics (:mod:`fedlearn.run_ledger`). ``release_unaccounted`` names what to release
    anyway (``"train_loss"``, ``"test_metrics"``, ``"client_metrics"``), flagged
    ``unaccounted`` in the ledger.
    """
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    if not clients:
        raise ValueError("no clients")
    ids = [c.cid for c in clients]
    if len(set(ids)) != len(ids):
        raise ValueError(f"client ids must be unique, got {ids}")
    validate_run(model, clients, strategy, rounds=rounds, eval_every=eval_every,
                 fraction=fraction, min_clients=min_clients)  # before any training
    releases = RunLedger(strategy, clients, release_unaccounted)
    rng = as_generator(seed)
    history = History(strategy=getattr(strategy, "name", type(strategy).__name__),
                      release_ledger=releases.ledger)
    global_state = clone_state(model.state_dict())
    worker = copy.deepcopy(model)
    strategy.start(global_state, clients, model=model)
    engine = resolve_engine(engine)
    engine.prepare(model, clients, strategy)
    personalised = strategy.has_personal_state()

    def _evaluate(rnd: int) -> dict[str, dict[str, float]]:
        if not releases.releases_test_metrics():
            history.withheld = sorted(releases.withheld)
            return {}
        if personalised:
            res = evaluate_personalized(
                model, clients, lambda c: strategy.personal_state(c.cid, global_state), threshold,
                evaluate)
        else:
            model.load_state_dict(global_state)
            res = evaluate_clients(model, clients, threshold, evaluate)
        model.load_state_dict(global_state)
        for name, m in res.items():
            history.log_eval(rnd, name, m)
        releases.record_evaluation(rnd, res)
        return res

    if eval_every:
        _evaluate(0)
    bar = tqdm(range(1, rounds + 1), desc=history.strategy, disable=not progress, leave=False)
    aborted: list[str] = []
    for rnd in bar:
        reason = strategy.stop_reason(rnd)
        if reason is not None:
            history.stopped = f"stopped before round {rnd}: {reason}"
            break
        t0 = time.perf_counter()
        sampled = sample_clients(clients, fraction, rng, min_clients)
        instructions = strategy.configure_round(rnd, sampled)
        instructed = len(instructions)  # the server does not know in advance who will drop
        plan = system.plan_round(rnd, sampled, instructions) if system is not None else None
        if plan is not None:
            instructions = plan.instructions
        updates = engine.fit_round(worker, sampled, instructions, global_state, rnd=rnd,
                                   seed=seed, process=strategy.process_update)
        updates = releases.filter(updates)  # what leaves the hospitals (DP: accounted only)
        per_client_down = strategy.download_nbytes(global_state)
        if updates:
            validate_updates(updates, {k: global_state[k] for k in float_keys(global_state)})
        outcome = strategy.aggregate_round(rnd, global_state, updates, instructed=instructed)
        global_state = outcome.state
        n = sum(u.num_examples for u in updates)
        row = dict(
            round=rnd, participants=[u.cid for u in updates], num_examples=n,
            train_loss=round_train_loss(updates),
            bytes_down=per_client_down * (len(updates) if plan is None else len(sampled)),
            bytes_up=outcome.bytes_up,
            seconds=time.perf_counter() - t0)
        if outcome.aborted is not None:
            row["aborted"] = outcome.aborted
            aborted.append(outcome.aborted)
        measurements = dict(outcome.measurements)
        releases.record_round(rnd, updates, measurements.pop("releases", []),
                              sum(global_state[k].numel() for k in float_keys(global_state)),
                              [c.cid for c in sampled])
        history.log_measurements(rnd, measurements)
        if plan is not None:
            row.update(sampled=[c.cid for c in sampled], dropped=list(plan.dropped),
                       stragglers=list(plan.stragglers), truncated=list(plan.truncated),
                       sim_seconds=plan.seconds)
        history.log_round(**row)
        if eval_every and rnd % eval_every == 0:
            res = _evaluate(rnd)
            if "pooled" in res and "accuracy" in res["pooled"]:
                bar.set_postfix(acc=f"{res['pooled']['accuracy']:.3f}")
        if callback is not None:
            model.load_state_dict(global_state)
            callback(rnd, model, history)
    if history.rounds and len(aborted) == len(history.rounds) and history.stopped is None:
        history.stopped = (f"every round aborted, the model never changed: {aborted[-1]} "
                           f"(round {history.rounds[-1]['round']})")
    last = history.rounds[-1]["round"] if history.rounds else 0
    if eval_every and last and last % eval_every:
        _evaluate(last)  # always score the final model
    model.load_state_dict(global_state)
    history.final_state = clone_state(global_state)
    history.withheld = sorted(releases.withheld)
    return history
